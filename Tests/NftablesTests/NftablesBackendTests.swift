import CNftables
import CRuleProgram
import KubeModel
import Ruleset
import XCTest

@testable import Netfilter

/// The pure parts of the libnftnl backend: which form a host gets, what the report says, and the digests a
/// ruleset is expected to read back as (computed without the kernel).
final class NftablesBackendTests: XCTestCase {
    // MARK: form selection

    func testFormFollowsTheHostsIptablesRelease() {
        XCTAssertEqual(NftablesForm(hostVersion: IptablesVersion(1, 8, 7, mode: .nft)), .compat)
        XCTAssertEqual(NftablesForm(hostVersion: IptablesVersion(1, 6, 1)), .compat)
        XCTAssertEqual(NftablesForm(hostVersion: IptablesVersion(1, 8, 8, mode: .nft)), .v1_8_8)
        XCTAssertEqual(NftablesForm(hostVersion: IptablesVersion(1, 8, 9, mode: .nft)), .v1_8_8)
        XCTAssertEqual(NftablesForm(hostVersion: IptablesVersion(1, 8, 10, mode: .nft)), .v1_8_10)
        XCTAssertEqual(NftablesForm(hostVersion: IptablesVersion(1, 8, 11)), .v1_8_10)
        XCTAssertEqual(NftablesForm(hostVersion: IptablesVersion(1, 9, 0)), .v1_8_10)
    }

    func testAnUnknownVersionGetsTheFormEveryReleaseReads() {
        XCTAssertEqual(NftablesForm(hostVersion: nil), .compat)
    }

    func testFormNamesAcceptReleasesAndCompat() {
        XCTAssertEqual(NftablesForm(name: "1.8.7"), .compat)
        XCTAssertEqual(NftablesForm(name: "compat"), .compat)
        XCTAssertEqual(NftablesForm(name: "1.8.9"), .v1_8_8)
        XCTAssertEqual(NftablesForm(name: "1.8.10"), .v1_8_10)
        XCTAssertEqual(NftablesForm(name: "1.8.13"), .v1_8_10)
        XCTAssertNil(NftablesForm(name: "newest"))
        XCTAssertNil(NftablesForm(name: "1.8"))
    }

    func testEnvironmentOverrideWinsOverTheHost() {
        let d = NftablesForm.detect(environment: ["KNAT_NFT_FORM": "1.8.10"])
        XCTAssertEqual(d.form, .v1_8_10)
        XCTAssertEqual(d.reason, "KNAT_NFT_FORM=1.8.10")
        XCTAssertEqual(NftablesForm.detect(environment: ["KNAT_NFT_FORM": "1.8.7"]).form, .compat)
    }

    // MARK: report

    func testReportCarriesPerTableCountsAndBatchTotals() {
        var r = knft_result()
        r.attempts = 2
        r.messages = 7
        r.batches = 1
        r.read_seconds = 0.5
        r.send_seconds = 0.25
        r.ntables = 2
        withUnsafeMutableBytes(of: &r.tables) { raw in
            let t = raw.bindMemory(to: knft_table_report.self)
            t[0].family = 4
            withUnsafeMutableBytes(of: &t[0].table) { $0.copyBytes(from: "nat".utf8) }
            t[0].chains_created = 1
            t[0].chains_rewritten = 2
            t[0].chains_unchanged = 40
            t[0].chains_deleted = 1
            t[0].rules_written = 3
            t[0].ensured_added = 1
            t[0].rules_deleted = 2
            t[0].messages = 7
            t[1].family = 6
            withUnsafeMutableBytes(of: &t[1].table) { $0.copyBytes(from: "filter".utf8) }
            t[1].chains_unchanged = 5
        }
        let report = NftablesBackend.report(r)
        XCTAssertEqual(report.messages, 7)
        XCTAssertEqual(report.batches, 1)
        XCTAssertEqual(report.tables.count, 2)
        let nat = report.tables[0]
        XCTAssertEqual(nat.family, .ipv4)
        XCTAssertEqual(nat.table, .nat)
        XCTAssertEqual(nat.attempts, 2)
        XCTAssertEqual(nat.chainsCreated, 1)
        XCTAssertEqual(nat.chainsFlushed, 2)
        XCTAssertEqual(nat.chainsUnchanged, 40)
        XCTAssertEqual(nat.chainsDeleted, 1)
        XCTAssertEqual(nat.rulesAppended, 4)
        XCTAssertEqual(nat.rulesDeleted, 2)
        XCTAssertTrue(nat.committed)
        XCTAssertEqual(nat.check, .differed)
        XCTAssertEqual(nat.initSeconds, 0.5)
        XCTAssertEqual(nat.commitSeconds, 0.25)
        let filter = report.tables[1]
        XCTAssertEqual(filter.family, .ipv6)
        XCTAssertEqual(filter.table, .filter)
        XCTAssertFalse(filter.committed, "a table with no messages in the batch was not written")
        XCTAssertEqual(filter.check, .unchanged)
        XCTAssertEqual(filter.initSeconds, 0, "one read serves every table: counted once")
    }

