import KubeModel
import Ruleset
import XCTest

@testable import Netfilter

/// The libnftnl backend keeps each chain's encoding between applies and encodes again only the chains a
/// `RulesetChange` names; the program it hands the shim must be, byte for byte, the one a fresh encode gives.
final class IncrementalEncodingTests: XCTestCase {
    static let services = 50

    func sep(_ i: Int, _ e: Int) -> String { "KUBE-SEP-\(String(format: "%04d%012d", i, e))" }
    func svc(_ i: Int) -> String { "KUBE-SVC-\(String(format: "%016d", i))" }

    /// filter with two fixed chains, nat with KUBE-SERVICES (one rule per Service), KUBE-MARK-MASQ and a SVC and
    /// two SEP chains per Service; `endpoint` overrides one Service's first endpoint.
    func ruleset(endpoint: (Int, String)? = nil, without: Int? = nil) -> Ruleset {
        var filter = TableRuleset(table: .filter, baseJumps: Ownership.upstreamJumps(.filter))
        filter.chains = [
            Chain("KUBE-SERVICES", [Rule([.comment("fixed")], .return)]),
            Chain("KUBE-FORWARD", [Rule([.conntrackState([.invalid], negated: false)], .drop)]),
        ]
        var services: [Rule] = []
        var chains: [Chain] = []
        for i in 0..<Self.services where i != without {
            services.append(Rule([.comment("svc \(i)"), .proto(.tcp),
                                  .destination(.ip(IPAddress("172.30.0.\(i + 1)")!), negated: false),
                                  .destinationPort(80)], .jump(self.svc(i))))
            var sepRules: [Rule] = []
            var seps: [Chain] = []
            for e in 0..<2 {
                let ip = endpoint.flatMap { $0.0 == i && e == 0 ? $0.1 : nil } ?? "10.0.\(i).\(e + 1)"
                sepRules.append(Rule([.comment("ep \(e)")], .jump(self.sep(i, e))))
                seps.append(Chain(self.sep(i, e), [Rule([.proto(.tcp)], .dnat(IPAddress(ip)!, port: 8080))]))
            }
            chains.append(Chain(self.svc(i), sepRules))
            chains += seps
        }
        var nat = TableRuleset(table: .nat, baseJumps: Ownership.upstreamJumps(.nat))
        nat.chains = [Chain("KUBE-SERVICES", services), Chain("KUBE-MARK-MASQ", [Rule([], .markOr(0x4000))])] + chains
        return Ruleset(family: .ipv4, tables: [filter, nat])
    }

    /// What a fresh encode of each table gives.
    func fresh(_ rs: Ruleset) throws -> [[UInt8]] {
        try rs.tables.map { table in
            var program = TableProgram(family: rs.family)
            try NftablesBackend.encode(table, into: &program)
            return program.bytes
        }
    }

    var chainCount: Int { 2 + 2 + Self.services * 3 }

