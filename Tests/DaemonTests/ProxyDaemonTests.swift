import Foundation
import KubeModel
import KubeSource
import Logging
import Netfilter
import ProxyConfig
import Ruleset
import XCTest

@testable import Daemon

/// The whole daemon (source, store, runner, sync path, drift checks) against the text backend. Waits are on
/// conditions, each bounded; nothing asserts how long anything took.
final class ProxyDaemonTests: XCTestCase {
    func manifest(endpoint: String) -> String {
        """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: team}
        spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80, targetPort: 8080}]}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: web-1, namespace: team, labels: {kubernetes.io/service-name: web}}
        addressType: IPv4
        ports: [{name: http, port: 8080, protocol: TCP}]
        endpoints: [{addresses: [\(endpoint)], conditions: {ready: true}}]
        """
    }

    func waitUntil(_ what: String, timeout: Double = 20, _ cond: () -> Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        while !cond() && Date() < deadline { usleep(10_000) }
        XCTAssertTrue(cond(), "timed out waiting for \(what)")
    }

    func testFollowsTheSourceRepairsDriftAndKeepsCanaries() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("knat-daemon-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("web.yaml")
        try manifest(endpoint: "10.244.1.10").write(to: file, atomically: true, encoding: .utf8)

        var overrides = ConfigOverrides()
        overrides.healthzBindAddress = "127.0.0.1:\(try freePort())"
        overrides.metricsBindAddress = "127.0.0.1:\(try freePort())"
        overrides.iptablesSyncPeriod = GoDuration(parsing: "1s")
        overrides.iptablesMinSyncPeriod = GoDuration(parsing: "50ms")
        let setup = try NodeSetup.load(configPath: nil, overrides: overrides, probeInterfaces: false, hostname: { "node-1" })
        let text = TextBackend()
        let logger = Logger(label: "test")
        let path = SyncPath(setup: setup, families: [.ipv4], backend: text, features: KernelFeatures(),
                            node: NoNodePreparation(), logger: logger, conntrackCleanup: false)
        let daemon = ProxyDaemon(path: path, source: ManifestFileSource(path: dir.path, recheck: .milliseconds(50), logger: logger),
                                 logger: logger)
        let task = Task { try await daemon.run() }
        defer { task.cancel() }

        func nat() -> TextBackend.TableState? { text.tables[.ipv4]?[.nat] }
        func dnatsTo(_ ip: String) -> Bool {
            nat()?.rules.values.contains { $0.contains { $0.contains("--to-destination \(ip):8080") } } ?? false
        }
        waitUntil("the first sync") { dnatsTo("10.244.1.10") }
        for table in Ownership.canaryTables {
            XCTAssertTrue(text.tables[.ipv4]?[table]?.has(Ownership.canary) ?? false, "canary in \(table)")
        }

        try manifest(endpoint: "10.244.1.11").write(to: file, atomically: true, encoding: .utf8)
        waitUntil("the changed endpoint") { dnatsTo("10.244.1.11") && !dnatsTo("10.244.1.10") }

        let services = nat()?.rules["KUBE-SERVICES"]
        text.edit(.ipv4, .nat) { $0.rules["KUBE-SERVICES"] = [] }
        text.edit(.ipv4, .mangle) { $0.delete(Ownership.canary) }
        waitUntil("the drift repaired within a syncPeriod") {
            nat()?.rules["KUBE-SERVICES"] == services && text.tables[.ipv4]?[.mangle]?.has(Ownership.canary) == true
        }
        waitUntil("the repair counted") {
            daemon.metrics.exposition().split(separator: "\n").contains {
                $0.hasPrefix("kubenatd_drift_repairs_total{table=\"nat\"}") && !$0.hasSuffix(" 0")
            }
        }
        task.cancel()
        let stopped = expectation(description: "the daemon stops when cancelled")
        Task {
            _ = try? await task.value
            stopped.fulfill()
        }
        wait(for: [stopped], timeout: 10)
        XCTAssertTrue(dnatsTo("10.244.1.11"), "the rules stay after stopping")
    }
}
