import CRuleProgram
import KubeModel
import Ruleset
import XCTest

@testable import Netfilter

/// The one planner's decisions (knat_plan.h D1..D9), each with the exact steps the rule written there demands.
/// The table is a text view (rules compared as rendered lines, as the text backend does); program rule ids count
/// every rule of the program in order from 0.
final class KernelPlanTests: XCTestCase {
    let j1 = Rule([.comment("one")], .jump("KUBE-ONE"))
    let j2 = Rule([.comment("two")], .jump("KUBE-TWO"))
    let foreign = Rule([.comment("foreign")], .accept)
    let other = Rule([.comment("other")], .drop)
    let markDrop = Rule([], .markOr(0x8000))
    let toFirewall = Rule([], .jump("KUBE-FIREWALL"))

    // MARK: - the harness

    func program(_ body: (inout TableProgram) throws -> Void) rethrows -> TableProgram {
        var p = TableProgram(family: .ipv4, capacity: 1024)
        p.recorded = []
        try body(&p)
        return p
    }

    func kernel(_ chains: [(String, [Rule])], own: [String: Set<Int>] = [:]) -> KernelTableLines {
        let lines = Dictionary(uniqueKeysWithValues: chains.map { ($0.0, $0.1.map(TextBackend.line)) })
        var v = KernelTableLines(order: chains.map(\.0)) { lines[$0] ?? [] }
        for (name, rules) in own { v.ownJumps[v.index[name]!] = rules }
        return v
    }

    func plan(_ p: TableProgram, _ v: KernelTableLines) throws -> KernelPlan {
        let wanted = (p.recorded ?? []).map(TextBackend.line)
        return try KernelPlan.make(p.bytes, table: .filter, view: v) { c, i, id in v.lines[c][i] == wanted[id] }
    }

    func declare(_ p: inout TableProgram, _ name: String, _ rules: [Rule]) throws {
        p.chain(name)
        for (i, r) in rules.enumerated() { try p.rule(r, table: .filter, chain: name, index: i + 1) }
    }

    func jump(_ p: inout TableProgram, _ base: String, _ r: Rule) throws {
        try p.jump(BaseChainJump(baseChain: base, rule: r), table: .filter, index: 1)
    }

    func ensure(_ p: inout TableProgram, _ chain: String, _ r: Rule) throws {
        try p.ensureRule(EnsuredRule(chain: chain, rule: r), table: .filter, index: 1)
    }

    func planError(_ p: TableProgram, _ v: KernelTableLines) -> KernelPlanError? {
        do {
            _ = try self.plan(p, v)
            return nil
        } catch let e as KernelPlanError {
            return e
        } catch {
            XCTFail("unexpected \(error)")
            return nil
        }
    }

    // MARK: - D3 stale chains

    func testAChainWithAServicePrefixTheProgramDoesNotDeclareIsDeletedAndDeclaredOnesAreNot() throws {
        let p = try program {
            $0.stalePrefix("KUBE-SVC-")
            try declare(&$0, "KUBE-SVC-NEW", [foreign])
        }
        let v = kernel([("INPUT", []), ("KUBE-SVC-OLD", [other]), ("KUBE-SVC-NEW", [foreign]), ("MY-SVC-X", [])])
        let result = try plan(p, v)
        XCTAssertEqual(result.steps, [.unchanged("KUBE-SVC-NEW"), .deleteChain("KUBE-SVC-OLD")])
        XCTAssertEqual(result.writes, 1)
        XCTAssertEqual(result.unchanged, 1)
    }

    func testAListedDeletionGoesOnlyWhenItExistsAndIsNotDeclared() throws {
        let p = try program {
            $0.deleteChain("KUBE-PROXY-FIREWALL")
            $0.deleteChain("KUBE-GONE")
            $0.deleteChain("INPUT")  // a base chain is never stale
        }
        let v = kernel([("INPUT", [foreign]), ("KUBE-PROXY-FIREWALL", [other])])
        XCTAssertEqual(try plan(p, v).steps, [.deleteChain("KUBE-PROXY-FIREWALL")])
    }

    func testStaleChainsGoEachAfterEveryStaleChainThatJumpsToIt() throws {
        let p = program { $0.stalePrefix("KUBE-SEP-"); $0.stalePrefix("KUBE-SVC-") }
        let toSep = Rule([], .jump("KUBE-SEP-A"))
        let v = kernel([("KUBE-SEP-A", [other]), ("KUBE-SVC-A", [toSep])])
        XCTAssertEqual(try plan(p, v).steps, [.deleteChain("KUBE-SVC-A"), .deleteChain("KUBE-SEP-A")])
    }

