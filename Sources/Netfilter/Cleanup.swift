import Foundation
import CNetfilter
import KubeModel
import Ruleset

/// `--cleanup` through libiptc: removes what `Ownership` says kube-proxy / kube-natd own (reference §1.11) and the
/// chains and jumps of kube-proxy's IPVS mode (`ProxyModeLeftovers`), one libiptc commit per table. Every service chain goes; kubelet's KUBE-FIREWALL and KUBE-MARK-DROP stay.
public enum Cleanup {
    /// Opening a legacy table with libiptc instantiates it; a table the kernel does not list holds nothing of ours.
    static func tableExists(_ table: Table, family: IPFamily) -> Bool {
        let names = family == .ipv4 ? "/proc/net/ip_tables_names" : "/proc/net/ip6_tables_names"
        guard let text = try? String(contentsOfFile: names, encoding: .utf8) else { return true }
        return text.split(separator: "\n").contains { $0 == table.rawValue }
    }

    /// Runs cleanup for each family with the program every backend plans (`TableProgram.encodeCleanup`); jumps are
    /// matched exactly, so foreign rules stay.
    @discardableResult
    public static func run(
        families: [IPFamily], extraJumps: [Table: [BaseChainJump]] = [:],
        lockTimeoutMilliseconds: Int32 = 5000
    ) throws -> [ApplyReport] {
        var reports: [ApplyReport] = []
        for family in families {
            var report = ApplyReport()
            for table in [Table.nat, .filter, .mangle] where Self.tableExists(table, family: family) {
                var program = TableProgram(family: family, capacity: 4096)
                do {
                    try program.encodeCleanup(table, extraJumps: extraJumps[table] ?? [])
                } catch {
                    throw NetfilterError.encoding(error)
                }
                report.tables.append(
                    try LibiptcBackend.run(
                        program, family: family, table: table,
                        lockTimeout: lockTimeoutMilliseconds, attempts: 5))
            }
            reports.append(report)
        }
        return reports
    }
}
