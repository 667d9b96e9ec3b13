import Foundation
import KubeModel
import KubeSource
import Logging
import Netfilter
import ProxyConfig
import Ruleset
import XCTest

@testable import Daemon

/// The node's own lifecycle: families, node IPs, eligibility, the wait for the Node and restarts on its changes.
final class NodeLifecycleTests: XCTestCase {
    let v4 = IPAddress("192.168.10.1")!
    let v6 = IPAddress("fd00::1")!

    func node(_ addresses: [(String, String)] = [("InternalIP", "192.168.10.1")], podCIDRs: [String] = [],
              taints: [String] = [], deleting: Bool = false) -> Node {
        Node(name: "node-1", taints: taints.map { NodeTaint(key: $0, effect: "NoSchedule") },
             deletionTimestamp: deleting ? "2026-12-07T21:00:00Z" : nil,
             addresses: addresses.compactMap { a in IPAddress(a.1).map { NodeAddress(type: a.0, address: $0) } },
             podCIDRs: podCIDRs.map { CIDR($0)! })
    }

    func setup(_ overrides: ConfigOverrides = ConfigOverrides()) throws -> NodeSetup {
        try NodeSetup.load(configPath: nil, overrides: overrides, probeInterfaces: false, hostname: { "node-1" })
    }

    // MARK: families

    func testAutoProgramsEveryFamilyTheKernelSupports() throws {
        XCTAssertEqual(try FamilySelection.auto.families(primary: .ipv4, support: FamilySupport(ipv6: true)), [.ipv4, .ipv6])
        XCTAssertEqual(try FamilySelection.auto.families(primary: .ipv6, support: FamilySupport(ipv6: true)), [.ipv4, .ipv6])
        XCTAssertEqual(try FamilySelection.auto.families(primary: .ipv4, support: FamilySupport(ipv6: false)), [.ipv4])
        XCTAssertThrowsError(try FamilySelection.auto.families(primary: .ipv6, support: FamilySupport(ipv6: false)),
                             "upstream: no support for primary IP family")
        // --ip-family stays an override, whatever the kernel says.
        XCTAssertEqual(try FamilySelection.ipv4.families(primary: .ipv6, support: FamilySupport(ipv6: true)), [.ipv4])
        XCTAssertEqual(try FamilySelection.dual.families(primary: .ipv4, support: FamilySupport(ipv6: false)), [.ipv4, .ipv6])
    }