    // MARK: - D4 a stale chain something still jumps to

    func testAStaleChainAForeignRuleJumpsToIsFlushedAndKeptWithAWarning() throws {
        let p = program { $0.stalePrefix("KUBE-SVC-"); $0.stalePrefix("KUBE-SEP-") }
        let v = kernel([
            ("FORWARD", []), ("MY-CHAIN", [Rule([], .jump("KUBE-SVC-OLD"))]),
            ("KUBE-SVC-OLD", [Rule([], .jump("KUBE-SEP-OLD"))]), ("KUBE-SEP-OLD", [other]),
        ])
        let result = try plan(p, v)
        XCTAssertEqual(result.steps, [
            .keepChain("KUBE-SVC-OLD", warning: "chain KUBE-SVC-OLD kept (flushed): chain MY-CHAIN still jumps to it"),
            .deleteChain("KUBE-SEP-OLD"),
        ])
        XCTAssertEqual(result.writes, 2)
    }

    func testAKeptStaleChainThatIsAlreadyEmptyWritesNothing() throws {
        let p = program { $0.stalePrefix("KUBE-SVC-") }
        let v = kernel([("MY-CHAIN", [Rule([], .jump("KUBE-SVC-OLD"))]), ("KUBE-SVC-OLD", [])])
        let result = try plan(p, v)
        XCTAssertEqual(result.steps.count, 1)
        XCTAssertEqual(result.writes, 0, "a steady state with a kept chain must not commit every sync")
    }

    func testKubeProxysOwnJumpIntoADeletedChainGoesBeforeTheChainAndAnyOtherJumpKeepsIt() throws {
        let upstream = Rule([.conntrackState([.new], negated: false), .comment("kubernetes load balancer firewall")],
                            .jump("KUBE-PROXY-FIREWALL"))
        let p = try program {
            $0.deleteChain("KUBE-PROXY-FIREWALL")
            try $0.deleteRule(in: "INPUT", upstream, table: .filter)
        }
        let v = kernel([("INPUT", [upstream, foreign]), ("KUBE-PROXY-FIREWALL", [other])])
        XCTAssertEqual(try plan(p, v).steps, [.deleteRule("INPUT", index: 0), .deleteChain("KUBE-PROXY-FIREWALL")])

        // a rule that is not the listed one is not kube-natd's to delete: the chain stays (flushed)
        let bare = Rule([], .jump("KUBE-PROXY-FIREWALL"))
        let w = kernel([("INPUT", [upstream, bare]), ("KUBE-PROXY-FIREWALL", [other])])
        XCTAssertEqual(try plan(p, w).steps, [
            .deleteRule("INPUT", index: 0),
            .keepChain("KUBE-PROXY-FIREWALL",
                       warning: "chain KUBE-PROXY-FIREWALL kept (flushed): chain INPUT still jumps to it"),
        ])
    }

    // MARK: - D5 kube-natd's jumps

    func testJumpsInPlaceAtTheTopInOrderWriteNothing() throws {
        let p = try program { try jump(&$0, "INPUT", j1); try jump(&$0, "INPUT", j2) }
        let result = try plan(p, kernel([("INPUT", [j1, j2, foreign])]))
        XCTAssertEqual(result.steps, [])
        XCTAssertEqual(result.writes, 0)
    }

    func testJumpsOutOfOrderAreDeletedAndInsertedAtTheTopInOrder() throws {
        let p = try program { try jump(&$0, "INPUT", j1); try jump(&$0, "INPUT", j2) }
        XCTAssertEqual(try plan(p, kernel([("INPUT", [j2, j1, foreign])])).steps, [
            .deleteRule("INPUT", index: 1), .deleteRule("INPUT", index: 0),
            .insert("INPUT", rule: 0, at: 0, before: 2, jump: true),
            .insert("INPUT", rule: 1, at: 1, before: 2, jump: true),
        ])
    }

    func testTheJumpsAlreadyInPlaceStayAndAJumpBelowAForeignRuleMovesUp() throws {
        let p = try program { try jump(&$0, "INPUT", j1); try jump(&$0, "INPUT", j2) }
        XCTAssertEqual(try plan(p, kernel([("INPUT", [j1, foreign, j2])])).steps, [
            .deleteRule("INPUT", index: 2), .insert("INPUT", rule: 1, at: 1, before: 1, jump: true),
        ])
    }

