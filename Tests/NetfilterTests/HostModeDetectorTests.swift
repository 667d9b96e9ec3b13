import XCTest

@testable import Netfilter

final class HostModeDetectorTests: XCTestCase {
    let legacyRules = """
        *filter
        :INPUT ACCEPT [0:0]
        -A INPUT -j KUBE-FIREWALL
        -A OUTPUT -j KUBE-FIREWALL
        COMMIT
        """
    let nftRules = """
        *nat
        -A POSTROUTING -j MASQUERADE
        COMMIT
        """

    func testKubeletHintInNftMangleWins() {
        let d = HostModeDetector.decide(
            .init(
                legacyMangle: ":KUBE-KUBELET-CANARY - [0:0]", nftMangle: ":KUBE-IPTABLES-HINT - [0:0]",
                legacySave: legacyRules))
        XCTAssertEqual(d.mode, .nft)
    }

    func testKubeletCanaryInLegacyMangleMeansLegacy() {
        let d = HostModeDetector.decide(
            .init(legacyMangle: "*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT", nftSave: nftRules))
        XCTAssertEqual(d.mode, .legacy)
        XCTAssertTrue(d.reason.contains("legacy mangle"))
    }

    func testMoreLegacyRulesMeansLegacy() {
        let d = HostModeDetector.decide(.init(legacySave: legacyRules, nftSave: nftRules))
        XCTAssertEqual(d.mode, .legacy)
        XCTAssertEqual(d.reason, "2 legacy rules vs 1 nft rules")
    }

    func testEqualRuleCountsGoToNftAsTheWrapperDoes() {
        let d = HostModeDetector.decide(.init(legacySave: nftRules, nftSave: nftRules))
        XCTAssertEqual(d.mode, .nft)
    }

    func testNoRulesFallsBackToVersionSuffix() {
        XCTAssertEqual(HostModeDetector.decide(.init(version: "iptables v1.8.9 (nf_tables)")).mode, .nft)
        XCTAssertEqual(HostModeDetector.decide(.init(version: "iptables v1.8.9 (legacy)")).mode, .legacy)
        XCTAssertEqual(HostModeDetector.decide(.init()).mode, .legacy)
    }

    func testLegacyEntriesDecideWhenNftIsEmpty() {
        let d = HostModeDetector.decide(.init(version: "iptables v1.8.9 (nf_tables)", legacyEntries: 7))
        XCTAssertEqual(d.mode, .legacy)
        XCTAssertTrue(d.fromExistingRules)
        XCTAssertEqual(d.reason, "legacy tables hold 7 entries (rules or chains), nft holds no rules")
    }

    func testEmptyLegacyTablesFallBackToTheVersionSuffix() {
        let d = HostModeDetector.decide(.init(version: "iptables v1.8.9 (nf_tables)", legacyEntries: 0))
        XCTAssertEqual(d.mode, .nft)
        XCTAssertFalse(d.fromExistingRules)
    }

    func testWithNftRulesTheLegacySaveIsCountedNotTheEntries() {
        // detect() saves the legacy tables in full when nft holds rules; the entry estimate must not be used then.
        let d = HostModeDetector.decide(.init(legacySave: nftRules, nftSave: nftRules, legacyEntries: 100))
        XCTAssertEqual(d.mode, .nft)
    }

    func testMangleSectionOfAFullSave() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n*nat\n:X - [0:0]\nCOMMIT\n"
        XCTAssertEqual(HostModeDetector.mangleSection(save), "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT")
        XCTAssertEqual(HostModeDetector.kubeletChains(HostModeDetector.mangleSection(save)), 1)
    }

    func testCountedNftRulesWithEmptyLegacyTablesMeanNft() {
        let d = HostModeDetector.decide(.init(version: "iptables v1.8.9 (legacy)", legacyEntries: 0, nftRules: 1))
        XCTAssertEqual(d.mode, .nft)
        XCTAssertTrue(d.fromExistingRules)
        XCTAssertEqual(d.reason, "nf_tables holds rules, the legacy tables hold none")
    }

    func testCountedNftRulesAgainstALegacySave() {
        let legacy = "*nat\n-A PREROUTING -j A\n-A PREROUTING -j B\nCOMMIT\n"
        XCTAssertEqual(HostModeDetector.decide(.init(legacySave: legacy, nftRules: 1)).mode, .legacy, "2 > 1")
        XCTAssertEqual(HostModeDetector.decide(.init(legacySave: legacy, nftRules: 3)).mode, .nft, "2 < 3")
    }
}
