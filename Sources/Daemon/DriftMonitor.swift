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

    /// Canary chains missing from the kernel.
    public static func missingCanaries(family: IPFamily) -> [Finding] {
        var out: [Finding] = []
        for table in [Table.mangle, .nat, .filter] {
            let chains = (try? TableReader.chains(family: family, table: table)) ?? []
            if !chains.contains(where: { $0.name == ChainNames.canary }) {
                out.append(Finding(family: family, table: table, chains: [ChainNames.canary]))
            }
        }
        return out
    }

    /// Owned chains whose rules differ from the ruleset that was committed (missing, flushed, edited).
    public static func drift(expected ruleset: Ruleset) -> [Finding] {
        var out: [Finding] = []
        for table in ruleset.tables {
            guard let want = try? TableReader.expectedChains(family: ruleset.family, table: table),
                  let have = try? TableReader.chains(family: ruleset.family, table: table.table)
            else { continue }
            let actual = Dictionary(have.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            let wrong = want.filter { !$0.isBuiltin && actual[$0.name] != $0 }.map(\.name)
            if !wrong.isEmpty { out.append(Finding(family: ruleset.family, table: table.table, chains: wrong)) }
        }
        return out
    }
}
