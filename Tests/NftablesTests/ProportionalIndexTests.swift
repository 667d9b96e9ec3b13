import CNftables
import KubeModel
import Ruleset
import XCTest

@testable import Netfilter

/// The nf_tables shim's program index: a program that names its base and its changed chains is parsed and hashed
/// only where it changed, and the stamp hash it gives is the one a new process computes from the whole program.
final class ProportionalIndexTests: XCTestCase {
    static let services = 40

    func sep(_ i: Int, _ e: Int) -> String { "KUBE-SEP-\(String(format: "%04d%012d", i, e))" }
    func svc(_ i: Int) -> String { "KUBE-SVC-\(String(format: "%016d", i))" }

    /// filter with two chains; nat with KUBE-SERVICES, KUBE-MARK-MASQ and per Service a SVC and two SEP chains.
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
            for e in 0..<2 {
                let ip = endpoint.flatMap { $0.0 == i && e == 0 ? $0.1 : nil } ?? "10.0.\(i).\(e + 1)"
                sepRules.append(Rule([.comment("ep \(e)")], .jump(self.sep(i, e))))
                chains.append(Chain(self.sep(i, e), [Rule([.proto(.tcp)], .dnat(IPAddress(ip)!, port: 8080))]))
            }
            chains.append(Chain(self.svc(i), sepRules))
        }
        var nat = TableRuleset(table: .nat, baseJumps: Ownership.upstreamJumps(.nat))
        nat.chains = [Chain("KUBE-SERVICES", services), Chain("KUBE-MARK-MASQ", [Rule([], .markOr(0x4000))])] + chains
        return Ruleset(family: .ipv4, tables: [filter, nat])
    }

    var chainCount: Int { 2 + 2 + Self.services * 3 }

    struct Hashed {
        var hash: UInt64
        var indexed: [Int]
        var incremental: [Bool]
    }

    func hash(_ set: OpaquePointer?, _ programs: [NftablesProgram]) throws -> Hashed {
        var result = knft_result()
        var hash: UInt64 = 0
        let rc = NftablesProgram.withDescriptors(programs) {
            knft_indexes_hash(set, $0, $1, NftablesForm.v1_8_8.cValue, &hash, &result)
        }
        guard rc == 0 else { throw NftablesError(result) }
        var indexed: [Int] = []
        var incremental: [Bool] = []
        withUnsafeBytes(of: result.tables) { raw in
            let t = raw.bindMemory(to: knft_table_report.self)
            for i in 0..<Int(result.ntables) {
                indexed.append(Int(t[i].chains_indexed))
                incremental.append(t[i].incremental != 0)
            }
        }
        return Hashed(hash: hash, indexed: indexed, incremental: incremental)
    }

    /// The same programs without their change: what a new process hands the shim.
    func whole(_ programs: [NftablesProgram]) -> [NftablesProgram] {
        programs.map { p in
            var p = p
            p.delta = nil
            p.stampRange = nil
            return p
        }
    }

    func testAOneEndpointChangeIsHashedFromTheOneChainItNames() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        let set = knft_indexes_new()
        defer { knft_indexes_free(set) }
        let first = try self.hash(set, try backend.encodePrograms([self.ruleset()], changes: [.everything(.ipv4, id: 1)]))
        XCTAssertEqual(first.indexed.reduce(0, +), self.chainCount)
        XCTAssertEqual(first.incremental, [false, false])

        let change = RulesetChange(family: .ipv4, id: 2, base: 1, touched: [.nat: [self.sep(7, 0)]])
        let programs = try backend.encodePrograms([self.ruleset(endpoint: (7, "10.9.9.9"))], changes: [change])
        let second = try self.hash(set, programs)
        XCTAssertEqual(second.indexed, [0, 1], "filter untouched, nat: the one SEP chain")
        XCTAssertEqual(second.incremental, [true, true])
        XCTAssertNotEqual(second.hash, first.hash)

        // a new process, hashing the whole of the same programs, gets the same stamp hash
        let fresh = knft_indexes_new()
        defer { knft_indexes_free(fresh) }
        let full = try self.hash(fresh, self.whole(programs))
        XCTAssertEqual(full.hash, second.hash)
        XCTAssertEqual(full.indexed.reduce(0, +), self.chainCount)
        XCTAssertEqual(full.incremental, [false, false])
    }

    func testAFullSyncIsHashedFromItsChangeToTheStampANewProcessComputes() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        let set = knft_indexes_new()
        defer { knft_indexes_free(set) }
        _ = try self.hash(set, try backend.encodePrograms([self.ruleset()], changes: [.everything(.ipv4, id: 1)]))
        // compare_all is for the plan: the index (a function of the bytes alone) still follows the change
        let change = RulesetChange(family: .ipv4, id: 2, base: 1, touched: [.nat: [self.sep(7, 0)]]).asFullSync
        let programs = try backend.encodePrograms([self.ruleset(endpoint: (7, "10.9.9.9"))], changes: [change])
        XCTAssertEqual(programs.map(\.compareAll), [true, true])
        let second = try self.hash(set, programs)
        XCTAssertEqual(second.indexed, [0, 1])
        let fresh = knft_indexes_new()
        defer { knft_indexes_free(fresh) }
        XCTAssertEqual(try self.hash(fresh, self.whole(programs)).hash, second.hash)
    }

    func testARemovedServiceIsHashedFromItsSharedChainAndItsRemovals() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        let set = knft_indexes_new()
        defer { knft_indexes_free(set) }
        _ = try self.hash(set, try backend.encodePrograms([self.ruleset()], changes: [.everything(.ipv4, id: 1)]))
        let touched: Set<String> = ["KUBE-SERVICES", self.svc(3), self.sep(3, 0), self.sep(3, 1)]
        let programs = try backend.encodePrograms(
            [self.ruleset(without: 3)], changes: [RulesetChange(family: .ipv4, id: 2, base: 1, touched: [.nat: touched])])
        let removed = try self.hash(set, programs)
        XCTAssertEqual(removed.indexed, [0, 1], "only KUBE-SERVICES is parsed; three chains are dropped")
        XCTAssertEqual(removed.incremental, [true, true])
        let fresh = knft_indexes_new()
        defer { knft_indexes_free(fresh) }
        XCTAssertEqual(try self.hash(fresh, self.whole(programs)).hash, removed.hash)

        // and back: the chains come back, the hash is the first one's again
        let back = try backend.encodePrograms(
            [self.ruleset()], changes: [RulesetChange(family: .ipv4, id: 3, base: 2, touched: [.nat: touched])])
        let again = try self.hash(set, back)
        XCTAssertEqual(again.indexed, [0, 4])
        let original = knft_indexes_new()
        defer { knft_indexes_free(original) }
        XCTAssertEqual(again.hash, try self.hash(original, self.whole(back)).hash)
    }

    func testAProgramWhoseBaseIsNotTheOneIndexedIsHashedWhole() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        let set = knft_indexes_new()
        defer { knft_indexes_free(set) }
        _ = try self.hash(set, try backend.encodePrograms([self.ruleset()], changes: [.everything(.ipv4, id: 1)]))
        var programs = try backend.encodePrograms(
            [self.ruleset(endpoint: (2, "10.8.8.8"))],
            changes: [RulesetChange(family: .ipv4, id: 2, base: 1, touched: [.nat: [self.sep(2, 0)]])])
        // the shim last indexed program 1; a program claiming another base must not be trusted
        for i in programs.indices { programs[i].delta?.base = 77 }
        let h = try self.hash(set, programs)
        XCTAssertEqual(h.incremental, [false, false])
        XCTAssertEqual(h.indexed.reduce(0, +), self.chainCount)
    }
}
