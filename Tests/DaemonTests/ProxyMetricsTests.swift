import Daemon
import Foundation
import KubeModel
import NIOPosix
import XCTest

final class ProxyMetricsTests: XCTestCase {
    private let expectedTypes: [String: String] = [
        "kubeproxy_sync_proxy_rules_duration_seconds": "histogram",
        "kubeproxy_sync_full_proxy_rules_duration_seconds": "histogram",
        "kubeproxy_sync_partial_proxy_rules_duration_seconds": "histogram",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds": "gauge",
        "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds": "gauge",
        "kubeproxy_network_programming_duration_seconds": "histogram",
        "kubeproxy_sync_proxy_rules_endpoint_changes_pending": "gauge",
        "kubeproxy_sync_proxy_rules_endpoint_changes_total": "counter",
        "kubeproxy_sync_proxy_rules_service_changes_pending": "gauge",
        "kubeproxy_sync_proxy_rules_service_changes_total": "counter",
        "kubeproxy_sync_proxy_rules_iptables_restore_failures_total": "counter",
        "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total": "counter",
        "kubeproxy_sync_proxy_rules_iptables_total": "gauge",
        "kubeproxy_sync_proxy_rules_iptables_last": "gauge",
        "kubeproxy_sync_proxy_rules_no_local_endpoints_total": "gauge",
        "kubeproxy_conntrack_reconciler_deleted_entries_total": "counter",
        "kubeproxy_conntrack_reconciler_sync_duration_seconds": "histogram",
        "kubeproxy_proxy_healthz_total": "counter",
        "kubeproxy_proxy_livez_total": "counter",
        "kubenatd_drift_repairs_total": "counter",
        "kubenatd_invalid_objects_total": "counter",
        "process_resident_memory_bytes": "gauge",
        "process_virtual_memory_bytes": "gauge",
        "process_cpu_seconds_total": "counter",
        "process_start_time_seconds": "gauge",
        "process_open_fds": "gauge",
        "process_max_fds": "gauge",
    ]

    private func scrape(_ metrics: ProxyMetrics) throws -> PrometheusText {
        try PrometheusText.parse(metrics.exposition())
    }

    func testEveryMetricIsRegisteredWithUpstreamTypeAndHelp() throws {
        let s = try self.scrape(ProxyMetrics(families: [.ipv4, .ipv6]))
        for (name, type) in self.expectedTypes {
            XCTAssertEqual(s.types[name], type, name)
            let series = s.series(type == "histogram" ? name + "_count" : name)
            XCTAssertFalse(series.isEmpty, "\(name) has no series")
        }
        XCTAssertEqual(
            s.help["kubeproxy_sync_proxy_rules_duration_seconds"], "[ALPHA] SyncProxyRules latency in seconds")
        XCTAssertEqual(s.help["kubeproxy_proxy_healthz_total"], "[ALPHA] Cumulative proxy healthz HTTP status")
    }