    func testADuplicatedJumpIsDeletedOnce() throws {
        let p = try program { try jump(&$0, "INPUT", j1); try jump(&$0, "INPUT", j2) }
        XCTAssertEqual(try plan(p, kernel([("INPUT", [j1, j2, foreign, j1, j2])])).steps, [
            .deleteRule("INPUT", index: 4), .deleteRule("INPUT", index: 3),
        ])
    }

    func testMissingJumpsAreInsertedAboveForeignRules() throws {
        let p = try program { try jump(&$0, "INPUT", j1); try jump(&$0, "INPUT", j2) }
        XCTAssertEqual(try plan(p, kernel([("INPUT", [foreign, other])])).steps, [
            .insert("INPUT", rule: 0, at: 0, before: 0, jump: true),
            .insert("INPUT", rule: 1, at: 1, before: 0, jump: true),
        ])
    }

    func testAMissingChainForJumpsIsCreatedAndFilledInOrder() throws {
        let p = try program { try jump(&$0, "PREROUTING", j1); try jump(&$0, "PREROUTING", j2) }
        XCTAssertEqual(try plan(p, kernel([("INPUT", [])])).steps, [
            .create("PREROUTING", jumps: true),
            .insert("PREROUTING", rule: 0, at: 0, before: nil, jump: true),
            .insert("PREROUTING", rule: 1, at: 1, before: nil, jump: true),
        ])
    }

    func testAnIdenticalRuleAnotherToolWroteCountsAsTheJumpAndOneTheProgramDoesNotWantStays() throws {
        let p = try program { try jump(&$0, "INPUT", j1) }
        // j1 at the top may be another tool's: identical is in place. j2 is not wanted and not known to be ours.
        let result = try plan(p, kernel([("INPUT", [j1, foreign, j2])]))
        XCTAssertEqual(result.steps, [])
    }

    // MARK: - D6 rules to delete

    func testARuleToDeleteGoesWhereverItIsEveryCopy() throws {
        let p = try program { try $0.deleteRule(in: "OUTPUT", other, table: .filter) }
        XCTAssertEqual(try plan(p, kernel([("OUTPUT", [other, foreign, other])])).steps, [
            .deleteRule("OUTPUT", index: 2), .deleteRule("OUTPUT", index: 0),
        ])
        XCTAssertEqual(try plan(p, kernel([("INPUT", [other])])).steps, [], "no such chain: nothing")
    }

    // MARK: - D7 own jumps

    func testDeleteOwnJumpsDeletesOnlyTheRulesTheBackendKnowsKubeNatdWrote() throws {
        let p = program { $0.record(Int32(KNAT_OP_DELETE_OWN_JUMPS)) { _ in } }
        let v = kernel([("INPUT", [toFirewall, foreign, toFirewall]), ("OUTPUT", [toFirewall])],
                       own: ["INPUT": [2], "OUTPUT": [0]])
        XCTAssertEqual(try plan(p, v).steps, [.deleteRule("INPUT", index: 2), .deleteRule("OUTPUT", index: 0)])
        // a view that cannot tell (x_tables, text) marks none: the record deletes nothing, and is accepted
        XCTAssertEqual(try plan(p, kernel([("INPUT", [toFirewall])])).steps, [])
    }

    func testAWholeTablesProgramDropsOwnJumpsItNoLongerWantsAndACanaryProgramDoesNot() throws {
        let v = kernel([("INPUT", [j1, toFirewall])], own: ["INPUT": [0, 1]])
        let table = try program { try declare(&$0, "KUBE-ONE", []); try jump(&$0, "INPUT", j1) }
        XCTAssertEqual(try plan(table, v).steps, [.create("KUBE-ONE"), .fill("KUBE-ONE", rules: 0..<0),
                                                  .deleteRule("INPUT", index: 1)])
        let canary = program { $0.ensureChain("KUBE-PROXY-CANARY") }
        XCTAssertEqual(try plan(canary, v).steps, [.create("KUBE-PROXY-CANARY", canary: true)])
        // an ensured rule identical to an own jump is not stale
        let ensuring = try program {
            try declare(&$0, "KUBE-ONE", [])
            try jump(&$0, "INPUT", j1)
            try ensure(&$0, "INPUT", toFirewall)
        }
        XCTAssertEqual(try plan(ensuring, v).steps, [.create("KUBE-ONE"), .fill("KUBE-ONE", rules: 0..<0)])
        // outside base chains and chains that get jumps, provenance deletes nothing
        let marked = kernel([("KUBE-MARK-DROP", [toFirewall])], own: ["KUBE-MARK-DROP": [0]])
        let ensuringElsewhere = try program {
            try declare(&$0, "KUBE-ONE", [])
            try ensure(&$0, "KUBE-MARK-DROP", markDrop)
        }
        XCTAssertEqual(try plan(ensuringElsewhere, marked).steps, [
            .create("KUBE-ONE"), .fill("KUBE-ONE", rules: 0..<0),
            .insert("KUBE-MARK-DROP", rule: 0, at: nil, before: nil, jump: false),
        ])
    }