    func testNothingSentMeansNothingCommitted() {
        var r = knft_result()
        r.ntables = 1
        withUnsafeMutableBytes(of: &r.tables) { raw in
            let t = raw.bindMemory(to: knft_table_report.self)
            t[0].family = 4
            withUnsafeMutableBytes(of: &t[0].table) { $0.copyBytes(from: "nat".utf8) }
            t[0].chains_unchanged = 4
        }
        let report = NftablesBackend.report(r)
        XCTAssertEqual(report.messages, 0)
        XCTAssertEqual(report.batches, 0)
        XCTAssertFalse(report.tables[0].committed)
    }

    // MARK: expected digests

    func ruleset(endpoint: String = "10.244.0.2", comment: String = "ns/svc:http") -> Ruleset {
        let sep = Chain(
            "KUBE-SEP-AAAAAAAAAAAAAAAA",
            [
                Rule([.comment(comment), .source(.ip(IPAddress(endpoint)!), negated: false)], .jump("KUBE-MARK-MASQ")),
                Rule([.comment(comment), .proto(.tcp)], .dnat(IPAddress(endpoint)!, port: 80)),
            ])
        let svc = Chain(
            "KUBE-SVC-AAAAAAAAAAAAAAAA",
            [Rule([.comment("\(comment) -> \(endpoint):80")], .jump("KUBE-SEP-AAAAAAAAAAAAAAAA"))])
        let services = Chain(
            "KUBE-SERVICES",
            [
                Rule(
                    [
                        .comment("\(comment) cluster IP"), .proto(.tcp),
                        .destination(.ip(IPAddress("10.0.0.1")!), negated: false), .destinationPort(80),
                    ], .jump("KUBE-SVC-AAAAAAAAAAAAAAAA"))
            ])
        let nat = TableRuleset(
            table: .nat, chains: [services, Chain("KUBE-MARK-MASQ", [Rule([], .markOr(0x4000))]), svc, sep],
            baseJumps: Ownership.upstreamJumps(.nat))
        return Ruleset(family: .ipv4, tables: [nat])
    }

