import KubeModel

/// What kube-natd owns in the kernel, stated once. The compiler declares chains from these names, every backend
/// garbage-collects by them, `--cleanup` removes exactly them, and drift checks look at them.
///
/// kube-natd owns: the fixed chains below (flushed and refilled when declared, deleted when the layout in use does
/// not declare them and by `--cleanup`), every chain with a service prefix (garbage-collected when no longer
/// declared), the canary chains, and its own jump rules in base chains (kept once each, at the top). It never
/// owns a base chain, a policy, or a rule it did not write.
public enum Ownership {
    // The fixed chains, as upstream names them.
    public static let services = "KUBE-SERVICES"
    public static let externalServices = "KUBE-EXTERNAL-SERVICES"
    public static let forward = "KUBE-FORWARD"
    public static let nodePorts = "KUBE-NODEPORTS"
    public static let postrouting = "KUBE-POSTROUTING"
    public static let markMasq = "KUBE-MARK-MASQ"

    // The per-service-port chain prefixes (the rest of the name is upstream's hash).
    public static let svcPrefix: StaticString = "KUBE-SVC-"
    public static let svlPrefix: StaticString = "KUBE-SVL-"
    public static let extPrefix: StaticString = "KUBE-EXT-"
    public static let fwPrefix: StaticString = "KUBE-FW-"
    public static let sepPrefix: StaticString = "KUBE-SEP-"
    /// v1.23's externalTrafficPolicy Local chain.
    public static let xlbPrefix: StaticString = "KUBE-XLB-"

    /// Per-service-port chain prefixes of either layout (upstream's `isServiceChainName`, plus v1.23's KUBE-XLB).
    public static let servicePrefixes = [svcPrefix, svlPrefix, extPrefix, fwPrefix, sepPrefix, xlbPrefix].map(\.description)

    /// True for a per-service chain, which kube-natd owns and garbage-collects.
    public static func isServiceChain(_ name: String) -> Bool {
        servicePrefixes.contains { name.hasPrefix($0) }
    }

    /// The fixed chains either layout declares, per table. A layout that does not use one of them lists it as a
    /// deleted chain, so switching layouts leaves nothing of the other behind.
    public static let fixedChains: [Table: [String]] = [
        .filter: [services, externalServices, forward, nodePorts, proxyFirewall],
        .nat: [services, nodePorts, postrouting, markMasq],
        .mangle: [],
    ]

    /// Empty chains whose disappearance tells that someone flushed kube-natd's tables (upstream's canary).
    public static let canary = "KUBE-PROXY-CANARY"
    /// The tables that hold a canary.
    public static let canaryTables: [Table] = [.mangle, .nat, .filter]

    /// kubelet's firewall chain (filter). The current layout writes kube-proxy's own copy of its localnet rule
    /// there (a declared chain); the v1.23 layout only ensures kubelet's rules in it. `--cleanup` leaves it.
    public static let kubeletFirewall = "KUBE-FIREWALL"
    /// kubelet's drop-mark chain (nat), which only the v1.23 layout uses (ensured, never owned).
    public static let kubeletMarkDrop = "KUBE-MARK-DROP"
    /// The mark kubelet's KUBE-MARK-DROP sets and its KUBE-FIREWALL drops: `1 << 15`, kubelet's default
    /// `--iptables-drop-bit` (legacy-layout §2.2). The v1.23 layout ensures kubelet's rules with this mark.
    public static let kubeletDropMark: UInt32 = 1 << 15

    /// kube-proxy's load-balancer source-range firewall (filter), declared by the current layout only; the
    /// v1.23 layout lists it as deleted and does not install the jumps to it.
    public static let proxyFirewall = "KUBE-PROXY-FIREWALL"

    /// The built-in chains. kube-natd never owns one: it keeps its jumps first in them and adds ensured rules
    /// right after those jumps (`EnsuredRule`).
    public static let baseChains: Set<String> = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]

    /// True for every chain a backend reads back for drift checks: the fixed, per-service and canary chains, and
    /// the kubelet chains a layout writes into (a ruleset may declare or ensure rules in them).
    public static func isReadBack(_ name: String) -> Bool {
        guard name.hasPrefix("KUBE-") else { return false }
        return isServiceChain(name) || name == canary || name == kubeletFirewall || name == kubeletMarkDrop
            || fixedChains.values.contains { $0.contains(name) }
    }

    /// Chains `--cleanup` removes from a table (every service chain goes too): the fixed chains and the canary.
    public static func cleanupChains(_ table: Table) -> [String] {
        (fixedChains[table] ?? []) + [canary]
    }

    /// The base-chain jumps upstream kube-proxy installs (`iptablesJumpChains`, reference §1.2), in list order.
    /// The compiler orders them as upstream's prepends leave them; `--cleanup` deletes each wherever it is.
    public static func upstreamJumps(_ table: Table) -> [BaseChainJump] {
        switch table {
        case .filter:
            [
                jump("INPUT", externalServices, "kubernetes externally-visible service portals", newOnly: true),
                jump(
                    "FORWARD", externalServices, "kubernetes externally-visible service portals", newOnly: true),
                jump("INPUT", nodePorts, "kubernetes health check service ports", newOnly: false),
                jump("FORWARD", services, "kubernetes service portals", newOnly: true),
                jump("OUTPUT", services, "kubernetes service portals", newOnly: true),
                jump("FORWARD", forward, "kubernetes forwarding rules", newOnly: false),
                jump("INPUT", proxyFirewall, "kubernetes load balancer firewall", newOnly: true),
                jump("OUTPUT", proxyFirewall, "kubernetes load balancer firewall", newOnly: true),
                jump("FORWARD", proxyFirewall, "kubernetes load balancer firewall", newOnly: true),
            ]
        case .nat:
            [
                jump("OUTPUT", services, "kubernetes service portals", newOnly: false),
                jump("PREROUTING", services, "kubernetes service portals", newOnly: false),
                jump("POSTROUTING", postrouting, "kubernetes postrouting rules", newOnly: false),
            ]
        case .mangle: []
        }
    }

    /// The base-chain jumps kube-proxy v1.23 installs (`iptablesJumpChains`, legacy-layout §1.3): upstream's
    /// list without the KUBE-PROXY-FIREWALL jumps, which came with that chain in 1.25 (#110289). A subset of
    /// `upstreamJumps`, so deleting those (as `--cleanup` does) removes either layout's jumps. kubelet's own
    /// `-j KUBE-FIREWALL` jumps are not here: the v1.23 layout only ensures them (`EnsuredRule`).
    public static func v1_23Jumps(_ table: Table) -> [BaseChainJump] {
        upstreamJumps(table).filter { $0.rule.target != .jump(proxyFirewall) }
    }

    static func jump(_ base: String, _ to: String, _ comment: String, newOnly: Bool) -> BaseChainJump {
        var matches: [Match] = []
        if newOnly { matches.append(.conntrackState([.new], negated: false)) }
        matches.append(.comment(comment))
        return BaseChainJump(baseChain: base, rule: Rule(matches, .jump(to)))
    }
}