    // MARK: - D8 ensured rules

    func testAnEnsuredRuleAlreadyPresentAnywhereIsLeftAlone() throws {
        let p = try program {
            try jump(&$0, "INPUT", j1)
            try ensure(&$0, "INPUT", toFirewall)
            try ensure(&$0, "KUBE-MARK-DROP", markDrop)
        }
        let v = kernel([("INPUT", [j1, foreign, toFirewall]), ("KUBE-MARK-DROP", [foreign, markDrop])])
        XCTAssertEqual(try plan(p, v).steps, [])
    }

    func testAMissingEnsuredRuleGoesRightAfterTheJumpsInABaseChainAndAtTheEndElsewhere() throws {
        let p = try program {
            try jump(&$0, "INPUT", j1)
            try jump(&$0, "INPUT", j2)
            try ensure(&$0, "INPUT", toFirewall)
            try ensure(&$0, "KUBE-MARK-DROP", markDrop)
        }
        let v = kernel([("INPUT", [j2, foreign]), ("KUBE-MARK-DROP", [foreign])])
        XCTAssertEqual(try plan(p, v).steps, [
            .deleteRule("INPUT", index: 0),
            .insert("INPUT", rule: 0, at: 0, before: 1, jump: true),
            .insert("INPUT", rule: 1, at: 1, before: 1, jump: true),
            .insert("INPUT", rule: 2, at: 2, before: 1, jump: false),
            .insert("KUBE-MARK-DROP", rule: 3, at: nil, before: nil, jump: false),
        ])
    }

    func testIdenticalEnsuredRulesAreAddedOnceAndTheirMissingChainIsCreated() throws {
        let p = try program {
            try ensure(&$0, "KUBE-MARK-DROP", markDrop)
            try ensure(&$0, "KUBE-MARK-DROP", markDrop)
        }
        XCTAssertEqual(try plan(p, kernel([("INPUT", [])])).steps, [
            .create("KUBE-MARK-DROP", ensured: true),
            .insert("KUBE-MARK-DROP", rule: 0, at: nil, before: nil, jump: false),
        ])
    }

    func testAnEnsuredRuleDeletedByThePlanIsNotPresent() throws {
        let p = try program {
            try $0.deleteRule(in: "OUTPUT", toFirewall, table: .filter)
            try ensure(&$0, "OUTPUT", toFirewall)
        }
        XCTAssertEqual(try plan(p, kernel([("OUTPUT", [toFirewall])])).steps, [
            .deleteRule("OUTPUT", index: 0), .insert("OUTPUT", rule: 1, at: 0, before: nil, jump: false),
        ])
    }

    // MARK: - D2 declared chains

    func testADeclaredChainHoldingExactlyItsRulesIsUnchangedAndOneThatDiffersIsRewritten() throws {
        let p = try program {
            try declare(&$0, "KUBE-SERVICES", [foreign, other])
            try declare(&$0, "KUBE-NODEPORTS", [foreign, other])
            try declare(&$0, "KUBE-FORWARD", [foreign])
            try declare(&$0, "KUBE-NEW", [other])
        }
        let v = kernel([
            ("KUBE-SERVICES", [foreign, other]), ("KUBE-NODEPORTS", [foreign, foreign]),
            ("KUBE-FORWARD", [foreign, other]),
        ])
        let result = try plan(p, v)
        XCTAssertEqual(result.steps, [
            .unchanged("KUBE-SERVICES"),
            .rewrite("KUBE-NODEPORTS", rules: 2..<4, from: 1),
            .rewrite("KUBE-FORWARD", rules: 4..<5, from: 1),
            .create("KUBE-NEW"), .fill("KUBE-NEW", rules: 5..<6),
        ])
        XCTAssertEqual(result.unchanged, 1)
        XCTAssertEqual(result.writes, 4)
    }

