import KubeModel

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
