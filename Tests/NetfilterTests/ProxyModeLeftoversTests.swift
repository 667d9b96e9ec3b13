import KubeModel
import Ruleset
import XCTest

@testable import Netfilter

/// A host with what a test puts in it: nf_tables tables, an IPVS table, links, ipsets, and tools that answer as
/// scripted. Every call is recorded, in order.
final class FakeLeftoverHost: LeftoverHost {
    var nftTables: Set<String> = []  // "ip kube-proxy", "ip6 kube-proxy", "inet filter", ...
    var nftables: NftablesTableRemoval? = nil  // .unsupported(...) for a kernel without nf_tables
    var nftError: Error?
    var ipvs: String?
    var links: [String: String?] = [:]  // name -> kind (nil: a link without one)
    var sets: [String] = []
    var setsInUse: Set<String> = []
    var missingTools: Set<String> = []
    var ipsetListStatus: Int32 = 0
    var chains: [String: [String]] = [:]  // "legacy 4 nat" -> user chains
    var calls: [String] = []

    func userChains(_ world: HostMode, family: IPFamily, table: Table) -> [String] {
        self.chains["\(world.rawValue) \(family == .ipv4 ? 4 : 6) \(table.rawValue)"] ?? []
    }

    func deleteNftablesTable(family: IPFamily, name: String) throws -> NftablesTableRemoval {
        let key = "\(family == .ipv4 ? "ip" : "ip6") \(name)"
        self.calls.append("nft delete table \(key)")
        if let e = self.nftError { throw e }
        if let fixed = self.nftables { return fixed }
        return self.nftTables.remove(key) != nil ? .removed : .absent
    }

    func ipvsTable() -> String? { self.ipvs }

    func linkExists(_ name: String) -> Bool { self.links[name] != nil }

