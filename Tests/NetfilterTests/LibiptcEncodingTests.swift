import KubeModel
import Ruleset
import XCTest

@testable import Netfilter

/// The libiptc backend keeps each table's program chain by chain and encodes again only the chains a
/// `RulesetChange` names; the program it hands the shim must be, byte for byte, what a whole encode gives, and it
/// must know whether that program is the one it applied last (which decides how the shim reads the table).
/// No kernel here: `encode` is the step of `apply` before `knat_apply_table`.
final class LibiptcEncodingTests: XCTestCase {
    static let services = 40

    func sep(_ i: Int, _ e: Int) -> String { "KUBE-SEP-\(String(format: "%04d%012d", i, e))" }
    func svc(_ i: Int) -> String { "KUBE-SVC-\(String(format: "%016d", i))" }

    /// filter with two fixed chains, nat with KUBE-SERVICES (one rule per Service), KUBE-MARK-MASQ, a SVC and two
    /// SEP chains per Service, and a deleted chain; `endpoint` overrides one Service's first endpoint.
    func ruleset(endpoint: (Int, String)? = nil) -> Ruleset {
        var filter = TableRuleset(table: .filter, baseJumps: Ownership.upstreamJumps(.filter))
        filter.chains = [
            Chain("KUBE-SERVICES", [Rule([.comment("fixed")], .return)]),
            Chain("KUBE-FORWARD", [Rule([.conntrackState([.invalid], negated: false)], .drop)]),
        ]
        var services: [Rule] = []
        var chains: [Chain] = []
        for i in 0..<Self.services {
            services.append(Rule([.comment("ns/svc-\(i):http cluster IP"), .proto(.tcp),
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
        var nat = TableRuleset(table: .nat, baseJumps: Ownership.upstreamJumps(.nat), deletedChains: ["KUBE-XLB-OLD"])
        nat.chains = [Chain("KUBE-SERVICES", services), Chain("KUBE-MARK-MASQ", [Rule([], .markOr(0x4000))])] + chains
        return Ruleset(family: .ipv4, tables: [filter, nat])
    }

    var chainCount: Int { 2 + 2 + Self.services * 3 }

    /// What a whole encode of each table gives (the records both kernel shims replay).
    func whole(_ rs: Ruleset) throws -> [[UInt8]] {
        try rs.tables.map { table in
            var program = TableProgram(family: rs.family)
            try program.encode(table)
            return program.bytes
        }
    }

    /// What one `encode` pass did: per table, whether the program was known to be the one applied last, and the
    /// chains encoded anew and copied.
    struct Pass {
        var same: [Table: Bool?] = [:]
        var encoded = 0
        var reused = 0
    }

    /// `apply` up to the shim: each table encoded, then counted as applied (as a successful commit leaves it).
    @discardableResult
    func encode(_ backend: LibiptcBackend, _ rs: Ruleset, _ change: RulesetChange?) throws -> Pass {
        var pass = Pass()
        for table in rs.tables {
            let key = LibiptcBackend.key(rs.family, table.table)
            let (e, r) = (backend.lastChainsEncoded, backend.lastChainsReused)
            pass.same[table.table] = try backend.encode(table, family: rs.family, key: key, change: change)
            pass.encoded += backend.lastChainsEncoded - e
            pass.reused += backend.lastChainsReused - r
            backend.applied.insert(key)
        }
        return pass
    }

    func programs(_ backend: LibiptcBackend, _ rs: Ruleset) -> [[UInt8]] {
        rs.tables.map { backend.program(rs.family, $0.table) ?? [] }
    }

    func testAFirstApplyEncodesEveryChainAndKnowsNothingOfTheKernel() throws {
        let backend = LibiptcBackend()
        let rs = self.ruleset()
        let pass = try self.encode(backend, rs, .everything(.ipv4, id: 1))
        XCTAssertEqual(pass.encoded, self.chainCount)
        XCTAssertEqual(pass.reused, 0)
        XCTAssertEqual(self.programs(backend, rs), try self.whole(rs))
        XCTAssertEqual(pass.same.count, 2)
        for (table, same) in pass.same { XCTAssertNil(same, "\(table): nothing applied yet: the shim checks first") }
    }

    func testAOneEndpointChangeEncodesOnlyItsChainAndTheUntouchedTableIsKnownUnchanged() throws {
        let backend = LibiptcBackend()
        try self.encode(backend, self.ruleset(), .everything(.ipv4, id: 1))
        let changed = self.ruleset(endpoint: (7, "10.9.9.9"))
        let pass = try self.encode(
            backend, changed, RulesetChange(family: .ipv4, id: 2, base: 1, touched: [.nat: [self.sep(7, 0)]]))
        XCTAssertEqual(pass.encoded, 1, "the one SEP chain")
        XCTAssertEqual(pass.reused, self.chainCount - 1)
        XCTAssertEqual(self.programs(backend, changed), try self.whole(changed))
        XCTAssertEqual(pass.same[.nat], false, "nat changed: straight to iptc_init")
        XCTAssertEqual(pass.same[.filter], true, "filter is the program applied last: read raw, compare, no commit")
        // the next change builds on this one
        let back = self.ruleset()
        let next = try self.encode(
            backend, back, RulesetChange(family: .ipv4, id: 3, base: 2, touched: [.nat: [self.sep(7, 0)]]))
        XCTAssertEqual(next.encoded, 1)
        XCTAssertEqual(self.programs(backend, back), try self.whole(back))
    }

    func testAFullSyncEncodesOnlyTheChangedChains() throws {
        let backend = LibiptcBackend()
        try self.encode(backend, self.ruleset(), .everything(.ipv4, id: 1))
        let changed = self.ruleset(endpoint: (7, "10.9.9.9"))
        // the shim compares every table with the kernel on every apply: a full sync differs only in its name
        let pass = try self.encode(
            backend, changed,
            RulesetChange(family: .ipv4, id: 2, base: 1, touched: [.nat: [self.sep(7, 0)]]).asFullSync)
        XCTAssertEqual(pass.encoded, 1, "the one SEP chain")
        XCTAssertEqual(pass.reused, self.chainCount - 1)
        XCTAssertEqual(self.programs(backend, changed), try self.whole(changed))
        XCTAssertEqual(pass.same, [.filter: true, .nat: false])
    }

    func testAChangeFromAnotherBaseOrWithoutAChangeIsEncodedWholeAndComparedWithTheLastProgram() throws {
        let backend = LibiptcBackend()
        try self.encode(backend, self.ruleset(), .everything(.ipv4, id: 1))
        // a change that does not start from the kept encoding (another compiler) cannot be patched
        let changed = self.ruleset(endpoint: (3, "10.9.9.9"))
        var pass = try self.encode(
            backend, changed, RulesetChange(family: .ipv4, id: 5, base: 4, touched: [.nat: [self.sep(3, 0)]]))
        XCTAssertEqual(pass.encoded, self.chainCount)
        XCTAssertEqual(pass.reused, 0)
        XCTAssertEqual(self.programs(backend, changed), try self.whole(changed))
        XCTAssertEqual(pass.same, [.filter: true, .nat: false], "compared byte for byte with the kept program")
        // no change at all (`apply(_:)`): whole, and the same rules again are known to be the same program
        pass = try self.encode(backend, changed, nil)
        XCTAssertEqual(pass.encoded, self.chainCount)
        XCTAssertEqual(pass.same, [.filter: true, .nat: true])
        // an apply that failed leaves the kernel unknown: a patch of it is not known to be what the kernel holds
        backend.applied.remove(LibiptcBackend.key(.ipv4, .nat))
        let next = try backend.encode(changed[.nat]!, family: .ipv4, key: LibiptcBackend.key(.ipv4, .nat), change: nil)
        XCTAssertNil(next)
    }

    func testWithoutKeptEncodingsEveryApplyEncodesEverything() throws {
        let backend = LibiptcBackend()
        backend.keepsEncodings = false
        try self.encode(backend, self.ruleset(), .everything(.ipv4, id: 1))
        let changed = self.ruleset(endpoint: (7, "10.9.9.9"))
        let pass = try self.encode(
            backend, changed, RulesetChange(family: .ipv4, id: 2, base: 1, touched: [.nat: [self.sep(7, 0)]]))
        XCTAssertEqual(pass.encoded, self.chainCount)
        XCTAssertEqual(pass.reused, 0)
        XCTAssertEqual(self.programs(backend, changed), try self.whole(changed))
    }
}
