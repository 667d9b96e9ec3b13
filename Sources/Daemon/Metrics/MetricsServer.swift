import Logging
import NIOCore
import NIOHTTP1

/// The metrics server on `metricsBindAddress`, with the paths kube-proxy's metrics mux serves:
/// `/metrics` (Prometheus text), `/healthz` (the `healthz` package's plain `ok`) and `/proxyMode`.
public final class MetricsServer: Sendable {
    public let metrics: ProxyMetrics
    private let listener: HTTPListener

    private init(metrics: ProxyMetrics, listener: HTTPListener) {
        self.metrics = metrics
        self.listener = listener
    }

    /// Binds `host:port` (port 0 picks a free one, see `port`) and starts answering.
    public static func start(
        host: String, port: Int, metrics: ProxyMetrics, group: any EventLoopGroup,
        logger: Logger = Logger(label: "kube-natd.metrics")
    ) async throws -> MetricsServer {
        let listener = try await HTTPListener.bind(host: host, port: port, group: group) { head in
            MetricsServer.reply(to: head, metrics: metrics)
        }
        logger.info("Starting metrics HTTP server", metadata: ["address": "\(listener.address)"])
        return MetricsServer(metrics: metrics, listener: listener)
    }

    /// The bound port.
    public var port: Int { self.listener.port }

    /// Stops listening.
    public func stop() async {
        await self.listener.close()
    }

    /// The reply to one request; exposed so the routes can be tested without sockets.
    public static func reply(to head: HTTPRequestHead, metrics: ProxyMetrics) -> HTTPReply {
        switch head.path {
        case "/metrics":
            // The content type client_golang's promhttp uses for the text format.
            return HTTPReply(
                status: .ok, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                body: metrics.exposition())
        case "/healthz", "/healthz/ping":
            // component-base's healthz with its one default check, ping; `?verbose` lists the checks.
            return .text(.ok, head.queryItems.contains("verbose") ? "[+]ping ok\nhealthz check passed\n" : "ok")
        case "/proxyMode":
            return .text(.ok, "iptables")
        default:
            return .notFound
        }
    }
}
