import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One HTTP response of the daemon's small servers: status, headers, whole body.
public struct HTTPReply: Sendable, Equatable {
    public var status: HTTPResponseStatus
    public var headers: [(String, String)]
    public var body: String

    public init(status: HTTPResponseStatus, headers: [(String, String)], body: String) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func == (a: HTTPReply, b: HTTPReply) -> Bool {
        a.status == b.status && a.body == b.body && a.headers.elementsEqual(b.headers, by: { $0 == $1 })
    }

    /// `application/json` with `nosniff`, as every upstream health handler answers.
    static func json(_ status: HTTPResponseStatus, _ body: String) -> HTTPReply {
        HTTPReply(
            status: status,
            headers: [("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff")],
            body: body
        )
    }

    /// Plain text, as Go's `http.Error` and the `healthz` package write it.
    static func text(_ status: HTTPResponseStatus, _ body: String) -> HTTPReply {
        HTTPReply(
            status: status,
            headers: [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")],
            body: body
        )
    }

    /// Go's `http.NotFound`, what a `ServeMux` answers for a path nobody registered.
    static let notFound = HTTPReply.text(.notFound, "404 page not found\n")
}

/// Answers one request from its head (method, path); runs on the event loop, so it must be quick.
public typealias HTTPResponder = @Sendable (HTTPRequestHead) -> HTTPReply

/// A listening HTTP/1.1 server bound to one address, answering every request with a responder.
final class HTTPListener: Sendable {
    let channel: any Channel
    private let connections: OpenConnections

    private init(channel: any Channel, connections: OpenConnections) {
        self.channel = channel
        self.connections = connections
    }

    /// Binds `host:port` (port 0 picks a free one) and starts answering.
    ///
    /// `0.0.0.0`, `::` and an empty host all mean every address of both families, as in Go ("go
    /// treats them all the same", service_health.go): a dual-stack `::` socket, or `0.0.0.0` where
    /// the host has no IPv6.
    static func bind(
        host: String, port: Int, group: any EventLoopGroup, responder: @escaping HTTPResponder
    ) async throws -> HTTPListener {
        guard ["", "0.0.0.0", "::"].contains(host) else {
            return try await self.bindExactly(host: host, port: port, group: group, responder: responder)
        }
        do {
            return try await self.bindExactly(host: "::", port: port, group: group, responder: responder)
        } catch {
            return try await self.bindExactly(host: "0.0.0.0", port: port, group: group, responder: responder)
        }
    }

    private static func bindExactly(
        host: String, port: Int, group: any EventLoopGroup, responder: @escaping HTTPResponder
    ) async throws -> HTTPListener {
        let connections = OpenConnections()
        let bootstrap = ServerBootstrap(group: group)
            // Go's net.Listen sets SO_REUSEADDR too: restarts do not wait out TIME_WAIT.
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 128)
            .childChannelInitializer { channel in
                connections.insert(channel)
                return channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                    channel.pipeline.addHandler(HTTPResponderHandler(responder: responder))
                }
            }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        return HTTPListener(channel: channel, connections: connections)
    }

    /// The bound port (the chosen one when bound to port 0).
    var port: Int { self.channel.localAddress?.port ?? 0 }

    /// The bound address, for logs.
    var address: String {
        guard let local = self.channel.localAddress, let ip = local.ipAddress, let port = local.port else { return "?" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    /// Stops listening and closes the connections it accepted, as Go's `http.Server.Close` does:
    /// a load balancer holding a keep-alive connection to a closed health-check port must not keep
    /// getting answers from it.
    func close() async {
        try? await self.channel.close()
        for connection in self.connections.removeAll() {
            try? await connection.close()
        }
    }
}

/// The accepted connections of one listener, so closing the listener can close them too.
private final class OpenConnections: @unchecked Sendable {
    private let lock = NSLock()
    private var channels: [ObjectIdentifier: any Channel] = [:]

    func insert(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        self.lock.withLock { self.channels[id] = channel }
        channel.closeFuture.whenComplete { _ in
            _ = self.lock.withLock { self.channels.removeValue(forKey: id) }
        }
    }

    func removeAll() -> [any Channel] {
        self.lock.withLock {
            defer { self.channels.removeAll() }
            return Array(self.channels.values)
        }
    }
}

/// Collects a request and writes the responder's reply, keeping the connection open when the
/// client asked for keep-alive (health probes from load balancers reuse connections).
private final class HTTPResponderHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let responder: HTTPResponder
    private var head: HTTPRequestHead?

    init(responder: @escaping HTTPResponder) {
        self.responder = responder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break  // no endpoint reads a body
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            self.respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let reply = self.responder(head)
        var headers = HTTPHeaders(reply.headers)
        let body = context.channel.allocator.buffer(string: reply.body)
        headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        let responseHead = HTTPResponseHead(version: head.version, status: reply.status, headers: headers)
        context.write(self.wrapOutboundOut(.head(responseHead)), promise: nil)
        if head.method != .HEAD {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: done)
        if !keepAlive {
            let channel = context.channel
            done.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

extension HTTPRequestHead {
    /// The request path without its query string, what Go's `ServeMux` matches on.
    var path: String {
        let uri = self.uri
        if let q = uri.firstIndex(where: { $0 == "?" || $0 == "#" }) { return String(uri[..<q]) }
        return uri
    }

    /// The names of the query parameters (`?verbose&x=1` gives `["verbose", "x"]`).
    var queryItems: [String] {
        guard let q = self.uri.firstIndex(of: "?") else { return [] }
        let query = self.uri[self.uri.index(after: q)...].prefix { $0 != "#" }
        return query.split(separator: "&").map { String($0.prefix { $0 != "=" }) }
    }
}
