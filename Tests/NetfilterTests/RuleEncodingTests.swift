import KubeModel
import Ruleset
import XCTest

@testable import Netfilter

final class RuleEncodingTests: XCTestCase {
    func testProbabilityIsRoundedLikeLibxtStatistic() {
        // lround(2^31 * p); iptables-save prints 0.33333333349 for 715827883.
        XCTAssertEqual(RuleEncoding.probability("0.3333333333"), 715_827_883)
        XCTAssertEqual(RuleEncoding.probability("0.5000000000"), 1 << 30)
        XCTAssertEqual(RuleEncoding.probability("0.2500000000"), 1 << 29)
        XCTAssertEqual(RuleEncoding.probability("1.0000000000"), 1 << 31)
        XCTAssertEqual(RuleEncoding.probability("0.0000099999"), 21_475)
        XCTAssertNil(RuleEncoding.probability("<bad value>"))
        XCTAssertNil(RuleEncoding.probability("1.5"))
    }

    func testInterfaceMaskCoversNameAndNul() {
        let i = RuleEncoding.interface("eth0")!
        XCTAssertEqual(Array(i.name.prefix(5)), Array("eth0".utf8) + [0])
        XCTAssertEqual(i.mask, [UInt8](repeating: 0xFF, count: 5) + [UInt8](repeating: 0, count: 11))
    }

    func testInterfacePlusWildcardMasksOnlyThePrefix() {
        // xtables_parse_interface keeps the '+' in the name but masks only the bytes before it.
        let i = RuleEncoding.interface("veth+")!
        XCTAssertEqual(Array(i.name.prefix(6)), Array("veth+".utf8) + [0])
        XCTAssertEqual(i.mask, [UInt8](repeating: 0xFF, count: 4) + [UInt8](repeating: 0, count: 12))
    }

    func testInterfaceNameTooLongIsRejected() {
        XCTAssertNil(RuleEncoding.interface("abcdefghijklmnop"))
        XCTAssertNotNil(RuleEncoding.interface("abcdefghijklmno"))
    }

    func testPrefixMasks() {
        XCTAssertEqual(RuleEncoding.prefixMask(8, byteCount: 4), [255, 0, 0, 0])
        XCTAssertEqual(RuleEncoding.prefixMask(20, byteCount: 4), [255, 255, 240, 0])
        XCTAssertEqual(RuleEncoding.prefixMask(32, byteCount: 4), [255, 255, 255, 255])
        XCTAssertEqual(RuleEncoding.prefixMask(0, byteCount: 4), [0, 0, 0, 0])
        XCTAssertEqual(
            RuleEncoding.prefixMask(64, byteCount: 16),
            [UInt8](repeating: 255, count: 8) + [UInt8](repeating: 0, count: 8))
    }

    func testConntrackStateBitsMatchTheKernel() {
        XCTAssertEqual(RuleEncoding.conntrackMask([.new, .dnat]), 0x0088)
        XCTAssertEqual(RuleEncoding.conntrackMask([.invalid, .established, .related]), 0x0007)
    }

    func testProgramRecordsCarryKindAndLength() throws {
        var p = TableProgram(family: .ipv4)
        p.chain("KUBE-X")
        try p.rule(Rule([.proto(.tcp), .destinationPort(80)], .accept), table: .filter, chain: "KUBE-X", index: 1)
        // chain record: kind 2, length 6, "KUBE-X"
        XCTAssertEqual(Array(p.bytes.prefix(4)), [2, 0, 6, 0])
        XCTAssertEqual(Array(p.bytes[4..<10]), Array("KUBE-X".utf8))
        // proto 17 (tcp=6), dport 21 (80), standard target 64 "ACCEPT"
        XCTAssertEqual(Array(p.bytes[10..<15]), [17, 0, 1, 0, 6])
        XCTAssertEqual(Array(p.bytes[15..<21]), [21, 0, 2, 0, 80, 0])
        XCTAssertEqual(Array(p.bytes[21..<25]), [64, 0, 6, 0])
    }

    func testWrongFamilyAddressIsAnEncodingErrorWithItsPlace() {
        var p = TableProgram(family: .ipv4)
        XCTAssertThrowsError(
            try p.rule(Rule([], .dnat(IPAddressForTests.v6, port: 80)), table: .nat, chain: "KUBE-SEP-X", index: 3)
        ) { error in
            XCTAssertEqual("\(error)", "nat: chain KUBE-SEP-X rule 3: DNAT address fd00::1 is not IPv4")
        }
    }

    func testRestoreArgumentsSplitQuotedComments() {
        let rule = Rule(
            [.conntrackState([.new], negated: false), .comment("kubernetes service portals")],
            .jump("KUBE-SERVICES"))
        XCTAssertEqual(
            RestoreBackend.arguments(rule),
            [
                "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "kubernetes service portals",
                "-j", "KUBE-SERVICES",
            ])
    }
}

enum IPAddressForTests {
    static let v6 = IPAddress("fd00::1")!
}

final class ExpectedChainsTests: XCTestCase {
    func table(_ rules: [Rule]) -> TableRuleset { TableRuleset(table: .nat, chains: [Chain("KUBE-MARK-MASQ", rules)]) }

    func testExpectedDigestIsStableAndSeesEveryChange() throws {
        let a = try TableReader.expectedChains(family: .ipv4, table: self.table([Rule([], .markOr(0x4000))]))
        let b = try TableReader.expectedChains(family: .ipv4, table: self.table([Rule([], .markOr(0x4000))]))
        let c = try TableReader.expectedChains(family: .ipv4, table: self.table([Rule([], .markOr(0x8000))]))
        XCTAssertEqual(a.map(\.name), ["KUBE-MARK-MASQ"])
        XCTAssertEqual(a.first?.ruleCount, 1)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a.first?.digest, c.first?.digest)
    }

    func testInPlaceAddressAndMaskBytesEqualTheArrayForms() {
        for text in ["10.96.0.1", "0.0.0.0", "255.255.255.255", "fd00::1", "2001:db8::ffff:1", "::"] {
            let ip = IPAddress(text)!
            var b: [UInt8] = []
            TableProgram.appendAddress(&b, ip)
            XCTAssertEqual(b, ip.bytes, text)
        }
        for (prefix, width) in [(0, 4), (8, 4), (20, 4), (32, 4), (0, 16), (64, 16), (100, 16), (128, 16)] {
            var b: [UInt8] = []
            TableProgram.appendMask(&b, prefix, width: width)
            XCTAssertEqual(b, RuleEncoding.prefixMask(prefix, byteCount: width), "/\(prefix)")
        }
    }
}
