import Foundation
import KubeModel
import KubeSource
import Logging
import Netfilter
import ProxyConfig
import RuleCompiler
import Ruleset
import XCTest

@testable import Daemon

/// Kernel limits are checked once, before any backend, and a violation names the Service and leaves only it out.
final class KernelLimitsSyncTests: XCTestCase {
    let ns = "team"

    func name(_ n: String) -> ObjectName { ObjectName(namespace: ns, name: n) }

    func service(_ n: String, ip: String, portName: String = "http") -> Service {
        Service(name: name(n), type: .clusterIP, clusterIPs: [IPAddress(ip)!],
                ports: [ServicePort(name: portName, port: 80, targetPort: .int(8080))])
    }

    func slice(_ n: String, _ ip: String, portName: String = "http") -> EndpointSlice {
        EndpointSlice(name: name(n + "-1"), serviceName: n,
                      endpoints: [Endpoint(addresses: [IPAddress(ip)!], conditions: .init(ready: true))],
                      ports: [EndpointPort(name: portName, port: 8080)])
    }

    func path(_ backend: KernelBackend, logs: CapturedLogs) throws -> SyncPath {
        let setup = try NodeSetup.load(configPath: nil, overrides: ConfigOverrides(), probeInterfaces: false,
                                       hostname: { "node-1" })
        return SyncPath(setup: setup, families: [.ipv4], backend: backend, features: KernelFeatures(),
                        node: NoNodePreparation(), logger: logs.logger, conntrackCleanup: false)
    }

    /// Every rule the text backend holds, in every table.
    func allRules(_ text: TextBackend) -> [String] {
        (text.tables[.ipv4] ?? [:]).values.flatMap { $0.rules.values.joined() }
    }

    /// A Service name of 240 bytes: the apiserver would refuse it (63 at most), a manifest file need not. Its
    /// port's name `team/<name>:http` is 250 bytes, so every comment that adds to it passes 255.
    let longName = String(repeating: "a", count: 240)

    func testAServiceWhoseCommentPassesTheKernelLimitIsNamedAndLeftOutAndTheOthersProgrammed() throws {
        let logs = CapturedLogs()
        let text = TextBackend()
        let sync = try path(text, logs: logs)
        let state = ClusterState(
            services: [service("web", ip: "10.96.0.10"), service(longName, ip: "10.96.0.77")],
            slices: [slice("web", "10.244.1.10"), slice(longName, "10.244.1.77")])
        let outcome = sync.run(ClusterStore.Snapshot(state: state, serviceChanges: 2), full: true)
        XCTAssertTrue(outcome.succeeded, "\(outcome.error.map { "\($0)" } ?? "")")
        XCTAssertFalse(outcome.limitViolations.isEmpty)
        XCTAssertEqual(Set(outcome.limitViolations.map(\.service)), [name(longName)], "only the long one is named")
        XCTAssertTrue(outcome.limitViolations.allSatisfy { $0.violation.field == .comment && $0.violation.length > 255 })
        XCTAssertTrue(outcome.limitViolations.allSatisfy { $0.portName == "http" && $0.port == 80 })
        // one error per violation, naming the Service, its port and the field, the limit and its kernel constant
        let errors = logs.all.filter { $0.level == .error }.map(\.message)
        XCTAssertEqual(errors.count, outcome.limitViolations.count, "\(errors)")
        for e in errors {
            XCTAssertTrue(e.hasPrefix("Service team/\(longName) port http (80/TCP), IPv4: comment of "), e)
            XCTAssertTrue(e.contains("the kernel takes at most 255 (XT_MAX_COMMENT_LEN 256 with its NUL)"), e)
            XCTAssertTrue(e.contains("left out until it is fixed or deleted"), e)
        }
        // the other Service is programmed, the long one not at all (no rule anywhere carries its address)
        let rules = allRules(text)
        XCTAssertTrue(rules.contains { $0.contains("-d 10.96.0.10/32") || $0.contains("-d 10.96.0.10 ") }, "web's ClusterIP rule")
        XCTAssertTrue(rules.contains { $0.contains("10.244.1.10:8080") }, "web's endpoint")
        XCTAssertFalse(rules.contains { $0.contains("10.96.0.77") || $0.contains("10.244.1.77") }, "nothing of the long one")
        XCTAssertFalse(rules.contains { $0.contains(longName) })

        // logged once: the next syncs (partial and full) say nothing new while it is still over the limit
        _ = sync.run(ClusterStore.Snapshot(state: state), full: false)
        _ = sync.run(ClusterStore.Snapshot(state: state), full: true)
        XCTAssertEqual(logs.all.filter { $0.level == .error }.count, errors.count, "no second report")
    }