    func testIPv6SupportIsReadFromTheKernel() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("knat-proc-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/proc/net", withIntermediateDirectories: true)
        XCTAssertEqual(FamilySupport.detect(root: root), FamilySupport(ipv6: false), "no IPv6 in the kernel")
        FileManager.default.createFile(atPath: root + "/proc/net/if_inet6", contents: Data())
        XCTAssertEqual(FamilySupport.detect(root: root), FamilySupport(ipv6: false), "IPv6 but no ip6 tables")
        FileManager.default.createFile(atPath: root + "/proc/net/ip6_tables_names", contents: Data())
        XCTAssertEqual(FamilySupport.detect(root: root), FamilySupport(ipv6: true))
    }

    // MARK: node IPs

    func testNodeIPsAreTheNodesFirstInternalThenExternalIPOfEachFamily() {
        let n = node([("Hostname", "192.0.2.9"), ("ExternalIP", "203.0.113.5"), ("InternalIP", "fd00::1"),
                      ("InternalIP", "192.168.10.1"), ("InternalIP", "192.168.10.2")])
        XCTAssertEqual(NodeSetup.hostIPs(of: n), [v6, v4], "InternalIPs first; the first, then the other family's first")
        XCTAssertEqual(NodeSetup.hostIPs(of: node([("ExternalIP", "203.0.113.5")])), [IPAddress("203.0.113.5")!])
        XCTAssertEqual(NodeSetup.hostIPs(of: node([("Hostname", "node-1")])), [])
    }

    func testBindAddressOverridesThePrimaryFamilyAndLoopbackFillsTheRest() {
        var (primary, ips) = NodeSetup.detectNodeIPs([v6, v4], bindAddress: "0.0.0.0")
        XCTAssertEqual(primary, .ipv6)
        XCTAssertEqual(ips, [v6, v4])
        (primary, ips) = NodeSetup.detectNodeIPs([v6, v4], bindAddress: "10.0.0.9")
        XCTAssertEqual(primary, .ipv4)
        XCTAssertEqual(ips, [IPAddress("10.0.0.9")!, v6])
        (primary, ips) = NodeSetup.detectNodeIPs([], bindAddress: "::")
        XCTAssertEqual(primary, .ipv4)
        XCTAssertEqual(ips, [IPAddress("127.0.0.1")!, IPAddress("::1")!])
    }

    func testTheNodeFeedsNodeIPsPodCIDRsAndTheNodeCIDRDetectorPerFamily() throws {
        var o = ConfigOverrides()
        o.detectLocalMode = "NodeCIDR"
        o.nodePortAddresses = ["primary"]
        var s = try setup(o).applying(node([("InternalIP", "192.168.10.1"), ("InternalIP", "fd00::1")],
                                           podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"]))
        s.localAddresses = [v4, v6, IPAddress("127.0.0.1")!]
        let f = KernelFeatures()
        XCTAssertEqual(s.settings(for: .ipv4, features: f).localDetector, .cidr(CIDR("10.244.1.0/24")!))
        XCTAssertEqual(s.settings(for: .ipv6, features: f).localDetector, .cidr(CIDR("fd00:10:244:1::/64")!))
        XCTAssertEqual(s.settings(for: .ipv4, features: f).nodePortAddresses, .addresses([v4]))
        XCTAssertEqual(s.settings(for: .ipv6, features: f).nodePortAddresses, .addresses([v6]))
        XCTAssertFalse(s.settings(for: .ipv4, features: f).localhostNodePorts, "primary holds no IPv4 loopback")
    }

    // MARK: nodePortAddresses against the local addresses, on each sync

    func testNodePortAddressesAreMatchedAgainstTheLocalAddressesOnEachSync() throws {
        var o = ConfigOverrides()
        o.nodePortAddresses = ["10.1.0.0/16", "127.0.0.0/8"]
        let local = LockedAddresses([IPAddress("127.0.0.1")!, IPAddress("10.1.0.5")!, IPAddress("10.2.0.5")!])
        let text = TextBackend()
        let sync = SyncPath(setup: try setup(o), families: [.ipv4], backend: text, features: KernelFeatures(),
                            node: NoNodePreparation(), logger: Logger(label: "test"), conntrackCleanup: false,
                            localAddresses: { local.value })
        let svc = Service(name: ObjectName(namespace: "t", name: "web"), type: .nodePort,
                          clusterIPs: [IPAddress("10.96.0.10")!],
                          ports: [ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30080)])
        let state = ClusterStore.Snapshot(state: ClusterState(services: [svc], slices: []), serviceChanges: 1)
        func nodePortRules() -> [String] {
            (text.tables[.ipv4]?[.nat]?.rules["KUBE-SERVICES"] ?? []).filter { $0.contains("-j KUBE-NODEPORTS") }
        }
        func matched(_ ips: [String]) -> Bool {
            nodePortRules().count == ips.count && ips.allSatisfy { ip in nodePortRules().contains { $0.contains("-d \(ip)") } }
        }
        XCTAssertTrue(sync.run(state, full: true).succeeded)
        XCTAssertTrue(matched(["127.0.0.1", "10.1.0.5"]), "loopback included; 10.2.0.5 outside the CIDRs: \(nodePortRules())")
        XCTAssertTrue(sync.settings(for: .ipv4)!.localhostNodePorts, "the list holds 127.0.0.0/8")
        local.value = [IPAddress("127.0.0.1")!, IPAddress("10.1.0.6")!]
        XCTAssertTrue(sync.run(ClusterStore.Snapshot(state: state.state), full: false).succeeded)
        XCTAssertTrue(matched(["127.0.0.1", "10.1.0.6"]), "an address brought up later is matched: \(nodePortRules())")
    }

    // MARK: eligibility

    func testEligibilityFollowsTaintsAndDeletionAndComesBack() throws {
        let health = ProxyHealth(healthTimeout: .seconds(60))
        XCTAssertTrue(health.nodeEligible, "eligible at start")
        health.syncNode(node(taints: ["ToBeDeletedByClusterAutoscaler"]))
        XCTAssertFalse(health.nodeEligible)
        health.syncNode(node(taints: ["node.kubernetes.io/unschedulable"]))
        XCTAssertTrue(health.nodeEligible, "the taint gone: eligible again")
        health.syncNode(node(deleting: true))
        XCTAssertFalse(health.nodeEligible)
        let eligible = HealthServer.reply(to: .init(version: .http1_1, method: .GET, uri: "/healthz"), health: health, metrics: nil)
        XCTAssertEqual(eligible.status, .serviceUnavailable)
        XCTAssertTrue(eligible.body.contains("\"nodeEligible\": false"), eligible.body)
        let live = HealthServer.reply(to: .init(version: .http1_1, method: .GET, uri: "/livez"), health: health, metrics: nil)
        XCTAssertEqual(live.status, .ok, "/livez ignores eligibility")
    }

    func testTheDaemonFeedsEligibilityFromTheNodeAndRestartsOnNodeIPChanges() async throws {
        let exits = LockedAddresses([])
        let sync = SyncPath(setup: try setup(), families: [.ipv4], backend: TextBackend(), features: KernelFeatures(),
                            node: NoNodePreparation(), logger: Logger(label: "test"), conntrackCleanup: false,
                            localAddresses: { [] })
        let daemon = ProxyDaemon(path: sync, source: ManifestFileSource(path: "/nonexistent", recheck: .seconds(1), logger: Logger(label: "test")),
                                 logger: Logger(label: "test"), exit: { code in exits.value.append(IPAddress("0.0.0.\(code)")!) })
        await daemon.followNode(node(podCIDRs: ["10.244.1.0/24"]))
        XCTAssertEqual(sync.setup.nodeIPs.first, v4, "the Node's IP is the node IP")
        XCTAssertTrue(daemon.health.nodeEligible)
        await daemon.followNode(node(podCIDRs: ["10.244.1.0/24"], taints: ["ToBeDeletedByClusterAutoscaler"]))
        XCTAssertFalse(daemon.health.nodeEligible)
        await daemon.followNode(node(podCIDRs: ["10.244.1.0/24"]))
        XCTAssertTrue(daemon.health.nodeEligible)
        await daemon.followNode(node(podCIDRs: ["10.244.9.0/24"]))
        XCTAssertEqual(exits.value, [], "podCIDRs are not watched outside NodeCIDR mode")
        await daemon.followNode(node([("InternalIP", "192.168.10.7")], podCIDRs: ["10.244.9.0/24"]))
        XCTAssertEqual(exits.value, [IPAddress("0.0.0.1")!], "node IPs changed: exit 1")
    }

    // MARK: lifecycle decisions and the wait

    func testTheDaemonSyncsNothingBeforeItsNodeAndGivesUpAfterTheBound() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("knat-wait-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try """
            apiVersion: v1
            kind: Service
            metadata: {name: web, namespace: team}
            spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}
            """.write(to: dir.appendingPathComponent("web.yaml"), atomically: true, encoding: .utf8)
        var o = ConfigOverrides()
        o.healthzBindAddress = "127.0.0.1:\(try freePort())"
        o.metricsBindAddress = "127.0.0.1:\(try freePort())"
        let text = TextBackend()
        let sync = SyncPath(setup: try setup(o), families: [.ipv4], backend: text, features: KernelFeatures(),
                            node: NoNodePreparation(), logger: Logger(label: "test"), conntrackCleanup: false,
                            localAddresses: { [] })
        var lifecycle = NodeLifecycle(waitForNode: true, watchPodCIDRs: false)
        lifecycle.pollInterval = .milliseconds(20)
        lifecycle.timeout = .milliseconds(400)
        let daemon = ProxyDaemon(path: sync, source: ManifestFileSource(path: dir.path, recheck: .milliseconds(50),
                                                                        logger: Logger(label: "test")),
                                 logger: Logger(label: "test"), lifecycle: lifecycle, exit: { _ in })
        let ended = expectation(description: "run() gives up")
        let outcome = LockedText()
        let task = Task {
            do {
                try await daemon.run()
                outcome.value = "returned"
            } catch { outcome.value = "\(error)" }
            ended.fulfill()
        }
        await fulfillment(of: [ended], timeout: 10)
        task.cancel()
        XCTAssertTrue(outcome.value.contains("gave up waiting for the Node"), outcome.value)
        XCTAssertNil(text.tables[.ipv4]?[.nat]?.rules["KUBE-SERVICES"], "no sync before the Node (canaries only)")
    }

    func testRestartReasonsAsUpstreamNodeManager() {
        let watch = NodeLifecycle(waitForNode: true, watchPodCIDRs: true)
        let plain = NodeLifecycle(waitForNode: true, watchPodCIDRs: false)
        let start = node(podCIDRs: ["10.244.1.0/24"])
        XCTAssertNil(watch.restartReason(started: start, now: node(podCIDRs: ["10.244.1.0/24"], taints: ["x"])))
        XCTAssertNotNil(watch.restartReason(started: start, now: node(podCIDRs: ["10.244.2.0/24"])))
        XCTAssertNil(plain.restartReason(started: start, now: node(podCIDRs: ["10.244.2.0/24"])))
        XCTAssertNotNil(plain.restartReason(started: start, now: node([("InternalIP", "192.168.10.2")], podCIDRs: ["10.244.1.0/24"])))
        XCTAssertNil(plain.restartReason(started: start, now: node([("Hostname", "n")], podCIDRs: ["10.244.1.0/24"])),
                     "a Node without IPs is logged, not a restart (upstream returns on the error)")
        XCTAssertNotNil(plain.restartReason(started: start, now: nil), "deleted")
        XCTAssertNil(plain.notReady(start, name: "node-1"))
        XCTAssertNotNil(plain.notReady(nil, name: "node-1"))
        XCTAssertNotNil(plain.notReady(node([("Hostname", "n")]), name: "node-1"), "no node IP yet")
        XCTAssertNotNil(watch.notReady(node(), name: "node-1"), "NodeCIDR mode waits for podCIDRs")
    }

    func testTheWaitGivesUpAfterUpstreamsBoundOnTheInjectedClock() async throws {
        let lifecycle = NodeLifecycle(waitForNode: true, watchPodCIDRs: true)
        XCTAssertEqual(lifecycle.timeout, .seconds(300))
        let clock = ManualClock()
        let store = ClusterStore()
        let waiter = Task { try await lifecycle.wait(for: "node-1", in: store, clock: clock, logger: Logger(label: "test")) }
        var steps = 0
        while steps < 400 {
            // Let the waiter reach its sleep, then move time by one poll.
            var spins = 0
            while clock.sleeping == 0 && spins < 2000 { await Task.yield(); usleep(500); spins += 1 }
            if clock.sleeping == 0 { break }
            clock.advance(by: .seconds(1))
            steps += 1
        }
        do {
            _ = try await waiter.value
            XCTFail("the wait must give up without a Node")
        } catch {
            XCTAssertTrue("\(error)".contains("not found"), "\(error)")
        }
        XCTAssertEqual(steps, 300, "one look per second for five minutes")
    }
}

/// Text written by one task and read by the test.
final class LockedText: @unchecked Sendable {
    private let lock = NSLock()
    private var current = ""
    var value: String {
        get { self.lock.withLock { self.current } }
        set { self.lock.withLock { self.current = newValue } }
    }
}

/// A value the test changes while the code under test reads it.
final class LockedAddresses: @unchecked Sendable {
    private let lock = NSLock()
    private var current: [IPAddress]
    init(_ v: [IPAddress]) { self.current = v }
    var value: [IPAddress] {
        get { self.lock.withLock { self.current } }
        set { self.lock.withLock { self.current = newValue } }
    }
}
