import Foundation
import CNetfilter
import KubeModel
import Ruleset

/// The base-chain jumps upstream kube-proxy installs (`iptablesJumpChains`, reference §1.2), in list order.
public enum UpstreamJumps {
    static func jump(_ base: String, _ to: String, _ comment: String, newOnly: Bool) -> BaseChainJump {
        var matches: [Match] = []
        if newOnly { matches.append(.conntrackState([.new], negated: false)) }
        matches.append(.comment(comment))
        return BaseChainJump(baseChain: base, rule: Rule(matches, .jump(to)))
    }

    /// The jumps of one table; `KUBE-FIREWALL` (kubelet's) is not among them.
    public static func jumps(_ table: Table) -> [BaseChainJump] {
        switch table {
        case .filter:
            [
                jump("INPUT", "KUBE-EXTERNAL-SERVICES", "kubernetes externally-visible service portals", newOnly: true),
                jump(
                    "FORWARD", "KUBE-EXTERNAL-SERVICES", "kubernetes externally-visible service portals", newOnly: true),
                jump("INPUT", "KUBE-NODEPORTS", "kubernetes health check service ports", newOnly: false),
                jump("FORWARD", "KUBE-SERVICES", "kubernetes service portals", newOnly: true),
                jump("OUTPUT", "KUBE-SERVICES", "kubernetes service portals", newOnly: true),
                jump("FORWARD", "KUBE-FORWARD", "kubernetes forwarding rules", newOnly: false),
                jump("INPUT", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", newOnly: true),
                jump("OUTPUT", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", newOnly: true),
                jump("FORWARD", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", newOnly: true),
            ]
        case .nat:
            [
                jump("OUTPUT", "KUBE-SERVICES", "kubernetes service portals", newOnly: false),
                jump("PREROUTING", "KUBE-SERVICES", "kubernetes service portals", newOnly: false),
                jump("POSTROUTING", "KUBE-POSTROUTING", "kubernetes postrouting rules", newOnly: false),
            ]
        case .mangle: []
        }
    }
}

/// `--cleanup`: removes what kube-proxy / kube-natd created (reference §1.11), one libiptc commit per table.
public enum Cleanup {
    /// Chains removed per table; every KUBE-SVC/SVL/EXT/FW/SEP-* chain in nat goes too. KUBE-FIREWALL stays.
    public static let chains: [Table: [String]] = [
        .nat: ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", ChainNames.canary],
        .filter: [
            "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL",
            ChainNames.canary,
        ],
        .mangle: [ChainNames.canary],
    ]

    /// Opening a legacy table with libiptc instantiates it; a table the kernel does not list holds nothing of ours.
    static func tableExists(_ table: Table, family: IPFamily) -> Bool {
        let names = family == .ipv4 ? "/proc/net/ip_tables_names" : "/proc/net/ip6_tables_names"
        guard let text = try? String(contentsOfFile: names, encoding: .utf8) else { return true }
        return text.split(separator: "\n").contains { $0 == table.rawValue }
    }

    /// Runs cleanup for each family; jumps are matched exactly, so foreign rules stay.
    @discardableResult
    public static func run(
        families: [IPFamily], extraJumps: [Table: [BaseChainJump]] = [:],
        lockTimeoutMilliseconds: Int32 = 5000
    ) throws -> [ApplyReport] {
        var reports: [ApplyReport] = []
        for family in families {
            var report = ApplyReport(family: family)
            for table in [Table.nat, .filter, .mangle] where Self.tableExists(table, family: family) {
                var program = TableProgram(family: family, capacity: 4096)
                do {
                    for jump in UpstreamJumps.jumps(table) + (extraJumps[table] ?? []) {
                        try program.deleteRule(in: jump.baseChain, jump.rule, table: table)
                    }
                } catch {
                    throw NetfilterError.encoding(error)
                }
                if table == .nat { for p in ChainNames.servicePrefixes { program.stalePrefix(p) } }
                for name in chains[table] ?? [] { program.deleteChain(name) }
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