    func testAnUpdateOverTheLimitLeavesTheServiceOutIncrementallyAndAFixBringsItBack() throws {
        let logs = CapturedLogs()
        let text = TextBackend()
        let sync = try path(text, logs: logs)
        // a 180-byte name is within the limits with a short port name...
        let n = String(repeating: "b", count: 180)
        var state = ClusterState(
            services: [service("web", ip: "10.96.0.10"), service(n, ip: "10.96.0.77", portName: "p")],
            slices: [slice("web", "10.244.1.10"), slice(n, "10.244.1.77", portName: "p")])
        XCTAssertTrue(sync.run(ClusterStore.Snapshot(state: state, serviceChanges: 2), full: true).succeeded)
        XCTAssertTrue(allRules(text).contains { $0.contains("10.244.1.77:8080") }, "within the limits: programmed")
        // ...and over them once its port name grows to 63 bytes (a one-Service change: an incremental compile)
        let longPort = String(repeating: "p", count: 63)
        state.upsert(service(n, ip: "10.96.0.77", portName: longPort))
        state.upsert(slice(n, "10.244.1.77", portName: longPort))
        let over = sync.run(ClusterStore.Snapshot(state: state, serviceChanges: 1), full: false)
        XCTAssertTrue(over.succeeded)
        XCTAssertEqual(over.stats[.ipv4]?.fragmentsCompiled, 1, "one Service re-derived, not a full compile")
        XCTAssertEqual(Set(over.limitViolations.map(\.service)), [name(n)])
        XCTAssertFalse(allRules(text).contains { $0.contains("10.96.0.77") || $0.contains("10.244.1.77") }, "left out")
        XCTAssertTrue(allRules(text).contains { $0.contains("10.244.1.10:8080") }, "web untouched")
        XCTAssertFalse(logs.all.filter { $0.level == .error }.isEmpty)
        // fixed: the short port name again; the Service is back and its return is logged
        state.upsert(service(n, ip: "10.96.0.77", portName: "p"))
        state.upsert(slice(n, "10.244.1.77", portName: "p"))
        let fixed = sync.run(ClusterStore.Snapshot(state: state, serviceChanges: 1), full: false)
        XCTAssertTrue(fixed.succeeded)
        XCTAssertEqual(fixed.limitViolations, [])
        XCTAssertTrue(allRules(text).contains { $0.contains("10.244.1.77:8080") }, "programmed again")
        XCTAssertTrue(logs.all.contains { $0.level == .info && $0.message.contains("team/\(n)") && $0.message.contains("no longer breaks") },
                      "\(logs.all.map(\.message))")
        // the text backend's tables equal a fresh compile of the fixed state: the patches left nothing behind
        let fresh = TextBackend()
        XCTAssertTrue(try path(fresh, logs: CapturedLogs()).run(ClusterStore.Snapshot(state: state), full: true).succeeded)
        XCTAssertEqual(text.tables[.ipv4]?[.nat]?.rules, fresh.tables[.ipv4]?[.nat]?.rules)
        XCTAssertEqual(text.tables[.ipv4]?[.filter]?.rules, fresh.tables[.ipv4]?[.filter]?.rules)
    }

    func testRulesNoServiceOwnsOverALimitAreRefusedWholeWithTheValueNamed() throws {
        // What a configuration could make (an interface name from detectLocal) in a fixed chain: nothing can be
        // left out there, so the check throws with the value named and the backend is never called.
        var ruleset = Ruleset(family: .ipv4, tables: [TableRuleset(table: .filter, chains: [
            Chain(Ownership.forward, [Rule([.inInterface(String(repeating: "i", count: 16), negated: false)], .accept)]),
        ])])
        XCTAssertThrowsError(try KernelLimits.check(ruleset)) { error in
            let e = error as? KernelLimitError
            XCTAssertEqual(e?.violations.map(\.field), [.interfaceName])
            XCTAssertEqual(e?.violations.first?.description,
                           "interface name of rule 1 of filter chain KUBE-FORWARD is 16 bytes, the kernel takes at most 15 (IFNAMSIZ 16 with its NUL)")
        }
        ruleset.tables[0].chains[0].rules[0] = Rule([.inInterface(String(repeating: "i", count: 15), negated: false)], .accept)
        XCTAssertNoThrow(try KernelLimits.check(ruleset), "15 bytes fit")
    }
}
