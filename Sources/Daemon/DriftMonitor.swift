import KubeModel
import Logging
import Netfilter
import Ruleset

/// Checks, every syncPeriod, that the kernel still holds what was last committed.
///
/// Upstream only watches KUBE-PROXY-CANARY chains (and missed a flushed nat table, kubernetes #129128). Here the
/// canaries are checked in mangle, nat and filter, and each owned chain is read back through libiptc and
/// compared by digest with what the last commit wrote, so a flushed KUBE-SERVICES or a deleted SEP chain is
/// found too.
public struct DriftMonitor {
    /// What drifted, for one log line and the repair counter.
    public struct Finding: Equatable, CustomStringConvertible {
        public var family: IPFamily
        public var table: Table
        public var chains: [String]
        public var description: String {
            "\(family.rawValue) \(table.rawValue): \(chains.prefix(5).joined(separator: ", "))\(chains.count > 5 ? " and \(chains.count - 5) more" : "")"
        }
    }

    /// Canary chains missing from the kernel, and owned chains whose rules differ from the ruleset that was
    /// last committed (missing, flushed, edited). Each table is read once: at 10k Services a read of nat is a
    /// few hundred milliseconds of kernel time.
    public static func check(family: IPFamily, expected ruleset: Ruleset?) -> [Finding] {
        var out: [Finding] = []
        for table in [Table.mangle, .nat, .filter] {
            let have = (try? TableReader.chains(family: family, table: table)) ?? []
            if !have.contains(where: { $0.name == Ownership.canary }) {
                out.append(Finding(family: family, table: table, chains: [Ownership.canary]))
            }
            guard let wanted = ruleset?[table],
                  let want = try? TableReader.expectedChains(family: family, table: wanted)
            else { continue }
            let actual = Dictionary(have.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            let wrong = want.filter { !$0.isBuiltin && actual[$0.name] != $0 }.map(\.name)
            if !wrong.isEmpty { out.append(Finding(family: family, table: table, chains: wrong)) }
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
