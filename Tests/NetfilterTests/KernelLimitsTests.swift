import CRuleProgram
import KubeModel
import Ruleset
import XCTest

@testable import Netfilter

/// The limits `KernelLimits` checks are the kernel's: each equals the CRuleProgram constant that a
/// `_Static_assert` ties to the uapi header (`xtinfo.c`), and each is the first length the encoder refuses or
/// the shim's blob cannot hold.
final class KernelLimitsTests: XCTestCase {
    func testEachLimitIsTheKernelHeadersOne() {
        XCTAssertEqual(KernelLimits.chainName, Int(KNAT_CHAIN_NAME_MAX), "XT_EXTENSION_MAXNAMELEN - 1")
        XCTAssertEqual(KernelLimits.comment, Int(KNAT_COMMENT_MAX), "XT_MAX_COMMENT_LEN - 1")
        XCTAssertEqual(KernelLimits.recentName, Int(KNAT_RECENT_NAME_MAX), "XT_RECENT_NAME_LEN - 1")
        XCTAssertEqual(KernelLimits.nfacctName, Int(KNAT_NFACCT_NAME_MAX), "NFACCT_NAME_MAX - 1")
        XCTAssertEqual(KernelLimits.interfaceName, Int(KNAT_IFNAMSIZ) - 1, "IFNAMSIZ - 1")
    }

    func rule(_ matches: [Match], _ target: Target = .accept) -> Rule { Rule(matches, target) }

    func fields(_ rule: Rule) -> [KernelLimits.Field] {
        KernelLimits.violations(of: rule, table: .nat, chain: "KUBE-SERVICES", index: 1).map(\.field)
    }

    func testEachFieldIsRefusedOneByteOverItsLimitAndTakenAtIt() {
        let cases: [(KernelLimits.Field, Int, (String) -> Rule)] = [
            (.comment, 255, { self.rule([.comment($0)]) }),
            (.interfaceName, 15, { self.rule([.inInterface($0, negated: true)]) }),
            (.recentName, 199, { self.rule([.recentCheck(name: $0, seconds: 10800)]) }),
            (.recentName, 199, { self.rule([.recentSet(name: $0)]) }),
            (.nfacctName, 31, { self.rule([.nfacct(name: $0)]) }),
            (.jumpTarget, 28, { self.rule([], .jump($0)) }),
        ]
        for (field, limit, make) in cases {
            XCTAssertEqual(self.fields(make(String(repeating: "x", count: limit))), [], "\(field) at \(limit)")
            XCTAssertEqual(self.fields(make(String(repeating: "x", count: limit + 1))), [field], "\(field) at \(limit + 1)")
        }
        // bytes, not characters: 128 two-byte characters are 256 bytes
        XCTAssertEqual(self.fields(self.rule([.comment(String(repeating: "é", count: 128))])), [.comment])
    }

    func testAChainNameOverTheLimitIsNamedWhereverItIsDeclared() {
        let long = "KUBE-SVC-" + String(repeating: "A", count: 20)  // 29 bytes
        let table = TableRuleset(
            table: .nat, chains: [Chain(long, [rule([.comment("ok")], .jump(long))])], deletedChains: [long],
            ensured: [EnsuredRule(chain: long, rule: rule([.comment("ok")]))])
        let found = KernelLimits.violations(in: table)
        XCTAssertEqual(found.map(\.field), [.chainName, .jumpTarget, .chainName, .chainName])
        XCTAssertTrue(found.allSatisfy { $0.chain == long && $0.length == 29 })
        XCTAssertEqual(found[0].description,
                       "chain name of nat chain \(long) is 29 bytes, the kernel takes at most 28 (XT_EXTENSION_MAXNAMELEN 29 with its NUL)")
        XCTAssertEqual(KernelLimits.violations(in: TableRuleset(table: .nat, chains: [Chain(String(long.dropLast()))])), [])
    }

    /// What the encoder refuses is what the validator names (the validator runs first, so the encoder's own
    /// guards are never what an operator sees).
    func testTheEncoderRefusesWhatTheValidatorNames() {
        var program = TableProgram(family: .ipv4)
        let over = [
            rule([.inInterface(String(repeating: "i", count: 16), negated: false)]),
            rule([.recentSet(name: String(repeating: "r", count: 200))]),
            rule([.nfacct(name: String(repeating: "n", count: 32))]),
            rule([], .jump(String(repeating: "J", count: 29))),
        ]
        for r in over {
            XCTAssertFalse(self.fields(r).isEmpty)
            XCTAssertThrowsError(try program.rule(r, table: .nat, chain: "KUBE-SERVICES", index: 1), "\(r)")
        }
    }
}