    func testAChainAnswersAtOnceWhenTheBackendKnowsItsDigest() throws {
        let p = try program { try declare(&$0, "KUBE-SERVICES", [foreign]) }
        let v = kernel([("KUBE-SERVICES", [other])])
        let wanted = (p.recorded ?? []).map(TextBackend.line)
        let told = try KernelPlan.make(p.bytes, table: .nat, view: v, same: { c, i, id in
            v.lines[c][i] == wanted[id]
        }, chainSame: { _, _, _ in 1 })
        XCTAssertEqual(told.steps, [.unchanged("KUBE-SERVICES")], "1: same, no rule compared")
    }

    func testABaseChainIsNeverDeclaredAndAChainIsNotBothDeclaredAndEdited() throws {
        let base = try program { try declare(&$0, "INPUT", [foreign]) }
        XCTAssertEqual(planError(base, kernel([("INPUT", [])]))?.errno, EPERM)
        let both = try program {
            try declare(&$0, "KUBE-MARK-DROP", [markDrop])
            try ensure(&$0, "KUBE-MARK-DROP", markDrop)
        }
        XCTAssertEqual(planError(both, kernel([]))?.errno, EINVAL)
        let twice = try program {
            try declare(&$0, "KUBE-A", [])
            try declare(&$0, "KUBE-A", [])
        }
        XCTAssertEqual(planError(twice, kernel([]))?.errno, EINVAL)
    }

    // MARK: - D1 chain names

    func testChainNamesAreAtMost28BytesWhereverTheyAppear() throws {
        let name28 = "KUBE-" + String(repeating: "X", count: 23)
        let name29 = name28 + "Y"
        XCTAssertEqual(name28.utf8.count, 28)
        XCTAssertNoThrow(try plan(program { $0.chain(name28) }, kernel([])))
        let long = program { $0.chain(name29) }
        XCTAssertEqual(planError(long, kernel([]))?.errno, ENAMETOOLONG)
        XCTAssertTrue(planError(long, kernel([]))?.message.contains(name29) == true)
        XCTAssertEqual(planError(program { $0.stalePrefix(name29) }, kernel([]))?.errno, ENAMETOOLONG)
        XCTAssertEqual(planError(program { $0.deleteChain(name29) }, kernel([]))?.errno, ENAMETOOLONG)
        // a jump target: the record is written directly (the Swift encoder refuses it before the planner)
        let target = program {
            $0.string(Int32(KNAT_OP_JUMP), "INPUT")
            $0.string(Int32(KNAT_T_STANDARD), name29)
        }
        XCTAssertEqual(planError(target, kernel([("INPUT", [])]))?.errno, ENAMETOOLONG)
        var encoder = TableProgram(family: .ipv4)
        XCTAssertThrowsError(try encoder.encodeChain(Chain(name29, []), table: .filter)) { error in
            XCTAssertTrue("\(error)".contains("longer than 28 bytes"), "\(error)")
        }
    }

    // MARK: - restore compares rules in iptables-save's form

    func testSaveFormTakesWhatIptablesSavePrintsForKubeletsRulesAsTheRulesKubeNatdRenders() {
        // iptables-save prints MARK rev 2 as --set-xmark and the IP-header options first (legacy-layout §2.2)
        XCTAssertEqual(SaveForm.canonical(TextBackend.line(markDrop)),
                       SaveForm.canonical("-j MARK --set-xmark 0x8000/0x8000"))
        XCTAssertNotEqual(SaveForm.canonical(TextBackend.line(Rule([], .markOr(0x4000)))),
                          SaveForm.canonical("-j MARK --set-xmark 0x8000/0x8000"))
        let localnet = Rule([
            .comment("block incoming localnet connections"),
            .destination(.cidr(CIDR("127.0.0.0/8")!), negated: false),
            .source(.cidr(CIDR("127.0.0.0/8")!), negated: true),
            .conntrackState([.related, .established, .dnat], negated: true),
        ], .drop)
        let saved = "! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" "
            + "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
        XCTAssertEqual(SaveForm.canonical(TextBackend.line(localnet)), SaveForm.canonical(saved))
        XCTAssertNotEqual(SaveForm.canonical(TextBackend.line(localnet)),
                          SaveForm.canonical(saved.replacingOccurrences(of: "! -s", with: "-s")))
        let upstream = Rule([.conntrackState([.new], negated: false), .comment("kubernetes service portals")],
                            .jump("KUBE-SERVICES"))
        XCTAssertEqual(SaveForm.canonical(TextBackend.line(upstream)),
                       SaveForm.canonical("-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"))
        XCTAssertEqual(SaveForm.canonical("-d 10.0.0.1/32 -j ACCEPT"), SaveForm.canonical("-d 10.0.0.1 -j ACCEPT"))
    }
}
