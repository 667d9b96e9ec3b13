import Netfilter
import ProxyConfig
import XCTest

@testable import Daemon

final class KernelFeaturesTests: XCTestCase {
    func testRandomFullyAutoFollowsTheIptablesVersionAsKubeProxyDoes() {
        func auto(_ text: String?, kernel: String? = "6.1.0-18-amd64") -> Bool {
            KernelFeatures.decide(randomFully: .auto, nfacctCounters: .auto,
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
        XCTAssertFalse(KernelFeatures.decide(randomFully: .no, nfacctCounters: .auto, iptables: old).nfacctCounters)
    }

    func testIptablesVersionParsing() {
        XCTAssertEqual(IptablesVersion(parsing: "iptables v1.8.10 (nf_tables)")?.mode, .nft)
        XCTAssertEqual(IptablesVersion(parsing: "iptables v1.8.7 (legacy)")?.mode, .legacy)
        XCTAssertTrue(IptablesVersion(1, 8, 10) > IptablesVersion(1, 8, 9))
        XCTAssertNil(IptablesVersion(parsing: "command not found"))
    }
}
