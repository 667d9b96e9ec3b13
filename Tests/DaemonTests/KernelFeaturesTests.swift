import Foundation
import Netfilter
import ProxyConfig
import XCTest

@testable import Daemon

final class KernelFeaturesTests: XCTestCase {
    func testRandomFullyAutoFollowsTheIptablesVersionAsKubeProxyDoes() {
        func auto(_ text: String?, kernel: String? = "6.1.0-18-amd64") -> Bool {
            KernelFeatures.decide(randomFully: .auto, nfacctCounters: .no,
                                  iptables: { text.flatMap(IptablesVersion.init(parsing:)) }, kernelRelease: { kernel }).randomFully
        }
        XCTAssertTrue(auto("iptables v1.8.9 (nf_tables)"))
        XCTAssertTrue(auto("iptables v1.6.2"))
        XCTAssertFalse(auto("iptables v1.6.1"), "kube-proxy's iptablesRandomFullyVersion is 1.6.2")
        XCTAssertFalse(auto("iptables v1.6.1", kernel: "6.1.0"), "the iptables version decides, not the kernel")
        // No iptables binary: the kernel release decides (NF_NAT_RANGE_PROTO_RANDOM_FULLY since 3.13).
        XCTAssertTrue(auto(nil, kernel: "6.1.0-18-amd64"))
        XCTAssertTrue(auto(nil, kernel: "3.13.0"))
        XCTAssertFalse(auto(nil, kernel: "3.12.74-60.64.40-default"))
        XCTAssertFalse(auto(nil, kernel: "2.6.32-754.el6.x86_64"))
        XCTAssertFalse(auto(nil, kernel: "not-a-release"), "an unreadable release: no --random-fully")
        XCTAssertFalse(auto(nil, kernel: nil), "uname failed: no --random-fully")
    }

    func testTheKernelReleaseIsRead() {
        let release = KernelFeatures.kernelRelease()
        XCTAssertNotNil(release)
        XCTAssertEqual(release?.first?.isNumber, true, "\(release ?? "nil")")
    }

    func testExplicitChoicesWin() {
        let old = { IptablesVersion(1, 4, 21) }
        XCTAssertTrue(KernelFeatures.decide(randomFully: .yes, nfacctCounters: .no, iptables: old).randomFully)
        XCTAssertFalse(KernelFeatures.decide(randomFully: .no, nfacctCounters: .no, iptables: { IptablesVersion(1, 8, 9) }).randomFully)
        XCTAssertTrue(KernelFeatures.decide(randomFully: .no, nfacctCounters: .yes, iptables: old).nfacctCounters)
        XCTAssertFalse(KernelFeatures.decide(randomFully: .no, nfacctCounters: .no, iptables: old).nfacctCounters)
    }

    func testIptablesVersionParsing() {
        XCTAssertEqual(IptablesVersion(parsing: "iptables v1.8.10 (nf_tables)")?.mode, .nft)
        XCTAssertEqual(IptablesVersion(parsing: "iptables v1.8.7 (legacy)")?.mode, .legacy)
        XCTAssertTrue(IptablesVersion(1, 8, 10) > IptablesVersion(1, 8, 9))
        XCTAssertNil(IptablesVersion(parsing: "command not found"))
    }
}

/// nfacct objects in memory: what was created, and which names the "kernel" refuses.
final class FakeNFAcct: NFAcctObjects, @unchecked Sendable {
    private let lock = NSLock()
    private(set) var created: [String] = []
    var refused: Set<String> = []
    var kernelHasNFAcct = true
    var counts: [String: UInt64] = [:]

    func ensure(_ name: String) throws {
        try self.lock.withLock {
            if self.refused.contains(name) || !self.kernelHasNFAcct { throw NFAcctError(errno: 22, description: "refused \(name)") }
            if !self.created.contains(name) { self.created.append(name) }
        }
    }
    func available(_ name: String) -> Bool { self.kernelHasNFAcct && !self.refused.contains(name) }
    func packets(_ name: String) throws -> UInt64 { self.lock.withLock { self.counts[name] ?? 0 } }
}

final class NFAcctDecisionTests: XCTestCase {
    let old = { IptablesVersion(1, 8, 9) }

    func testAutoCreatesTheObjectsAsKubeProxyDoesAndWritesTheMatchesOfThoseThatExist() {
        let fake = FakeNFAcct()
        let f = KernelFeatures.decide(randomFully: .no, nfacctCounters: .auto, create: true, objects: fake, iptables: old)
        XCTAssertEqual(f.nfacct, [.ctStateInvalidDropped, .localhostNodePortsAccepted])
        XCTAssertEqual(Set(fake.created), ["ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"])

        let partial = FakeNFAcct()
        partial.refused = ["localhost_nps_accepted_pkts"]
        XCTAssertEqual(KernelFeatures.decide(randomFully: .no, nfacctCounters: .auto, create: true, objects: partial,
                                             iptables: old).nfacct, [.ctStateInvalidDropped], "only what could be created")
        let none = FakeNFAcct()
        none.kernelHasNFAcct = false
        XCTAssertEqual(KernelFeatures.decide(randomFully: .no, nfacctCounters: .auto, create: true, objects: none,
                                             iptables: old).nfacct, [], "no nfacct in the kernel: no matches")
    }

    func testTheDryRunDecidesAsOnceWouldButCreatesNothing() {
        let fake = FakeNFAcct()
        XCTAssertTrue(KernelFeatures.decide(randomFully: .no, nfacctCounters: .auto, create: false, objects: fake,
                                            iptables: old).nfacctCounters)
        XCTAssertEqual(fake.created, [])
        fake.kernelHasNFAcct = false
        XCTAssertEqual(KernelFeatures.decide(randomFully: .no, nfacctCounters: .auto, create: false, objects: fake,
                                             iptables: old).nfacct, [])
    }

    func testNoWritesNoMatchAndCreatesNothing() {
        let fake = FakeNFAcct()
        XCTAssertEqual(KernelFeatures.decide(randomFully: .no, nfacctCounters: .no, create: true, objects: fake,
                                             iptables: old).nfacct, [])
        XCTAssertEqual(fake.created, [])
    }

    func testTheCountsAreExportedUnderUpstreamsNames() {
        let fake = FakeNFAcct()
        fake.counts = ["ct_state_invalid_dropped_pkts": 7]
        let metrics = ProxyMetrics(families: [.ipv4])
        XCTAssertFalse(metrics.exposition().contains("kubeproxy_iptables_ct_state_invalid_dropped_packets_total"),
                       "not exported before the objects exist")
        metrics.exportNFAcct([.ctStateInvalidDropped]) { try? fake.packets($0.rawValue) }
        var text = metrics.exposition()
        XCTAssertTrue(text.contains("\nkubeproxy_iptables_ct_state_invalid_dropped_packets_total 7\n"), text)
        XCTAssertFalse(text.contains("kubeproxy_iptables_localhost_nodeports_accepted_packets_total"), "not created: not exported")
        fake.counts["ct_state_invalid_dropped_pkts"] = 12
        text = metrics.exposition()
        XCTAssertTrue(text.contains("\nkubeproxy_iptables_ct_state_invalid_dropped_packets_total 12\n"), text)
        XCTAssertTrue(text.contains("# TYPE kubeproxy_iptables_ct_state_invalid_dropped_packets_total counter"))
    }
}
