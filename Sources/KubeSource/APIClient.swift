import AsyncHTTPClient
import Foundation
import KubeModel
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL

/// A failed request to the apiserver, described so an operator knows where to look.
public enum APIError: Error, CustomStringConvertible {
    /// HTTP 410 or a watch ERROR event with a Status of code 410: the resourceVersion is too old.
    case gone(path: String)
    /// A list from a resourceVersion newer than the apiserver has (504 with cause `ResourceVersionTooLarge`, or the
    /// message older servers send): an apiserver that restarted from an older etcd state, or a lagging watch cache.
    case resourceVersionTooLarge(path: String, message: String)
    case unauthorized(path: String, message: String)
    case forbidden(path: String, message: String)
    case notFound(path: String)
    case status(path: String, code: Int, message: String)
    case transport(path: String, underlying: String)
    /// The connection broke or went silent after the response started (a watch mid-stream).
    case interrupted(path: String, underlying: String)
    case malformed(path: String, reason: String)
    case invalidServer(String, reason: String)
    case credentials(CredentialsError)

    public var description: String {
        switch self {
        case .gone(let path):
            return "GET \(path): 410 Gone, resourceVersion expired; relisting"
        case .resourceVersionTooLarge(let path, let message):
            return "GET \(path): \(message); listing the current state (a consistent read) instead"
        case .unauthorized(let path, let message):
            return "GET \(path): 401 Unauthorized (\(message)): the token or client certificate was rejected; "
                + "check that it is current and issued by the cluster"
        case .forbidden(let path, let message):
            return "GET \(path): 403 Forbidden (\(message)): grant list and watch on this resource "
                + "(the system:node-proxier ClusterRole)"
        case .notFound(let path):
            return "GET \(path): 404 Not Found: the apiserver does not serve this resource"
        case .status(let path, let code, let message):
            return "GET \(path): HTTP \(code): \(message)"
        case .transport(let path, let underlying):
            return "GET \(path): \(underlying): is the apiserver reachable and its address right?"
        case .interrupted(let path, let underlying):
            return "GET \(path): response cut off (\(underlying)); resuming from the last resourceVersion seen"
        case .malformed(let path, let reason):
            return "GET \(path): unreadable response: \(reason)"
        case .invalidServer(let server, let reason):
            return "apiserver URL \(server): \(reason)"
        case .credentials(let e):
            return e.description
        }
    }
}

/// One event of a watch stream, JSON still undecoded.
struct WatchEvent {
    enum EventType: String {
        case added = "ADDED"
        case modified = "MODIFIED"
        case deleted = "DELETED"
        case bookmark = "BOOKMARK"
        case error = "ERROR"
    }
    var type: EventType
    var object: JSONObject
}

/// GET and streaming GET against the apiserver over AsyncHTTPClient, with the cluster's TLS and auth. Every
/// request, list or watch, first takes a token from the rate limiter, and its outcome is told to the observer.
final class APIClient: Sendable {
    let http: HTTPClient
    let base: String
    let token: BearerToken?
    let requestTimeout: TimeAmount
    let limiter: RequestRateLimiter
    let observer: APIRequestObserver?

