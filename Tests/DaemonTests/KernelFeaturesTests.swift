import Netfilter
import ProxyConfig
import XCTest

@testable import Daemon

final class KernelFeaturesTests: XCTestCase {
    func testRandomFullyAutoFollowsTheIptablesVersionAsKubeProxyDoes() {
        func auto(_ text: String?) -> Bool {
            KernelFeatures.decide(randomFully: .auto, nfacctCounters: .auto,
                                  iptables: { text.flatMap(IptablesVersion.init(parsing:)) }).randomFully
        }
        XCTAssertTrue(auto("iptables v1.8.9 (nf_tables)"))
        XCTAssertTrue(auto("iptables v1.6.2"))
        XCTAssertFalse(auto("iptables v1.6.1"), "kube-proxy's iptablesRandomFullyVersion is 1.6.2")
        XCTAssertEqual(auto(nil), KernelFeatures.kernelHasRandomFully(), "no iptables binary: the kernel decides")
    }

    func testExplicitChoicesWin() {
        let old = { IptablesVersion(1, 4, 21) }
        XCTAssertTrue(KernelFeatures.decide(randomFully: .yes, nfacctCounters: .no, iptables: old).randomFully)
        XCTAssertFalse(KernelFeatures.decide(randomFully: .no, nfacctCounters: .no, iptables: { IptablesVersion(1, 8, 9) }).randomFully)
        XCTAssertTrue(KernelFeatures.decide(randomFully: .no, nfacctCounters: .yes, iptables: old).nfacctCounters)
        XCTAssertFalse(KernelFeatures.decide(randomFully: .no, nfacctCounters: .auto, iptables: old).nfacctCounters)
    }

    func testIptablesVersionParsing() {
        XCTAssertEqual(IptablesVersion(parsing: "iptables v1.8.10 (nf_tables)")?.mode, .nft)
        XCTAssertEqual(IptablesVersion(parsing: "iptables v1.8.7 (legacy)")?.mode, .legacy)
        XCTAssertTrue(IptablesVersion(1, 8, 10) > IptablesVersion(1, 8, 9))
        XCTAssertNil(IptablesVersion(parsing: "command not found"))
    }
}