    func testExpectedDigestsCoverEveryDeclaredChainWithItsRuleCount() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        let state = try backend.expectedOwned(self.ruleset())
        let nat = try XCTUnwrap(state.tables[.nat])
        XCTAssertEqual(Set(nat.keys), ["KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-SVC-AAAAAAAAAAAAAAAA", "KUBE-SEP-AAAAAAAAAAAAAAAA"])
        XCTAssertEqual(nat["KUBE-SEP-AAAAAAAAAAAAAAAA"]?.ruleCount, 2)
        XCTAssertEqual(nat["KUBE-MARK-MASQ"]?.ruleCount, 1)
    }

    func testAChangedRuleChangesOnlyItsChainsDigest() throws {
        let backend = NftablesBackend(form: .v1_8_8)
        let a = try backend.expectedOwned(self.ruleset()).tables[.nat]!
        let b = try backend.expectedOwned(self.ruleset(endpoint: "10.244.0.3")).tables[.nat]!
        XCTAssertNotEqual(a["KUBE-SEP-AAAAAAAAAAAAAAAA"], b["KUBE-SEP-AAAAAAAAAAAAAAAA"])
        XCTAssertNotEqual(a["KUBE-SVC-AAAAAAAAAAAAAAAA"], b["KUBE-SVC-AAAAAAAAAAAAAAAA"])
        XCTAssertEqual(a["KUBE-SERVICES"], b["KUBE-SERVICES"])
        XCTAssertEqual(a["KUBE-MARK-MASQ"], b["KUBE-MARK-MASQ"])
    }

    func testDigestsDependOnTheForm() throws {
        // The same rule is other expressions in another form, so rules written in one form are rewritten when
        // the host's iptables changes release.
        let a = try NftablesBackend(form: .v1_8_8).expectedOwned(self.ruleset()).tables[.nat]!
        let b = try NftablesBackend(form: .v1_8_10).expectedOwned(self.ruleset()).tables[.nat]!
        XCTAssertNotEqual(a["KUBE-SERVICES"], b["KUBE-SERVICES"])
    }

    func testAnUnencodableRuleIsAnEncodingErrorNamingItsPlace() {
        var rs = self.ruleset()
        rs.tables[0].chains[0].rules.append(Rule([.destinationPort(70000), .proto(.tcp)], .accept))
        XCTAssertThrowsError(try NftablesBackend(form: .v1_8_8).expectedOwned(rs)) { error in
            XCTAssertTrue("\(error)".contains("KUBE-SERVICES rule 2"), "\(error)")
        }
    }

    // MARK: programs

    func testJumpsKubeProxyWroteIntoDeletedChainsAreDeletedToo() throws {
        var table = TableRuleset(table: .filter, deletedChains: ["KUBE-PROXY-FIREWALL"])
        table.chains = [Chain("KUBE-SERVICES")]
        var program = TableProgram(family: .ipv4)
        try NftablesBackend.encode(table, into: &program)
        let ops = Self.operations(program.bytes)
        // INPUT, OUTPUT and FORWARD each have upstream's jump to KUBE-PROXY-FIREWALL
        XCTAssertEqual(ops.filter { $0 == "delete-rule" }.count, 3)
        XCTAssertEqual(ops.filter { $0 == "delete-chain" }.count, 1)
    }

    func testCleanupDeletesOwnJumpsServiceChainsAndFixedChainsOnly() throws {
        var program = TableProgram(family: .ipv4)
        try NftablesBackend.encodeCleanup(.filter, into: &program)
        let ops = Self.operations(program.bytes)
        XCTAssertEqual(ops.filter { $0 == "delete-own-jumps" }.count, 1)
        // the iptables mode's 9 jumps and the IPVS mode's 6 (FORWARD -> KUBE-FORWARD is the same rule in both)
        XCTAssertEqual(ops.filter { $0 == "delete-rule" }.count, 9 + 6 - 1)
        XCTAssertEqual(ops.filter { $0 == "delete-rule" }.count, ProxyModeLeftovers.cleanupJumps(.filter).count)
        XCTAssertEqual(ops.filter { $0 == "delete-chain" }.count, ProxyModeLeftovers.cleanupChains(.filter).count)
        XCTAssertFalse(ProxyModeLeftovers.cleanupChains(.filter).contains(Ownership.kubeletFirewall))
    }

    func testCleanupDeletesTheIPVSModesChainsAndJumpsInEveryTable() throws {
        for (table, chains) in ProxyModeLeftovers.ipvsChains {
            var program = TableProgram(family: .ipv4)
            try NftablesBackend.encodeCleanup(table, into: &program)
            let deleted = Self.deletedChains(program.bytes)
            for chain in chains { XCTAssertTrue(deleted.contains(chain), "\(table.rawValue) \(chain) not deleted") }
            XCTAssertFalse(deleted.contains(Ownership.kubeletMarkDrop))
        }
        XCTAssertEqual(ProxyModeLeftovers.cleanupJumps(.nat), Ownership.upstreamJumps(.nat), "the IPVS mode's nat jumps are the iptables mode's")
    }

    /// The chains a program deletes, by name.
    static func deletedChains(_ bytes: [UInt8]) -> [String] {
        var out: [String] = []
        var i = 0
        while i + 4 <= bytes.count {
            let kind = Int(bytes[i]) | Int(bytes[i + 1]) << 8
            let length = Int(bytes[i + 2]) | Int(bytes[i + 3]) << 8
            if Int32(kind) == Int32(KNAT_OP_DELETE_CHAIN) {
                out.append(String(decoding: bytes[(i + 4)..<(i + 4 + length)], as: UTF8.self))
            }
            i += 4 + length
        }
        return out
    }

    /// The table-level operations of a program, by name.
    static func operations(_ bytes: [UInt8]) -> [String] {
        var out: [String] = []
        var i = 0
        while i + 4 <= bytes.count {
            let kind = Int(bytes[i]) | Int(bytes[i + 1]) << 8
            let length = Int(bytes[i + 2]) | Int(bytes[i + 3]) << 8
            switch Int32(kind) {
            case Int32(KNAT_OP_STALE_PREFIX): out.append("stale-prefix")
            case Int32(KNAT_OP_CHAIN): out.append("chain")
            case Int32(KNAT_OP_DELETE_CHAIN): out.append("delete-chain")
            case Int32(KNAT_OP_JUMP): out.append("jump")
            case Int32(KNAT_OP_DELETE_RULE): out.append("delete-rule")
            case Int32(KNAT_OP_ENSURE_RULE): out.append("ensure-rule")
            case Int32(KNAT_OP_DELETE_OWN_JUMPS): out.append("delete-own-jumps")
            default: break
            }
            i += 4 + length
        }
        return out
    }
}
