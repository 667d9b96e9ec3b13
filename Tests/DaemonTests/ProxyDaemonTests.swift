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

    /// Benchmarks/latency.sh reads this line: one per sync that carried a change, timed from the store receiving
    /// the change (not from the sync's start: the wait for minSyncPeriod counts), with the backend's own commit time.
    func testLogsEachChangesTimeFromTheStoreToSyncDoneAndTheKernelsCommit() throws {
        /// Text backend whose apply takes at least 20 ms and reports a commit of 12.5 ms; records when each apply
        /// started.
        final class Slow: KernelBackend {
            let inner = TextBackend()
            let lock = NSLock()
            var starts: [ContinuousClock.Instant] = []
            var name: String { "slow" }
            func apply(_ rulesets: [Ruleset]) throws -> ApplyReport {
                self.lock.withLock { self.starts.append(.now) }
                usleep(20_000)
                var report = try inner.apply(rulesets)
                for i in report.tables.indices { report.tables[i].commitSeconds = 0 }
                if !report.tables.isEmpty { report.tables[0].commitSeconds = 0.0125 }
                return report
            }
            func readOwned(family: IPFamily) throws -> OwnedState { try inner.readOwned(family: family) }
            func expectedOwned(_ ruleset: Ruleset) throws -> OwnedState { try inner.expectedOwned(ruleset) }
            func ensureCanaries(family: IPFamily) throws { try inner.ensureCanaries(family: family) }
            func cleanup(families: [IPFamily]) throws -> ApplyReport { try inner.cleanup(families: families) }
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("knat-daemon-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("web.yaml")
        try manifest(endpoint: "10.244.1.10").write(to: file, atomically: true, encoding: .utf8)

        var overrides = ConfigOverrides()
        overrides.healthzBindAddress = "127.0.0.1:\(try freePort())"
        overrides.metricsBindAddress = "127.0.0.1:\(try freePort())"
        overrides.iptablesSyncPeriod = GoDuration(parsing: "2s")
        // A change right after a sync waits for this; the logged time must include the wait.
        overrides.iptablesMinSyncPeriod = GoDuration(parsing: "500ms")
        let setup = try NodeSetup.load(configPath: nil, overrides: overrides, probeInterfaces: false, hostname: { "node-1" })
        let backend = Slow()
        let logs = CapturedLogs()
        var logger = logs.logger
        logger.logLevel = .debug
        let path = SyncPath(setup: setup, families: [.ipv4], backend: backend, features: KernelFeatures(),
                            node: NoNodePreparation(), logger: logger, conntrackCleanup: false)
        let daemon = ProxyDaemon(path: path, source: ManifestFileSource(path: dir.path, recheck: .milliseconds(20), logger: logger),
                                 logger: logger)
        let task = Task { try await daemon.run() }
        defer { task.cancel() }

        func lines() -> [String] { logs.all.map(\.message).filter { $0.hasPrefix("change synced: ") } }
        func starts() -> [ContinuousClock.Instant] { backend.lock.withLock { backend.starts } }
        waitUntil("the first sync's line") { lines().count == 1 }
        let written = ContinuousClock.now
        try manifest(endpoint: "10.244.1.11").write(to: file, atomically: true, encoding: .utf8)
        // The first moment the test sees the change in the store: the store received it no later.
        let deadline = written + .seconds(20)
        while daemon.store.peek().slices.values.first?.endpoints.first?.addresses.first?.description != "10.244.1.11"
            && ContinuousClock.now < deadline
        {
            usleep(1000)
        }
        let seen = ContinuousClock.now
        waitUntil("the change's line") { lines().count == 2 }
        let waited = (ContinuousClock.now - written).secondsValue * 1000
        guard lines().count == 2, starts().count >= 2 else { return }
        let line = lines()[1]
        func number(after label: String) -> Double? {
            guard let r = line.range(of: label + " ") else { return nil }
            return Double(line[r.upperBound...].prefix { $0 != " " })
        }
        guard let total = number(after: "first event to sync done"), let commit = number(after: "kernel commit"),
            let own = number(after: "own"), let queued = number(after: "waited for the sync"),
            let compile = number(after: "compile")
        else { return XCTFail("unparsable: \(line)") }
        XCTAssertTrue(line.contains("(partial sync, 0 Service and 1 endpoint changes;"), line)
        XCTAssertEqual(commit, 12.5, "the backend's commitSeconds, summed over tables: \(line)")
        XCTAssertEqual(own, total - commit, accuracy: 0.002, line)
        // The store had the change by `seen`; the change's sync applied from starts()[1] for at least 20 ms. Timed
        // from the sync's start instead of the store, the figure would miss the wait for minSyncPeriod.
        let held = (starts()[1] - seen).secondsValue * 1000
        XCTAssertGreaterThan(held, 200, "minSyncPeriod (500 ms) held the change: the check below means something")
        XCTAssertGreaterThanOrEqual(total, held + 20, line)
        XCTAssertLessThanOrEqual(total, waited, line)
        // The wait alone: the sync started after minSyncPeriod (at most its compile and a little before the apply),
        // and the apply's 20 ms come after it.
        XCTAssertGreaterThanOrEqual(queued, held - compile - 50, line)
        XCTAssertLessThanOrEqual(queued, total - 20, line)

        // A sync that carries no change (the periodic one, syncPeriod 2 s) logs no such line.
        // The apply after it has started only once that sync (and its line, were there one) is done.
        waitUntil("a periodic sync, and the one after it") { starts().count >= 4 }
        XCTAssertEqual(lines().count, 2, "\(lines())")
    }
}
