import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// An in-process apiserver on 127.0.0.1 speaking HTTP/1.1 (optionally TLS), answering each
/// request from a closure so each test scripts its own faults.
final class TestAPIServer: @unchecked Sendable {
    /// What the server saw, for assertions.
    struct Request: Sendable {
        var path: String
        var query: [String: String]
        var authorization: String?
        /// Subject of the verified client certificate, if one was presented.
        var clientSubject: String?
        var isWatch: Bool { query["watch"] == "true" }
    }

    /// One step of a streamed (chunked) watch response.
    enum Step: Sendable {
        case send(String)
        case pause(milliseconds: Int64)
        /// Ends the response properly (last chunk), as the apiserver does at timeoutSeconds.
        case end
        /// Closes the TCP connection mid-stream, without the last chunk.
        case drop
        /// Sends nothing more and keeps the connection open.
        case stall
    }

    enum Reply: Sendable {
        case json(status: Int, body: String)
        case stream([Step])
    }

    private let lock = NSLock()
    private var _requests: [Request] = []
    private var connections: [Channel] = []
    private var serverChannel: Channel?
    let route: @Sendable (Request) -> Reply
    let tls: Bool
    private(set) var port = 0

    var url: String { "\(tls ? "https" : "http")://127.0.0.1:\(port)" }

    var requests: [Request] { lock.withLock { _requests } }

    private init(tls: Bool, route: @escaping @Sendable (Request) -> Reply) {
        self.tls = tls
        self.route = route
    }

    /// Starts a server; with `tls`, it presents the PKI's server certificate and verifies client
    /// certificates when presented (as the apiserver does with --client-ca-file).
    static func start(tls: Bool = false, route: @escaping @Sendable (Request) -> Reply) async throws -> TestAPIServer {
        let server = TestAPIServer(tls: tls, route: route)
        var sslContext: NIOSSLContext?
        if tls {
            let pki = TestPKI.shared
            var config = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(pki.serverCertPEM.utf8)).map {
                    .certificate($0)
                },
                privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(pki.serverKeyPEM.utf8), format: .pem)))
            config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pki.caPEM.utf8)))
            config.certificateVerification = .optionalVerification
            sslContext = try NIOSSLContext(configuration: config)
        }
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                server.lock.withLock { server.connections.append(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(Handler(server: server))
                }
            }
        let channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        server.serverChannel = channel
        server.port = channel.localAddress?.port ?? 0
        return server
    }

    func stop() async {
        let (listener, open) = lock.withLock { (serverChannel, connections) }
        try? await listener?.close()
        for c in open { try? await c.close() }
    }

    fileprivate func record(_ r: Request) {
        lock.withLock { _requests.append(r) }
    }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let server: TestAPIServer
        var head: HTTPRequestHead?

        init(server: TestAPIServer) { self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): head = h
            case .body: break
            case .end:
                guard let head else { return }
                self.head = nil
                let components = URLComponents(string: head.uri)
                var query: [String: String] = [:]
                for item in components?.queryItems ?? [] { query[item.name] = item.value ?? "" }
                var subject: String?
                if server.tls, let cert = try? context.pipeline.syncOperations.nioSSL_peerCertificate() {
                    subject = (try? cert.toDERBytes()).flatMap(TestPKI.subject(derBytes:))
                }
                let request = Request(
                    path: components?.path ?? head.uri, query: query,
                    authorization: head.headers.first(name: "Authorization"), clientSubject: subject)
                server.record(request)
                respond(server.route(request), context: context)
            }
        }

        private func respond(_ reply: Reply, context: ChannelHandlerContext) {
            switch reply {
            case .json(let status, let body):
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: "\(body.utf8.count)")
                context.write(
                    wrapOutboundOut(
                        .head(.init(version: .http1_1, status: .init(statusCode: status), headers: headers))),
                    promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            case .stream(let steps):
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Transfer-Encoding", value: "chunked")
                context.writeAndFlush(
                    wrapOutboundOut(.head(.init(version: .http1_1, status: .ok, headers: headers))), promise: nil)
                run(steps[...], context: context)
            }
        }

        private func run(_ steps: ArraySlice<Step>, context: ChannelHandlerContext) {
            guard let step = steps.first else { return }
            let rest = steps.dropFirst()
            switch step {
            case .send(let text):
                context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
                run(rest, context: context)
            case .pause(let ms):
                context.eventLoop.scheduleTask(in: .milliseconds(ms)) { self.run(rest, context: context) }
            case .end:
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            case .drop:
                context.close(promise: nil)
            case .stall:
                break
            }
        }
    }
}
