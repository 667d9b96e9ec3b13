import KubeModel
import Netfilter
import Ruleset

/// Checks, every syncPeriod, that the kernel still holds what was last committed, through any backend.
///
/// Upstream only watches KUBE-PROXY-CANARY chains (and missed a flushed nat table, kubernetes #129128). Here the
/// canaries are checked in mangle, nat and filter, and every owned chain the backend reads back is compared with
/// what the backend says the last committed ruleset looks like in the kernel, so a flushed KUBE-SERVICES or a
/// deleted SEP chain is found too.
public enum DriftMonitor {
    /// What drifted, for one log line and the repair counter.
    public struct Finding: Equatable, CustomStringConvertible, Sendable {
        public var family: IPFamily
        public var table: Table
        public var chains: [String]
        public var description: String {
            "\(family.rawValue) \(table.rawValue): \(chains.prefix(5).joined(separator: ", "))\(chains.count > 5 ? " and \(chains.count - 5) more" : "")"
        }
    }

    /// Missing canaries, and declared chains whose rules differ from the rulesets last committed (missing,
    /// flushed, edited). A backend that cannot read a family is reported as an error, not as drift.
    public static func check(_ backend: KernelBackend, committed: [Ruleset], families: [IPFamily]) throws -> [Finding] {
        var out: [Finding] = []
        for family in families {
            let have = try backend.readOwned(family: family)
            for table in Ownership.canaryTables where !have.hasCanary(table) {
                out.append(Finding(family: family, table: table, chains: [Ownership.canary]))
            }
            guard let ruleset = committed.first(where: { $0.family == family }) else { continue }
            let want = try backend.expectedOwned(ruleset)
            for table in ruleset.tables {
                let actual = have.tables[table.table] ?? [:]
                let expected = want.tables[table.table] ?? [:]
                let wrong = table.chains.map(\.name).filter { actual[$0] != expected[$0] }
                if !wrong.isEmpty { out.append(Finding(family: family, table: table.table, chains: wrong)) }
            }
        }
        return out
    }

    /// What a full sync's own apply rewrote, when nothing had changed since the last commit: that is drift the
    /// sync has just repaired (chains recreated or refilled, stale chains or stray jumps removed).
    public static func repaired(by report: ApplyReport) -> [Finding] {
        report.tables.compactMap { t in
            let n = t.chainsCreated + t.chainsFlushed + t.chainsDeleted + t.jumpsInserted + t.rulesDeleted
            guard n > 0 else { return nil }
            var what: [String] = []
            if t.chainsCreated > 0 { what.append("\(t.chainsCreated) chain(s) recreated") }
            if t.chainsFlushed > 0 { what.append("\(t.chainsFlushed) chain(s) refilled") }
            if t.chainsDeleted > 0 { what.append("\(t.chainsDeleted) chain(s) deleted") }
            if t.jumpsInserted + t.rulesDeleted > 0 { what.append("base-chain jumps restored") }
            return Finding(family: t.family, table: t.table, chains: what)
        }
    }
}
