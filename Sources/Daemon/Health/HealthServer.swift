import Logging
import NIOCore
import NIOHTTP1

/// The proxy health server on `healthzBindAddress`: `/healthz` and `/livez`, answered as upstream's
/// `ProxyHealthServer` answers them (pkg/proxy/healthcheck/proxy_health.go).
public final class HealthServer: Sendable {
    public let health: ProxyHealth
    public let metrics: ProxyMetrics?
    private let listener: HTTPListener

    private init(health: ProxyHealth, metrics: ProxyMetrics?, listener: HTTPListener) {
        self.health = health
        self.metrics = metrics
        self.listener = listener
    }

    /// Binds `host:port` (port 0 picks a free one, see `port`) and starts answering.
    public static func start(
        host: String, port: Int, health: ProxyHealth, metrics: ProxyMetrics?, group: any EventLoopGroup,
        logger: Logger = Logger(label: "kube-natd.healthz")
    ) async throws -> HealthServer {
        let listener = try await HTTPListener.bind(host: host, port: port, group: group) { head in
            HealthServer.reply(to: head, health: health, metrics: metrics)
        }
        logger.info("Starting healthz HTTP server", metadata: ["address": "\(listener.address)"])
        return HealthServer(health: health, metrics: metrics, listener: listener)
    }

    /// The bound port.
    public var port: Int { self.listener.port }

    /// Stops listening.
    public func stop() async {
        await self.listener.close()
    }

    /// The reply to one request; exposed so the rules can be tested without sockets.
    public static func reply(to head: HTTPRequestHead, health: ProxyHealth, metrics: ProxyMetrics?) -> HTTPReply {
        switch head.path {
        case "/healthz": return self.healthz(health: health, metrics: metrics)
        case "/livez": return self.livez(health: health, metrics: metrics)
        default: return .notFound
        }
    }

    /// 200 when healthy and the node eligible, else 503.
    static func healthz(health: ProxyHealth, metrics: ProxyMetrics?) -> HTTPReply {
        let eligible = health.nodeEligible
        var (healthy, lastUpdated) = health.status()
        let now = health.clock()
        healthy = healthy && eligible
        metrics?.healthzResponded(code: healthy ? 200 : 503)
        // Upstream: "the returned lastUpdated value is 'recent' if the server is healthy" (older
        // releases reported the last sync loop run even when nothing changed).
        if healthy { lastUpdated = now }
        let body =
            "{\"lastUpdated\": \(goQuoted(lastUpdated)),\"currentTime\": \(goQuoted(now)), \"nodeEligible\": \(eligible)}"
        return .json(healthy ? .ok : .serviceUnavailable, body)
    }

    /// 200 when healthy, else 503; node eligibility does not matter.
    static func livez(health: ProxyHealth, metrics: ProxyMetrics?) -> HTTPReply {
        var (healthy, lastUpdated) = health.status()
        let now = health.clock()
        metrics?.livezResponded(code: healthy ? 200 : 503)
        if healthy { lastUpdated = now }
        let body = "{\"lastUpdated\": \(goQuoted(lastUpdated)),\"currentTime\": \(goQuoted(now))}"
        return .json(healthy ? .ok : .serviceUnavailable, body)
    }

    /// Go's `%q` of a `time.Time`: its `String()` in double quotes (no characters there need escaping).
    static func goQuoted(_ time: WallTime?) -> String {
        "\"\(time?.description ?? WallTime.goZeroTimeDescription)\""
    }
}