    /// `readTimeout` bounds the silence on a connection, body included. AsyncHTTPClient's request
    /// deadline stops at the response head, so this is what catches a watch the server stalled on.
    init(
        credentials: ClusterCredentials, requestTimeout: TimeAmount, readTimeout: TimeAmount,
        limiter: RequestRateLimiter = RequestRateLimiter(qps: -1, burst: 1), observer: APIRequestObserver? = nil
    ) throws(APIError) {
        var server = credentials.server
        while server.hasSuffix("/") { server.removeLast() }
        guard let url = URL(string: server), let scheme = url.scheme, url.host != nil,
            scheme == "https" || scheme == "http"
        else { throw .invalidServer(credentials.server, reason: "expected http(s)://host[:port][/prefix]") }
        self.base = server
        self.token = credentials.token
        self.requestTimeout = requestTimeout
        self.limiter = limiter
        self.observer = observer

        var config = HTTPClient.Configuration()
        config.timeout = .init(connect: .seconds(10), read: readTimeout)
        config.redirectConfiguration = .disallow
        // One HTTP/1.1 connection per watch: a stalled connection then stalls one kind, not all of
        // them, and the read timeout that detects it is the path the tests exercise.
        config.httpVersion = .http1Only
        if scheme == "https" {
            var tls = TLSConfiguration.makeClientConfiguration()
            do {
                if let ca = credentials.certificateAuthorityPEM {
                    tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(ca))
                }
                if let cert = credentials.clientCertificatePEM, let key = credentials.clientKeyPEM {
                    tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(cert).map { .certificate($0) }
                    tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: key, format: .pem))
                }
            } catch {
                throw .credentials(.invalidPEM("certificate-authority or client certificate/key (\(error))"))
            }
            if credentials.insecureSkipTLSVerify { tls.certificateVerification = .none }
            // HTTP framing (Content-Length, chunked) already tells us a body is complete, so waiting
            // up to NIOSSL's default 5 s for the peer's close_notify only delays stopping.
            tls.shutdownTimeout = .milliseconds(100)
            config.tlsConfiguration = tls
        }
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    func shutdown() async {
        try? await http.shutdown()
    }

    static func query(_ items: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return items.map { k, v in
            "\(k)=\(v.addingPercentEncoding(withAllowedCharacters: allowed) ?? v)"
        }.joined(separator: "&")
    }

    private func request(_ pathAndQuery: String) throws(APIError) -> HTTPClientRequest {
        var req = HTTPClientRequest(url: base + pathAndQuery)
        req.headers.add(name: "Accept", value: "application/json")
        req.headers.add(name: "User-Agent", value: "kube-natd")
        if let token {
            do throws(CredentialsError) {
                req.headers.add(name: "Authorization", value: "Bearer \(try token.current())")
            } catch {
                throw .credentials(error)
            }
        }
        return req
    }

    /// The resource a path is about, for the request metric.
    static func resource(of path: String) -> String {
        path.hasPrefix("/apis/discovery.k8s.io/v1/") || path.hasPrefix("/api/v1/")
            ? String(path.split(separator: "/").last ?? "") : "discovery"
    }

    /// Waits for a token of the rate limiter; a cancelled wait is a transport failure the caller stops on.
    private func throttle(_ path: String) async throws(APIError) {
        do { try await limiter.acquire() } catch { throw .transport(path: path, underlying: "cancelled") }
    }

    private func observe(_ path: String, _ verb: String, _ code: Int?) {
        observer?(Self.resource(of: path), verb, code.map(String.init) ?? "<error>")
    }

    private static func check(_ response: HTTPClientResponse, path: String) async throws(APIError) {
        let code = Int(response.status.code)
        if (200..<300).contains(code) { return }
        var message = response.status.reasonPhrase
        var causes: [String] = []
        if let body = try? await response.body.collect(upTo: 64 * 1024),
            case .object(let obj)? = try? JSONTree.parse(Data(body.readableBytesView))
        {
            if let m = obj["message"]?.stringValue { message = m }
            for cause in obj["details"]?.objectValue?["causes"]?.arrayValue ?? [] {
                causes += [cause.objectValue?["reason"]?.stringValue, cause.objectValue?["type"]?.stringValue,
                           cause.objectValue?["message"]?.stringValue].compactMap { $0 }
            }
        }
        // As client-go's isTooLargeResourceVersionError: the cause type, or the message of servers before it.
        if code == 504
            && (causes.contains("ResourceVersionTooLarge") || causes.contains("Too large resource version")
                || message.contains("Too large resource version"))
        {
            throw .resourceVersionTooLarge(path: path, message: message)
        }
        switch code {
        case 410: throw .gone(path: path)
        case 401: throw .unauthorized(path: path, message: message)
        case 403: throw .forbidden(path: path, message: message)
        case 404: throw .notFound(path: path)
        default: throw .status(path: path, code: code, message: message)
        }
    }

    /// GET a JSON object (a list page, a discovery document).
    func get(_ path: String, query: [(String, String)] = []) async throws(APIError) -> JSONObject {
        let full = query.isEmpty ? path : path + "?" + Self.query(query)
        let req = try request(full)
        try await throttle(path)
        let verb = Self.resource(of: path) == "discovery" ? "get" : "list"
        let body: ByteBuffer
        do {
            let response: HTTPClientResponse
            do { response = try await http.execute(req, timeout: requestTimeout) } catch {
                observe(path, verb, nil)
                throw error
            }
            observe(path, verb, Int(response.status.code))
            try await Self.check(response, path: path)
            body = try await response.body.collect(upTo: 1 << 30)
        } catch let e as APIError {
            throw e
        } catch {
            throw .transport(path: path, underlying: "\(error)")
        }
        guard case .object(let obj)? = try? JSONTree.parse(Data(body.readableBytesView)) else {
            throw .malformed(path: path, reason: "body is not a JSON object")
        }
        return obj
    }

    /// Streams a watch: calls `onEvent` for each newline-delimited JSON event until the server
    /// ends the response (normal return), or the connection drops or stays silent past the read
    /// timeout (throws).
    func watch(
        _ path: String, query: [(String, String)], onEvent: (WatchEvent) throws -> Void
    ) async throws {
        let full = path + "?" + Self.query(query)
        let req = try request(full)
        try await throttle(path)
        let response: HTTPClientResponse
        do {
            response = try await http.execute(req, timeout: requestTimeout)
        } catch {
            observe(path, "watch", nil)
            throw APIError.transport(path: path, underlying: "\(error)")
        }
        observe(path, "watch", Int(response.status.code))
        try await Self.check(response, path: path)
        var pending: [UInt8] = []
        func emit(_ line: ArraySlice<UInt8>) throws {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) { return }
            guard case .object(let obj)? = try? JSONTree.parse(Data(line)),
                let typeName = obj["type"]?.stringValue, let object = obj["object"]?.objectValue
            else { throw APIError.malformed(path: path, reason: "watch line is not a {type, object} event") }
            guard let type = WatchEvent.EventType(rawValue: typeName) else {
                throw APIError.malformed(path: path, reason: "unknown watch event type \(typeName)")
            }
            try onEvent(WatchEvent(type: type, object: object))
        }
        do {
            for try await chunk in response.body {
                pending.append(contentsOf: chunk.readableBytesView)
                var start = pending.startIndex
                while let nl = pending[start...].firstIndex(of: 0x0A) {
                    try emit(pending[start..<nl])
                    start = nl + 1
                }
                pending.removeSubrange(..<start)
            }
        } catch let e as APIError {
            throw e
        } catch let e as HTTPClientError where e == .readTimeout {
            throw APIError.interrupted(path: path, underlying: "no data for longer than a watch may last: stalled")
        } catch {
            throw APIError.interrupted(path: path, underlying: "\(error)")
        }
        if !pending.isEmpty { try emit(pending[...]) }
    }
}