    func run(_ argv: [String]) throws -> ToolOutput {
        self.calls.append(argv.joined(separator: " "))
        if self.missingTools.contains(argv[0]) { return ToolOutput(status: 127, stderr: "env: '\(argv[0])': No such file or directory") }
        switch argv {
        case ["ipvsadm", "--clear"]:
            self.ipvs = "IP Virtual Server version 1.2.1 (size=4096)\n"
            return ToolOutput(status: 0)
        case ["ipset", "list", "-n"]:
            if self.ipsetListStatus != 0 {
                return ToolOutput(status: self.ipsetListStatus, stderr: "ipset v7.17: Kernel error received: Protocol not supported\n")
            }
            return ToolOutput(status: 0, stdout: self.sets.map { $0 + "\n" }.joined())
        case _ where argv.starts(with: ["ipset", "destroy"]):
            if self.setsInUse.contains(argv[2]) {
                return ToolOutput(status: 1, stderr: "ipset v7.17: Set cannot be destroyed: it is in use by a kernel component\n")
            }
            self.sets.removeAll { $0 == argv[2] }
            return ToolOutput(status: 0)
        case _ where argv.starts(with: ["ip", "-j", "-details", "link", "show", "dev"]):
            guard let kind = self.links[argv[6]] else { return ToolOutput(status: 1, stderr: "Device does not exist.\n") }
            let info = kind.map { #","linkinfo":{"info_kind":"\#($0)"}"# } ?? ""
            return ToolOutput(status: 0, stdout: #"[{"ifindex":7,"ifname":"\#(argv[6])","flags":["BROADCAST","NOARP"]\#(info)}]"#)
        case _ where argv.starts(with: ["ip", "link", "delete", "dev"]):
            self.links[argv[4]] = nil
            return ToolOutput(status: 0)
        default:
            return ToolOutput(status: 2, stderr: "unexpected command")
        }
    }
}

/// A backend whose cleanup only records that it ran (into the host's call log, to check the order).
final class RecordingBackend: KernelBackend {
    let host: FakeLeftoverHost
    var fails = false
    init(_ host: FakeLeftoverHost) { self.host = host }
    var name: String { "recording" }
    func apply(_ rulesets: [Ruleset]) throws -> ApplyReport { ApplyReport() }
    func readOwned(family: IPFamily) throws -> OwnedState { OwnedState(family: family) }
    func expectedOwned(_ ruleset: Ruleset) throws -> OwnedState { OwnedState(family: ruleset.family) }
    func ensureCanaries(family: IPFamily) throws {}
    func cleanup(families: [IPFamily]) throws -> ApplyReport {
        self.host.calls.append("backend cleanup")
        struct Refused: Error {}
        if self.fails { throw Refused() }
        for key in self.host.chains.keys { self.host.chains[key]?.removeAll { $0.hasPrefix("KUBE-") && $0 != "KUBE-FIREWALL" } }
        var report = ApplyReport()
        var t = ApplyReport.TableReport(family: .ipv4, table: .nat)
        t.chainsDeleted = 5
        t.rulesDeleted = 3
        report.tables.append(t)
        return report
    }
}

final class ProxyModeLeftoversTests: XCTestCase {
    static let procIPVS = """
        IP Virtual Server version 1.2.1 (size=4096)
        Prot LocalAddress:Port Scheduler Flags
          -> RemoteAddress:Port Forward Weight ActiveConn InActConn
        TCP  0A600001:01BB rr
          -> C0A80A01:192B      Masq    1      0          0
        UDP  0A60000A:0035 rr
          -> 0AF4010C:14E9      Masq    1      0          0
        TCP  [fd00:0000:0000:0000:0000:0000:0000:0001]:01BB rr
        FWM  00000007 rr

        """

    // MARK: - nftables mode (every start)

    func testStartRemovesExactlyBothKubeProxyTablesAndNamesEach() {
        let host = FakeLeftoverHost()
        host.nftTables = ["ip kube-proxy", "ip6 kube-proxy", "inet filter", "ip kube-proxy-other", "inet kube-proxy"]
        let events = LeftoverCleaner(host: host).removeNftablesMode()
        XCTAssertEqual(events.map(\.description), ["removed nftables table ip kube-proxy", "removed nftables table ip6 kube-proxy"])
        XCTAssertEqual(host.nftTables, ["inet filter", "ip kube-proxy-other", "inet kube-proxy"])
        XCTAssertEqual(host.calls, ["nft delete table ip kube-proxy", "nft delete table ip6 kube-proxy"])
    }

    func testStartWithoutKubeProxyTablesReportsNothing() {
        let host = FakeLeftoverHost()
        host.nftTables = ["inet filter"]
        XCTAssertEqual(LeftoverCleaner(host: host).removeNftablesMode(), [])
    }

    func testKernelWithoutNftablesIsOneSkipNotAFailure() {
        let host = FakeLeftoverHost()
        host.nftables = .unsupported("netlink socket: Protocol not supported")
        let events = LeftoverCleaner(host: host).removeNftablesMode()
        XCTAssertEqual(events.count, 1)
        XCTAssertEqual(events.first?.outcome, .skipped("the kernel has no nf_tables (netlink socket: Protocol not supported)"))
        XCTAssertEqual(host.calls, ["nft delete table ip kube-proxy"], "no second try once the kernel said it has none")
    }

    func testAnNftablesErrorIsAFailureNamingTheTable() {
        struct Denied: Error, CustomStringConvertible { var description: String { "Operation not permitted" } }
        let host = FakeLeftoverHost()
        host.nftError = Denied()
        let events = LeftoverCleaner(host: host).removeNftablesMode()
        XCTAssertEqual(events.map(\.description), [
            "could not remove nftables table ip kube-proxy: Operation not permitted",
            "could not remove nftables table ip6 kube-proxy: Operation not permitted",
        ])
    }

    // MARK: - IPVS mode

    func testWithoutIPVSInTheKernelTheVirtualServersAreSkippedWithTheReason() {
        let host = FakeLeftoverHost()
        let events = LeftoverCleaner(host: host).removeVirtualServers()
        XCTAssertEqual(events.map(\.description), ["skipped IPVS virtual servers: the kernel has no IPVS (/proc/net/ip_vs absent)"])
        XCTAssertEqual(host.calls, [], "ipvsadm is not run")
    }

    func testVirtualServersAreFlushedAndEachIsNamed() {
        let host = FakeLeftoverHost()
        host.ipvs = Self.procIPVS
        let events = LeftoverCleaner(host: host).removeVirtualServers()
        XCTAssertEqual(host.calls, ["ipvsadm --clear"])
        XCTAssertEqual(events.map(\.description), [
            "removed IPVS virtual server TCP 10.96.0.1:443",
            "removed IPVS virtual server UDP 10.96.0.10:53",
            "removed IPVS virtual server TCP [fd00:0000:0000:0000:0000:0000:0000:0001]:443",
            "removed IPVS virtual server FWM 7",
        ])
    }

    func testAnEmptyIPVSTableRunsNothing() {
        let host = FakeLeftoverHost()
        host.ipvs = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n"
        XCTAssertEqual(LeftoverCleaner(host: host).removeVirtualServers(), [])
        XCTAssertEqual(host.calls, [])
    }

    func testWithoutIpvsadmEveryVirtualServerIsReportedAsLeft() {
        let host = FakeLeftoverHost()
        host.ipvs = Self.procIPVS
        host.missingTools = ["ipvsadm"]
        let events = LeftoverCleaner(host: host).removeVirtualServers()
        XCTAssertEqual(events.count, 4)
        XCTAssertTrue(events.allSatisfy { $0.outcome == .failed("ipvsadm is not installed") })
    }

    func testTheDummyKubeIpvs0IsDeleted() {
        let host = FakeLeftoverHost()
        host.links = ["kube-ipvs0": "dummy", "eth0": "veth"]
        let events = LeftoverCleaner(host: host).removeDevice()
        XCTAssertEqual(events.map(\.description), ["removed device kube-ipvs0"])
        XCTAssertEqual(host.calls.last, "ip link delete dev kube-ipvs0")
        XCTAssertNotNil(host.links["eth0"] as String??)
        XCTAssertNil(host.links["kube-ipvs0"] as String??)
    }

    func testAKubeIpvs0ThatIsNotADummyStaysAndIsReported() {
        let host = FakeLeftoverHost()
        host.links = ["kube-ipvs0": "veth"]
        let events = LeftoverCleaner(host: host).removeDevice()
        XCTAssertEqual(events.map(\.description), [
            "could not remove device kube-ipvs0: a veth link, not the dummy device kube-proxy's IPVS mode creates: left as it is"
        ])
        XCTAssertFalse(host.calls.contains { $0.hasPrefix("ip link delete") })
    }

    func testNoKubeIpvs0MeansNoCommand() {
        let host = FakeLeftoverHost()
        XCTAssertEqual(LeftoverCleaner(host: host).removeDevice(), [])
        XCTAssertEqual(host.calls, [])
    }

    func testOnlyTheIPVSModesSetsAreDestroyedInBothFamilies() {
        let host = FakeLeftoverHost()
        host.sets = [
            "KUBE-CLUSTER-IP", "KUBE-6-CLUSTER-IP", "KUBE-6-NODE-PORT-LOCAL-SCTP-HAS", "KUBE-IPVS-IPS", "FOREIGN",
            "KUBE-CLUSTER-IPS", "KUBE-6-OTHER",
        ]
        let events = LeftoverCleaner(host: host).removeIPVSSets()
        XCTAssertEqual(Set(events.map(\.description)), [
            "removed ipset KUBE-CLUSTER-IP", "removed ipset KUBE-6-CLUSTER-IP",
            "removed ipset KUBE-6-NODE-PORT-LOCAL-SCTP-HAS", "removed ipset KUBE-IPVS-IPS",
        ])
        XCTAssertEqual(host.sets, ["FOREIGN", "KUBE-CLUSTER-IPS", "KUBE-6-OTHER"])
    }

    func testASetStillInUseIsReportedWithTheToolsReason() {
        let host = FakeLeftoverHost()
        host.sets = ["KUBE-LOOP-BACK"]
        host.setsInUse = ["KUBE-LOOP-BACK"]
        XCTAssertEqual(LeftoverCleaner(host: host).removeIPVSSets().map(\.description), [
            "could not remove ipset KUBE-LOOP-BACK: ipset destroy: ipset v7.17: Set cannot be destroyed: it is in use by a kernel component"
        ])
    }

    func testIpsetsAreSkippedWithoutTheToolOrTheKernelModule() {
        let host = FakeLeftoverHost()
        host.missingTools = ["ipset"]
        XCTAssertEqual(LeftoverCleaner(host: host).removeIPVSSets().map(\.description), ["skipped ipsets: the ipset tool is not installed"])
        host.missingTools = []
        host.ipsetListStatus = 1
        XCTAssertEqual(LeftoverCleaner(host: host).removeIPVSSets().map(\.description), [
            "skipped ipsets: ipset list: ipset v7.17: Kernel error received: Protocol not supported (no ip_set in the kernel?)"
        ])
    }

    func testIPv6SetNamesAreKubeProxysTruncatedToIpsetsLimit() {
        let names = ProxyModeLeftovers.ipvsSets
        XCTAssertEqual(names.count, 2 * ProxyModeLeftovers.ipvsSetsIPv4.count)
        XCTAssertTrue(names.contains("KUBE-6-LOOP-BACK"))
        XCTAssertTrue(names.contains("KUBE-6-LOAD-BALANCER-SOURCE-CID"))  // 31 characters, as kube-proxy cuts it
        XCTAssertTrue(names.allSatisfy { $0.count <= 31 })
    }

    // MARK: - the lists every backend's cleanup reads

    func testCleanupChainsAddTheIPVSModesAndKeepKubeletsChains() {
        let filter = ProxyModeLeftovers.cleanupChains(.filter)
        for chain in ["KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER", "KUBE-SOURCE-RANGES-FIREWALL", "KUBE-NODE-PORT", "KUBE-EXTERNAL-SERVICES"] {
            XCTAssertTrue(filter.contains(chain), chain)
        }
        let nat = ProxyModeLeftovers.cleanupChains(.nat)
        for chain in ["KUBE-LOAD-BALANCER", "KUBE-NODE-PORT", "KUBE-NODEPORTS", "KUBE-MARK-MASQ"] { XCTAssertTrue(nat.contains(chain), chain) }
        for table in [Table.nat, .filter, .mangle] {
            let chains = ProxyModeLeftovers.cleanupChains(table)
            XCTAssertEqual(chains.count, Set(chains).count, "each chain once")
            XCTAssertFalse(chains.contains(Ownership.kubeletFirewall) || chains.contains(Ownership.kubeletMarkDrop))
            let jumps = ProxyModeLeftovers.cleanupJumps(table)
            XCTAssertEqual(jumps.count, Set(jumps).count, "each jump once")
        }
        XCTAssertTrue(ProxyModeLeftovers.cleanupJumps(.filter).contains(
            BaseChainJump(baseChain: "OUTPUT", rule: Rule([.comment("kubernetes ipvs access filter")], .jump("KUBE-IPVS-OUT-FILTER")))))
    }

    // MARK: - --cleanup as a whole

    func testEveryModeCleanupRunsInUpstreamsOrderAndSummarizes() {
        let host = FakeLeftoverHost()
        host.ipvs = Self.procIPVS
        host.links = ["kube-ipvs0": "dummy"]
        host.sets = ["KUBE-CLUSTER-IP", "FOREIGN"]
        host.nftTables = ["ip kube-proxy", "inet filter"]
        host.chains = [
            "legacy 4 nat": ["KUBE-SERVICES", "KUBE-NODE-PORT", "FOREIGN"], "nft 6 filter": ["KUBE-IPVS-FILTER", "KUBE-FIREWALL"],
        ]
        let outcome = EveryModeCleanup.run(
            backends: [RecordingBackend(host)], families: [.ipv4, .ipv6], cleaner: LeftoverCleaner(host: host))
        XCTAssertEqual(host.calls, [
            "ipvsadm --clear", "ip -j -details link show dev kube-ipvs0", "ip link delete dev kube-ipvs0",
            "backend cleanup", "ipset list -n", "ipset destroy KUBE-CLUSTER-IP",
            "nft delete table ip kube-proxy", "nft delete table ip6 kube-proxy",
        ])
        XCTAssertFalse(outcome.failed)
        XCTAssertTrue(outcome.lines.contains("cleanup through recording: 5 chains and 3 jumps removed"))
        // each chain that went, by name, as the kernel showed it before and after; KUBE-FIREWALL and FOREIGN stayed
        XCTAssertEqual(outcome.lines.filter { $0.hasPrefix("removed chain") }, [
            "removed chain nat KUBE-NODE-PORT (IPv4, legacy x_tables)", "removed chain nat KUBE-SERVICES (IPv4, legacy x_tables)",
            "removed chain filter KUBE-IPVS-FILTER (IPv6, nf_tables)",
        ])
        XCTAssertEqual(outcome.lines.last, "cleanup done (IPv4 and IPv6): 5 iptables chains, 3 jumps, 1 nftables tables, 4 IPVS virtual servers, 1 ipsets, 1 devices removed; 0 parts skipped, 0 not removed")
        XCTAssertEqual(outcome.lines.count, 4 + 1 + 1 + 3 + 1 + 1 + 1)
    }

    func testEveryModeCleanupFailsWhenABackendOrAnItemFails() {
        let host = FakeLeftoverHost()
        let backend = RecordingBackend(host)
        backend.fails = true
        var outcome = EveryModeCleanup.run(backends: [backend], families: [.ipv4], cleaner: LeftoverCleaner(host: host))
        XCTAssertTrue(outcome.failed)
        XCTAssertTrue(outcome.lines.last?.hasPrefix("cleanup incomplete") ?? false)
        XCTAssertTrue(outcome.lines.contains { $0.hasPrefix("skipped IPVS virtual servers: the kernel has no IPVS") })

        backend.fails = false
        host.links = ["kube-ipvs0": "bridge"]
        outcome = EveryModeCleanup.run(backends: [backend], families: [.ipv4], cleaner: LeftoverCleaner(host: host))
        XCTAssertTrue(outcome.failed)
        XCTAssertTrue(outcome.lines.last?.hasSuffix("1 not removed") ?? false)
    }
}