    func testSeriesExistPerFamilyBeforeTheFirstSync() throws {
        let s = try self.scrape(ProxyMetrics(families: [.ipv4, .ipv6]))
        for family in ["IPv4", "IPv6"] {
            XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_duration_seconds_count", ["ip_family": family]), 0)
            XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_last_timestamp_seconds", ["ip_family": family]), 0)
            XCTAssertEqual(
                s.value("kubeproxy_sync_proxy_rules_iptables_total", ["ip_family": family, "table": "nat"]), 0)
            XCTAssertEqual(
                s.value(
                    "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                    ["ip_family": family, "traffic_policy": "external"]), 0)
            XCTAssertEqual(
                s.value("kubeproxy_sync_proxy_rules_iptables_restore_failures_total", ["ip_family": family]), 0)
        }
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_endpoint_changes_pending"), 0)
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_service_changes_total"), 0)
    }

    private func bucketBounds(_ s: PrometheusText, _ name: String) -> [Double] {
        s.series(name + "_bucket").filter { $0.labels["ip_family"] == "IPv4" }
            .compactMap { $0.labels["le"] == "+Inf" ? .infinity : Double($0.labels["le"]!) }.sorted()
    }

    func testHistogramBucketsAreUpstreams() throws {
        let s = try self.scrape(ProxyMetrics())
        let sync = (0..<15).map { 0.001 * pow(2, Double($0)) } + [.infinity]
        for name in [
            "kubeproxy_sync_proxy_rules_duration_seconds", "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
        ] {
            let bounds = self.bucketBounds(s, name)
            XCTAssertEqual(bounds.count, sync.count, name)
            for (a, b) in zip(bounds, sync) { XCTAssertEqual(a, b, accuracy: 1e-9, name) }
        }
        var programming: [Double] = [0, 0.25, 0.5]
        programming += (1...59).map(Double.init)
        programming += stride(from: 60.0, through: 115, by: 5)
        programming += stride(from: 120.0, through: 300, by: 30)
        programming.append(.infinity)
        XCTAssertEqual(self.bucketBounds(s, "kubeproxy_network_programming_duration_seconds"), programming)
    }

    func testExpositionIsSortedByFamilyWithGoBucketBounds() {
        let text = ProxyMetrics(families: [.ipv4]).exposition()
        let typeNames = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map {
            String($0.split(separator: " ")[2])
        }
        XCTAssertEqual(typeNames, typeNames.sorted())
        XCTAssertEqual(typeNames.count, self.expectedTypes.count)
        XCTAssertTrue(
            text.contains(#"kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="1"} 0"#), text)
        XCTAssertTrue(
            text.contains(#"kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="0"} 0"#))
        XCTAssertTrue(
            text.contains(#"kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="0.001"} 0"#))
        XCTAssertFalse(text.contains(#".0"}"#), "no Swift-style whole-number bounds")
        // HELP stays right before its TYPE.
        let lines = text.split(separator: "\n")
        for (i, line) in lines.enumerated() where line.hasPrefix("# HELP ") {
            XCTAssertTrue(lines[i + 1].hasPrefix("# TYPE " + line.split(separator: " ")[2] + " "), String(line))
        }
    }

    func testObserveSyncMovesTheRightHistograms() throws {
        let metrics = ProxyMetrics(families: [.ipv4, .ipv6])
        metrics.observeSync(family: .ipv4, seconds: 0.003, full: true)
        metrics.observeSync(family: .ipv4, seconds: 0.5, full: false)
        let s = try self.scrape(metrics)
        let v4 = ["ip_family": "IPv4"]
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_duration_seconds_count", v4), 2)
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_duration_seconds_sum", v4)!, 0.503, accuracy: 1e-9)
        XCTAssertEqual(s.value("kubeproxy_sync_full_proxy_rules_duration_seconds_count", v4), 1)
        XCTAssertEqual(s.value("kubeproxy_sync_partial_proxy_rules_duration_seconds_count", v4), 1)
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_duration_seconds_count", ["ip_family": "IPv6"]), 0)
        let buckets = s.series("kubeproxy_sync_proxy_rules_duration_seconds_bucket").filter {
            $0.labels["ip_family"] == "IPv4"
        }
        func bucket(_ le: Double) -> Double? {
            buckets.first(where: { Double($0.labels["le"]!) == le })?.value
        }
        XCTAssertEqual(bucket(0.002), 0)
        XCTAssertEqual(bucket(0.004), 1)
        XCTAssertEqual(bucket(0.512), 2)
    }

    func testSyncLoopGaugesAndCountersMove() throws {
        let metrics = ProxyMetrics(families: [.ipv4])
        let v4 = ["ip_family": "IPv4"]
        metrics.syncQueued(family: .ipv4, at: WallTime(secondsSince1970: 1_704_067_200))
        metrics.syncSucceeded(family: .ipv4, at: WallTime(secondsSince1970: 1_704_067_201, nanoseconds: 500_000_000))
        metrics.observeNetworkProgramming(family: .ipv4, seconds: 1.5)
        metrics.setPendingChanges(services: 3, endpoints: 7)
        metrics.countChanges(services: 2, endpoints: 5)
        metrics.countChanges(endpoints: 1)
        metrics.restoreFailed(family: .ipv4, partial: true)
        metrics.restoreFailed(family: .ipv4, partial: false)
        metrics.setRuleCounts(family: .ipv4, table: "nat", total: 120, written: 40)
        metrics.setRuleCounts(family: .ipv4, table: "filter", total: 9, written: 9)
        metrics.setNoLocalEndpoints(family: .ipv4, internalPolicy: 1, externalPolicy: 2)
        metrics.conntrackReconciled(family: .ipv4, seconds: 0.01, deleted: 4)
        metrics.driftRepaired(table: "nat")
        let s = try self.scrape(metrics)
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", v4), 1_704_067_200)
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_last_timestamp_seconds", v4), 1_704_067_201.5)
        XCTAssertEqual(s.value("kubeproxy_network_programming_duration_seconds_count", v4), 1)
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_service_changes_pending"), 3)
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_endpoint_changes_pending"), 7)
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_service_changes_total"), 2)
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_endpoint_changes_total"), 6)
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_iptables_restore_failures_total", v4), 2)
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total", v4), 1)
        XCTAssertEqual(
            s.value("kubeproxy_sync_proxy_rules_iptables_total", ["ip_family": "IPv4", "table": "nat"]), 120)
        XCTAssertEqual(s.value("kubeproxy_sync_proxy_rules_iptables_last", ["ip_family": "IPv4", "table": "nat"]), 40)
        XCTAssertEqual(
            s.value("kubeproxy_sync_proxy_rules_iptables_total", ["ip_family": "IPv4", "table": "filter"]), 9)
        XCTAssertEqual(
            s.value(
                "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                ["ip_family": "IPv4", "traffic_policy": "internal"]),
            1)
        XCTAssertEqual(
            s.value(
                "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                ["ip_family": "IPv4", "traffic_policy": "external"]),
            2)
        XCTAssertEqual(s.value("kubeproxy_conntrack_reconciler_deleted_entries_total", v4), 4)
        XCTAssertEqual(s.value("kubeproxy_conntrack_reconciler_sync_duration_seconds_count", v4), 1)
        XCTAssertEqual(s.value("kubenatd_drift_repairs_total", ["table": "nat"]), 1)
        XCTAssertEqual(s.value("kubenatd_drift_repairs_total", ["table": "filter"]), 0)
    }

    func testAPIServerRequestsAreCountedByResourceVerbAndCode() throws {
        let metrics = ProxyMetrics(families: [.ipv4])
        metrics.apiserverRequest(resource: "services", verb: "list", code: "200")
        metrics.apiserverRequest(resource: "services", verb: "list", code: "200")
        metrics.apiserverRequest(resource: "services", verb: "watch", code: "410")
        metrics.apiserverRequest(resource: "nodes", verb: "watch", code: "<error>")
        let s = try self.scrape(metrics)
        let name = "kubenatd_apiserver_requests_total"
        XCTAssertEqual(s.types[name], "counter")
        XCTAssertEqual(
            s.help[name], "Requests made to the apiserver, by resource, verb (list, watch, get) and HTTP status code")
        XCTAssertEqual(s.value(name, ["resource": "services", "verb": "list", "code": "200"]), 2)
        XCTAssertEqual(s.value(name, ["resource": "services", "verb": "watch", "code": "410"]), 1)
        XCTAssertEqual(s.value(name, ["resource": "nodes", "verb": "watch", "code": "<error>"]), 1)
    }

    func testProcessMetricsComeFromProcSelf() throws {
        let s = try self.scrape(ProxyMetrics())
        XCTAssertGreaterThan(s.value("process_resident_memory_bytes") ?? 0, 1_000_000)
        XCTAssertGreaterThan(s.value("process_virtual_memory_bytes") ?? 0, 1_000_000)
        XCTAssertGreaterThan(s.value("process_open_fds") ?? 0, 2)
        XCTAssertGreaterThan(s.value("process_max_fds") ?? 0, 0)
        let start = s.value("process_start_time_seconds") ?? 0
        let now = Date().timeIntervalSince1970
        XCTAssertLessThanOrEqual(start, now + 1)
        XCTAssertGreaterThan(start, now - 86400 * 365, "started within the last year, not at the epoch")
        XCTAssertNotNil(s.value("process_cpu_seconds_total"))
    }

    func testMetricsServerServesScrapeHealthzAndProxyMode() async throws {
        let metrics = ProxyMetrics(families: [.ipv4])
        let server = try await MetricsServer.start(
            host: "127.0.0.1", port: 0, metrics: metrics, group: MultiThreadedEventLoopGroup.singleton)
        do {
            try self.checkMetricsServer(port: server.port, metrics: metrics)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    private func checkMetricsServer(port: Int, metrics: ProxyMetrics) throws {
        let before = try httpGet(port: port, path: "/metrics")
        XCTAssertEqual(before.status, 200)
        XCTAssertEqual(before.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        let first = try PrometheusText.parse(before.body)
        XCTAssertEqual(first.value("kubeproxy_sync_proxy_rules_duration_seconds_count", ["ip_family": "IPv4"]), 0)

        metrics.observeSync(family: .ipv4, seconds: 0.02, full: true)
        let second = try PrometheusText.parse(try httpGet(port: port, path: "/metrics").body)
        XCTAssertEqual(second.value("kubeproxy_sync_proxy_rules_duration_seconds_count", ["ip_family": "IPv4"]), 1)

        let healthz = try httpGet(port: port, path: "/healthz")
        XCTAssertEqual(healthz.status, 200)
        XCTAssertEqual(healthz.body, "ok")
        XCTAssertEqual(healthz.headers["content-type"], "text/plain; charset=utf-8")
        XCTAssertEqual(healthz.headers["x-content-type-options"], "nosniff")

        XCTAssertEqual(try httpGet(port: port, path: "/healthz/ping").body, "ok")
        XCTAssertEqual(
            try httpGet(port: port, path: "/healthz?verbose").body, "[+]ping ok\nhealthz check passed\n")
        XCTAssertEqual(try httpGet(port: port, path: "/proxyMode").body, "iptables")
        XCTAssertEqual(try httpGet(port: port, path: "/nope").status, 404)
    }
}
