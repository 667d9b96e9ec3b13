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

/// The one sync path, against the text backend (the renderer's own output as the "kernel").
final class SyncPathTests: XCTestCase {
    let ns = "team"

    func name(_ n: String) -> ObjectName { ObjectName(namespace: ns, name: n) }

    func web(nodePort: Int = 30080) -> Service {
        Service(name: name("web"), type: .nodePort, clusterIPs: [IPAddress("10.96.0.10")!],
                ports: [ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: nodePort)])
    }

    func slice(_ ips: [String]) -> EndpointSlice {
        EndpointSlice(name: name("web-1"), serviceName: "web",
                      endpoints: ips.map { Endpoint(addresses: [IPAddress($0)!], conditions: .init(ready: true)) },
                      ports: [EndpointPort(name: "http", port: 8080)])
    }

    func setup() throws -> NodeSetup {
        try NodeSetup.load(configPath: nil, overrides: ConfigOverrides(), probeInterfaces: false, hostname: { "node-1" })
    }

    /// A sysctl tree in a temporary directory, so the node preparation is observable without root.
    func sysctlRoot() throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("knat-sysctl-\(UUID().uuidString)").path
        for dir in ["net/ipv4/conf/all", "net/netfilter"] {
            try FileManager.default.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true)
        }
        for file in ["net/ipv4/conf/all/route_localnet", "net/netfilter/nf_conntrack_tcp_timeout_established",
                     "net/netfilter/nf_conntrack_tcp_timeout_close_wait", "net/netfilter/nf_conntrack_max"] {
            try "0\n".write(toFile: root + "/" + file, atomically: true, encoding: .utf8)
        }
        return root
    }

    func read(_ root: String, _ file: String) -> String? {
        (try? String(contentsOfFile: root + "/" + file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func path(_ backend: KernelBackend, node: NodePreparation = NoNodePreparation(), setup s: NodeSetup? = nil,
              families: [IPFamily] = [.ipv4]) throws -> SyncPath {
        SyncPath(setup: try s ?? setup(), families: families, backend: backend, features: KernelFeatures(),
                 node: node, logger: Logger(label: "test"), conntrackCleanup: false)
    }

    func snapshot(_ services: [Service], _ slices: [EndpointSlice], changes: Int = 1) -> ClusterStore.Snapshot {
        ClusterStore.Snapshot(state: ClusterState(services: services, slices: slices), serviceChanges: changes)
    }

    func testOneTurnWritesWhatTheDryRunPrints() throws {
        let text = TextBackend()
        let sync = try path(text)
        let outcome = sync.run(snapshot([web()], [slice(["10.244.1.10"])]), full: true)
        XCTAssertTrue(outcome.succeeded)
        let natApplied = try XCTUnwrap(text.tables[.ipv4]?[.nat])
        let services = try XCTUnwrap(natApplied.rules["KUBE-SERVICES"])
        XCTAssertTrue(services.contains { $0.contains("-d 10.96.0.10 ") && $0.contains("--dport 80") })
        XCTAssertEqual(natApplied.rules["PREROUTING"]?.first?.hasSuffix("-j KUBE-SERVICES"), true, "jump on top of PREROUTING")
        // The dry run is the same turn with the text backend: its text declares exactly the chains the compiler
        // made for this state (read from the compiler's Ruleset, not from another text backend), and they have
        // upstream's shape for one NodePort Service with one endpoint.
        let dry = TextBackend(rendersText: true)
        let printed = try path(dry).run(snapshot([web()], [slice(["10.244.1.10"])]), full: true).report.text ?? ""
        var declared: [String: Set<String>] = [:]
        var table = ""
        for line in printed.split(separator: "\n") {
            if line.hasPrefix("*") { table = String(line.dropFirst()) }
            if line.hasPrefix(":") { declared[table, default: []].insert(String(line.dropFirst().prefix { $0 != " " })) }
        }
        let compiled = RuleCompiler(settings: try setup().settings(for: .ipv4, features: KernelFeatures()))
            .compile(ClusterState(services: [web()], slices: [slice(["10.244.1.10"])]))
        let builtin: Set<String> = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
        for t in compiled.tables {
            XCTAssertEqual(declared[t.table.rawValue] ?? [], Set(t.chains.map(\.name)).subtracting(builtin),
                           "\(t.table.rawValue): the dry run declares the compiled chains")
        }
        let nat = declared["nat"] ?? []
        XCTAssertTrue(["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"].allSatisfy(nat.contains), "\(nat)")
        for prefix in ["KUBE-SVC-", "KUBE-EXT-", "KUBE-SEP-"] {
            XCTAssertEqual(nat.filter { $0.hasPrefix(prefix) }.count, 1, "one \(prefix) chain for web's one port and endpoint: \(nat)")
        }
        XCTAssertEqual(nat.count, 7, "\(nat.sorted())")
        // ...and the applied turn holds the same chains, rule for rule as the printed text.
        let appliedChains = Set(nat.union(declared["filter"] ?? []))
        XCTAssertEqual(appliedChains, Set(natApplied.order + (text.tables[.ipv4]?[.filter]?.order ?? [])).subtracting(builtin))
        for chain in nat {
            let printedRules = printed.split(separator: "\n").filter { $0.hasPrefix("-A \(chain) ") }.count
            XCTAssertEqual(natApplied.rules[chain]?.count ?? 0, printedRules, "\(chain): applied and printed rule counts")
        }
    }

    func testTheNodeIsPreparedAsTheDaemonDoesOnceAndAgainWhenSettingsNeedIt() throws {
        let root = try sysctlRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let sync = try path(TextBackend(), node: Sysctls(root: root))
        _ = sync.run(snapshot([web()], [slice(["10.244.1.10"])]), full: true)
        XCTAssertEqual(read(root, "net/ipv4/conf/all/route_localnet"), "1", "localhost NodePorts need route_localnet")
        XCTAssertEqual(read(root, "net/netfilter/nf_conntrack_tcp_timeout_established"), "86400", "kube-proxy's 24h default")
        XCTAssertEqual(read(root, "net/netfilter/nf_conntrack_tcp_timeout_close_wait"), "3600")
        try "0\n".write(toFile: root + "/net/ipv4/conf/all/route_localnet", atomically: true, encoding: .utf8)
        _ = sync.run(snapshot([web()], [slice(["10.244.1.11"])]), full: false)
        XCTAssertEqual(read(root, "net/ipv4/conf/all/route_localnet"), "0", "prepared once, not on every sync")
    }

    func testWithoutLocalhostNodePortsRouteLocalnetIsLeftAlone() throws {
        let root = try sysctlRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var overrides = ConfigOverrides()
        overrides.iptablesLocalhostNodePorts = false
        let s = try NodeSetup.load(configPath: nil, overrides: overrides, probeInterfaces: false, hostname: { "node-1" })
        _ = try path(TextBackend(), node: Sysctls(root: root), setup: s).run(snapshot([web()], []), full: true)
        XCTAssertEqual(read(root, "net/ipv4/conf/all/route_localnet"), "0", "CVE-2020-8558: only when in use")
    }

    func testAOneEndpointChangeRewritesOnlyThatServicesChains() throws {
        let text = TextBackend()
        let sync = try path(text)
        _ = sync.run(snapshot([web()], [slice(["10.244.1.10", "10.244.1.11"])]), full: true)
        let second = sync.run(snapshot([web()], [slice(["10.244.1.10", "10.244.1.12"])]), full: false)
        let nat = try XCTUnwrap(second.report.tables.first { $0.table == .nat })
        XCTAssertEqual(nat.chainsCreated, 1, "the new endpoint's SEP chain")
        XCTAssertEqual(nat.chainsDeleted, 1, "the old endpoint's SEP chain")
        XCTAssertEqual(nat.chainsFlushed, 1, "the SVC chain")
        let filter = try XCTUnwrap(second.report.tables.first { $0.table == .filter })
        XCTAssertFalse(filter.committed, "filter is untouched")
        let third = sync.run(snapshot([web()], [slice(["10.244.1.10", "10.244.1.12"])], changes: 0), full: true)
        XCTAssertTrue(third.report.tables.allSatisfy { !$0.committed }, "nothing changed, nothing written")
    }

    func testDriftIsSeenThroughTheProtocolAndAFullTurnRepairsIt() throws {
        let text = TextBackend()
        let sync = try path(text)
        try text.ensureCanaries(family: .ipv4)
        _ = sync.run(snapshot([web()], [slice(["10.244.1.10"])]), full: true)
        XCTAssertEqual(try DriftMonitor.check(text, committed: sync.committed, families: [.ipv4]), [])
        let before = text.tables
        text.edit(.ipv4, .nat) { $0.rules["KUBE-SERVICES"] = [] }
        let sep = try XCTUnwrap(text.tables[.ipv4]?[.nat]?.order.first { $0.hasPrefix("KUBE-SEP-") })
        text.edit(.ipv4, .nat) { $0.delete(sep) }
        text.edit(.ipv4, .filter) { $0.delete(Ownership.canary) }
        let findings = try DriftMonitor.check(text, committed: sync.committed, families: [.ipv4])
        XCTAssertEqual(Set(findings.flatMap(\.chains)), ["KUBE-SERVICES", sep, Ownership.canary])
        let repair = sync.run(snapshot([web()], [slice(["10.244.1.10"])], changes: 0), full: true)
        let repaired = DriftMonitor.repaired(by: repair.report)
        XCTAssertEqual(repaired.map(\.table), [.nat], "the full turn's own report tells what it repaired")
        try text.ensureCanaries(family: .ipv4)
        for table in [Table.nat, .filter, .mangle] {
            XCTAssertEqual(text.tables[.ipv4]?[table]?.rules, before[.ipv4]?[table]?.rules, "\(table) back exactly as it was")
        }
    }

    func testAFailedApplyKeepsNothingAsCommittedAndCountsTheFailure() throws {
        final class Failing: KernelBackend {
            let name = "failing"
            func apply(_ rulesets: [Ruleset]) throws -> ApplyReport { throw NetfilterError.unsupported("no kernel") }
            func readOwned(family: IPFamily) throws -> OwnedState { OwnedState(family: family) }
            func expectedOwned(_ ruleset: Ruleset) throws -> OwnedState { OwnedState(family: ruleset.family) }
            func ensureCanaries(family: IPFamily) throws {}
            func cleanup(families: [IPFamily]) throws -> ApplyReport { ApplyReport() }
        }
        let sync = try path(Failing())
        let metrics = ProxyMetrics(families: [.ipv4])
        sync.metrics = metrics
        let outcome = sync.run(snapshot([web()], []), full: true)
        XCTAssertFalse(outcome.succeeded)
        XCTAssertTrue(sync.committed.isEmpty)
        XCTAssertTrue(metrics.exposition().contains("kubeproxy_sync_proxy_rules_iptables_restore_failures_total{ip_family=\"IPv4\"} 1"))
    }

    func testConntrackCleanupRunsAfterChangesOnlyAndAfterTheRules() throws {
        let text = TextBackend()
        let sync = try path(text)
        sync.conntrackCleanup = true
        var calls = 0
        sync.reconcileConntrack = { _ in
            calls += 1
            XCTAssertFalse(text.tables.isEmpty, "the rules are in before conntrack is cleaned")
            return UDPConntrackReport(family: .ipv4)
        }
        _ = sync.run(snapshot([web()], [], changes: 0), full: true)
        XCTAssertEqual(calls, 1, "a full sync (a restart) cleans")
        _ = sync.run(snapshot([web()], [], changes: 0), full: false)
        XCTAssertEqual(calls, 1, "an idle partial sync does not read the conntrack table")
        _ = sync.run(snapshot([web()], [slice(["10.244.1.10"])], changes: 1), full: false)
        XCTAssertEqual(calls, 2)
    }

    func testAPartialSyncCleansConntrackOfTheChangedServicesOnlyAndAFullOrAfterAFailureOfAll() throws {
        func dns(_ n: String, _ ip: String) -> Service {
            Service(name: name(n), type: .clusterIP, clusterIPs: [IPAddress(ip)!],
                    ports: [ServicePort(name: "dns", protocol: .udp, port: 53, targetPort: .int(5353))])
        }
        func dnsSlice(_ n: String, _ ep: String) -> EndpointSlice {
            EndpointSlice(name: name(n + "-1"), serviceName: n,
                          endpoints: [Endpoint(addresses: [IPAddress(ep)!], conditions: .init(ready: true))],
                          ports: [EndpointPort(name: "dns", port: 5353, protocol: .udp)])
        }
        final class Flaky: KernelBackend {
            let inner = TextBackend()
            var fail = false
            var name: String { "flaky" }
            func apply(_ rulesets: [Ruleset]) throws -> ApplyReport {
                if fail { throw NetfilterError.unsupported("test failure") }
                return try inner.apply(rulesets)
            }
            func readOwned(family: IPFamily) throws -> OwnedState { try inner.readOwned(family: family) }
            func expectedOwned(_ ruleset: Ruleset) throws -> OwnedState { try inner.expectedOwned(ruleset) }
            func ensureCanaries(family: IPFamily) throws { try inner.ensureCanaries(family: family) }
            func cleanup(families: [IPFamily]) throws -> ApplyReport { try inner.cleanup(families: families) }
        }
        let backend = Flaky()
        let sync = try path(backend)
        sync.conntrackCleanup = true
        var seen: [Set<IPAddress>] = []
        sync.reconcileConntrack = { f in
            seen.append(Set(f.byAddress.keys.map(\.ip)))
            return UDPConntrackReport(family: .ipv4)
        }
        var state = ClusterState(services: [dns("a", "10.96.0.1"), dns("b", "10.96.0.2"), dns("c", "10.96.0.3")],
                                 slices: [dnsSlice("a", "10.244.0.1"), dnsSlice("b", "10.244.0.2"), dnsSlice("c", "10.244.0.3")])
        let all: Set = [IPAddress("10.96.0.1")!, IPAddress("10.96.0.2")!, IPAddress("10.96.0.3")!]
        _ = sync.run(ClusterStore.Snapshot(state: state, serviceChanges: 3), full: true)
        state.upsert(dnsSlice("b", "10.244.0.22"))
        _ = sync.run(ClusterStore.Snapshot(state: state, endpointChanges: 1), full: false)
        // a failed sync skips the cleanup; the next one cannot know what that one changed, so it takes all
        backend.fail = true
        state.upsert(dnsSlice("a", "10.244.0.11"))
        _ = sync.run(ClusterStore.Snapshot(state: state, endpointChanges: 1), full: false)
        backend.fail = false
        state.upsert(dnsSlice("c", "10.244.0.33"))
        _ = sync.run(ClusterStore.Snapshot(state: state, endpointChanges: 1), full: false)
        state.upsert(dnsSlice("c", "10.244.0.34"))
        _ = sync.run(ClusterStore.Snapshot(state: state, endpointChanges: 1), full: false)
        XCTAssertEqual(seen, [all, [IPAddress("10.96.0.2")!], all, [IPAddress("10.96.0.3")!]])
    }

    func testDualStackAppliesBothFamiliesInOneCall() throws {
        final class Counting: KernelBackend {
            let inner = TextBackend()
            var calls: [[IPFamily]] = []
            var name: String { "counting" }
            func apply(_ rulesets: [Ruleset]) throws -> ApplyReport {
                calls.append(rulesets.map(\.family))
                return try inner.apply(rulesets)
            }
            func readOwned(family: IPFamily) throws -> OwnedState { try inner.readOwned(family: family) }
            func expectedOwned(_ ruleset: Ruleset) throws -> OwnedState { try inner.expectedOwned(ruleset) }
            func ensureCanaries(family: IPFamily) throws { try inner.ensureCanaries(family: family) }
            func cleanup(families: [IPFamily]) throws -> ApplyReport { try inner.cleanup(families: families) }
        }
        let backend = Counting()
        _ = try path(backend, families: [.ipv4, .ipv6]).run(snapshot([web()], []), full: true)
        XCTAssertEqual(backend.calls, [[.ipv4, .ipv6]], "one transaction for every family")
    }
    func testThePartialSyncHandsTheCompilersChangeToTheBackendAndAFullSyncComparesEverything() throws {
        final class Recording: KernelBackend {
            let inner = TextBackend()
            var changes: [[RulesetChange]] = []
            var name: String { "recording" }
            func apply(_ rulesets: [Ruleset]) throws -> ApplyReport { try inner.apply(rulesets) }
            func apply(_ rulesets: [Ruleset], changes: [RulesetChange]) throws -> ApplyReport {
                self.changes.append(changes)
                return try inner.apply(rulesets)
            }
            func readOwned(family: IPFamily) throws -> OwnedState { try inner.readOwned(family: family) }
            func expectedOwned(_ ruleset: Ruleset) throws -> OwnedState { try inner.expectedOwned(ruleset) }
            func ensureCanaries(family: IPFamily) throws { try inner.ensureCanaries(family: family) }
            func cleanup(families: [IPFamily]) throws -> ApplyReport { try inner.cleanup(families: families) }
        }
        let backend = Recording()
        let sync = try path(backend)
        // one state, evolving as the daemon's store does, so the compiler patches instead of compiling anew
        var state = ClusterState(services: [web()], slices: [slice(["10.244.1.10"])])
        _ = sync.run(ClusterStore.Snapshot(state: state, serviceChanges: 1), full: true)
        state.upsert(slice(["10.244.1.11"]))
        _ = sync.run(ClusterStore.Snapshot(state: state, endpointChanges: 1), full: false)
        state.upsert(slice(["10.244.1.12"]))
        _ = sync.run(ClusterStore.Snapshot(state: state, endpointChanges: 1), full: true)
        XCTAssertEqual(backend.changes.count, 3)
        guard backend.changes.count == 3 else { return }
        let (first, partial, full) = (backend.changes[0][0], backend.changes[1][0], backend.changes[2][0])
        XCTAssertTrue(first.isEverything)
        XCTAssertFalse(partial.isEverything)
        XCTAssertEqual(partial.base, first.id)
        let nat = partial.touched[.nat] ?? []
        XCTAssertTrue(nat.contains { $0.hasPrefix("KUBE-SEP-") }, "\(nat)")
        XCTAssertTrue(nat.contains { $0.hasPrefix("KUBE-SVC-") }, "\(nat)")
        XCTAssertTrue(first.comparesAll)
        XCTAssertFalse(partial.comparesAll, "a partial sync may compare only what changed")
        XCTAssertTrue(full.comparesAll, "a full sync compares everything whatever the compiler patched")
        XCTAssertTrue(full.full)
        // ... while the encoder may still start from the partial sync's encoding and redo only what changed
        XCTAssertEqual(full.base, partial.id)
        XCTAssertFalse(full.isEverything)
        XCTAssertTrue((full.touched[.nat] ?? []).contains { $0.hasPrefix("KUBE-SEP-") }, "\(full.touched)")
        XCTAssertNotEqual(full.id, partial.id)
    }
}