    func testAFirstApplyEncodesEveryChain() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        let rs = self.ruleset()
        let programs = try backend.encodePrograms([rs], changes: [.everything(.ipv4, id: 1)])
        XCTAssertEqual(backend.lastChainsEncoded, self.chainCount)
        XCTAssertEqual(backend.lastChainsReused, 0)
        XCTAssertEqual(programs.map(\.bytes), try self.fresh(rs))
    }

    func testAOneEndpointChangeEncodesOnlyTheChainsItNames() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        _ = try backend.encodePrograms([self.ruleset()], changes: [.everything(.ipv4, id: 1)])
        let changed = self.ruleset(endpoint: (7, "10.9.9.9"))
        let change = RulesetChange(family: .ipv4, id: 2, base: 1, touched: [.nat: [self.sep(7, 0)]])
        let programs = try backend.encodePrograms([changed], changes: [change])
        XCTAssertEqual(backend.lastChainsEncoded, 1)
        XCTAssertEqual(backend.lastChainsReused, self.chainCount - 1)
        XCTAssertEqual(programs.map(\.bytes), try self.fresh(changed))
        // and the next change builds on this one
        let back = self.ruleset()
        let programs2 = try backend.encodePrograms(
            [back], changes: [RulesetChange(family: .ipv4, id: 3, base: 2, touched: [.nat: [self.sep(7, 0)]])])
        XCTAssertEqual(backend.lastChainsEncoded, 1)
        XCTAssertEqual(programs2.map(\.bytes), try self.fresh(back))
    }

    func testRemovedAndAddedChainsKeepTheProgramEqualToAFreshEncode() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        _ = try backend.encodePrograms([self.ruleset()], changes: [.everything(.ipv4, id: 1)])
        // Service 20 goes: its three chains and KUBE-SERVICES change
        let removed = self.ruleset(without: 20)
        let gone: Set<String> = ["KUBE-SERVICES", self.svc(20), self.sep(20, 0), self.sep(20, 1)]
        var programs = try backend.encodePrograms(
            [removed], changes: [RulesetChange(family: .ipv4, id: 2, base: 1, touched: [.nat: gone])])
        XCTAssertEqual(backend.lastChainsEncoded, 1)  // nat KUBE-SERVICES; filter's KUBE-SERVICES is another table's
        XCTAssertEqual(programs.map(\.bytes), try self.fresh(removed))
        // and comes back
        let back = self.ruleset()
        programs = try backend.encodePrograms(
            [back], changes: [RulesetChange(family: .ipv4, id: 3, base: 2, touched: [.nat: gone])])
        XCTAssertEqual(backend.lastChainsEncoded, 4)
        XCTAssertEqual(programs.map(\.bytes), try self.fresh(back))
    }

    func testChainsThatMovedWithoutBeingNamedAreStillWhereAFreshEncodePutsThem() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        _ = try backend.encodePrograms([self.ruleset()], changes: [.everything(.ipv4, id: 1)])
        var moved = self.ruleset(endpoint: (30, "10.9.9.9"))
        moved.tables[1].chains.swapAt(10, 40)  // two chains of other Services trade places, unnamed
        moved.tables[1].ensured.append(EnsuredRule(chain: "KUBE-MARK-DROP", rule: Rule([], .markOr(0x8000))))
        let programs = try backend.encodePrograms(
            [moved], changes: [RulesetChange(family: .ipv4, id: 2, base: 1, touched: [.nat: [self.sep(30, 0)]])])
        XCTAssertEqual(programs.map(\.bytes), try self.fresh(moved))
        XCTAssertEqual(backend.lastChainsEncoded + backend.lastChainsReused, self.chainCount)
        // and the next patch starts from the right places
        let back = self.ruleset()
        let programs2 = try backend.encodePrograms(
            [back], changes: [RulesetChange(family: .ipv4, id: 3, base: 2, touched: [.nat: [self.sep(30, 0)]])])
        XCTAssertEqual(programs2.map(\.bytes), try self.fresh(back))
    }

    func testAChangeMarkedEverythingEncodesEverythingAgain() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        _ = try backend.encodePrograms([self.ruleset()], changes: [.everything(.ipv4, id: 1)])
        let changed = self.ruleset(endpoint: (3, "10.9.9.9"))
        // the compiler's change marked as everything: nothing of the kept encoding is reused
        let change = RulesetChange(family: .ipv4, id: 2, base: 1, touched: [.nat: [self.sep(3, 0)]]).asEverything
        let programs = try backend.encodePrograms([changed], changes: [change])
        XCTAssertEqual(backend.lastChainsEncoded, self.chainCount)
        XCTAssertEqual(backend.lastChainsReused, 0)
        XCTAssertEqual(programs.map(\.bytes), try self.fresh(changed))
    }

    func testAFullSyncEncodesOnlyTheChangedChainsAndAsksTheShimToCompareEverything() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        _ = try backend.encodePrograms([self.ruleset()], changes: [.everything(.ipv4, id: 1)])
        let changed = self.ruleset(endpoint: (3, "10.9.9.9"))
        // what SyncPath hands over on a full sync (start, drift, periodic): the compiler's change, `asFullSync`
        let change = RulesetChange(family: .ipv4, id: 2, base: 1, touched: [.nat: [self.sep(3, 0)]]).asFullSync
        let programs = try backend.encodePrograms([changed], changes: [change])
        XCTAssertEqual(backend.lastChainsEncoded, 1, "the one SEP chain")
        XCTAssertEqual(backend.lastChainsReused, self.chainCount - 1)
        XCTAssertEqual(programs.map(\.bytes), try self.fresh(changed))
        XCTAssertEqual(programs.map(\.compareAll), [true, true])
        XCTAssertEqual(programs.map { $0.delta?.base }, [1, 1], "the shim may still index from the change")
        NftablesProgram.withDescriptors(programs) { d, n in
            XCTAssertEqual(n, 2)
            for i in 0..<n {
                XCTAssertEqual(d?[i].compare_all, 1, "the shim plans every chain")
                XCTAssertEqual(d?[i].base, 1)
            }
        }
        // the next partial sync builds on the full sync's encoding and is planned from its change
        let back = self.ruleset()
        let next = try backend.encodePrograms(
            [back], changes: [RulesetChange(family: .ipv4, id: 3, base: 2, touched: [.nat: [self.sep(3, 0)]])])
        XCTAssertEqual(backend.lastChainsEncoded, 1)
        XCTAssertEqual(next.map(\.bytes), try self.fresh(back))
        XCTAssertEqual(next.map(\.compareAll), [false, false])
        NftablesProgram.withDescriptors(next) { d, n in
            for i in 0..<n { XCTAssertEqual(d?[i].compare_all, 0) }
        }
        // a full sync of an unchanged ruleset encodes nothing again (the tail aside)
        let same = try backend.encodePrograms(
            [back], changes: [RulesetChange(family: .ipv4, id: 4, base: 3, touched: [:]).asFullSync])
        XCTAssertEqual(backend.lastChainsEncoded, 0)
        XCTAssertEqual(same.map(\.bytes), try self.fresh(back))
        XCTAssertEqual(same.map(\.compareAll), [true, true])
    }

    func testAChangeFromAnotherBaseOrNoChangeEncodesEverything() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        _ = try backend.encodePrograms([self.ruleset()], changes: [.everything(.ipv4, id: 1)])
        let changed = self.ruleset(endpoint: (3, "10.9.9.9"))
        // the backend holds ruleset 1, the change starts from 5: nothing it holds is known to be current
        _ = try backend.encodePrograms(
            [changed], changes: [RulesetChange(family: .ipv4, id: 6, base: 5, touched: [.nat: [self.sep(3, 0)]])])
        XCTAssertEqual(backend.lastChainsEncoded, self.chainCount)
        // an apply without changes (drift repair, other callers) encodes everything and leaves nothing reusable
        _ = try backend.encodePrograms([changed], changes: [])
        XCTAssertEqual(backend.lastChainsEncoded, self.chainCount)
        _ = try backend.encodePrograms(
            [changed], changes: [RulesetChange(family: .ipv4, id: 7, base: 6, touched: [:])])
        XCTAssertEqual(backend.lastChainsEncoded, self.chainCount)
    }

    func testAFailedEncodeKeepsNothingToReuse() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        _ = try backend.encodePrograms([self.ruleset()], changes: [.everything(.ipv4, id: 1)])
        var bad = self.ruleset()
        bad.tables[1].chains[5].rules.append(Rule([.destinationPort(70000), .proto(.tcp)], .accept))
        let name = bad.tables[1].chains[5].name
        XCTAssertThrowsError(try backend.encodePrograms(
            [bad], changes: [RulesetChange(family: .ipv4, id: 2, base: 1, touched: [.nat: [name]])]))
        // the next change, from 2, finds no encoding of 2 and encodes all
        let good = self.ruleset()
        let programs = try backend.encodePrograms(
            [good], changes: [RulesetChange(family: .ipv4, id: 3, base: 2, touched: [.nat: [name]])])
        XCTAssertEqual(backend.lastChainsEncoded, self.chainCount - 2)  // filter kept its encoding of 2; nat did not
        XCTAssertEqual(programs.map(\.bytes), try self.fresh(good))
    }
}
