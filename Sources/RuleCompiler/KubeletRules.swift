import KubeModel
import Ruleset

/// The kubelet rules kube-proxy v1.23 relied on (legacy-layout §2.2, kubelet's `syncIPTablesRules` with
/// `--make-iptables-util-chains`, its default). kube-proxy's `-j KUBE-MARK-DROP` rules only drop because kubelet
/// marks the packet there and its filter KUBE-FIREWALL drops marked packets; kube-proxy itself only made sure the
/// chain existed. The v1.23 layout ensures these rules instead of owning them: kubelet may write the same rules
/// (then nothing is added), and neither a sync nor `--cleanup` removes them from under it.
enum KubeletRules {
    /// `-A KUBE-MARK-DROP -j MARK --or-mark 0x8000`.
    static let nat: [EnsuredRule] = [
        EnsuredRule(chain: Ownership.kubeletMarkDrop, rule: Rule([], .markOr(Ownership.kubeletDropMark)))
    ]

    /// kubelet's filter rules in its order: the KUBE-FIREWALL mark drop, the localnet block (IPv4 only: kubelet
    /// skips it for IPv6, "ipv6 doesn't have this issue"), then `-j KUBE-FIREWALL` from OUTPUT and INPUT (no
    /// FORWARD jump, so a marked packet that is forwarded is not dropped by kubelet's rule). Both families get
    /// the rest, as kubelet runs it for each of its iptables clients.
    static func filter(family: IPFamily) -> [EnsuredRule] {
        let mark = Ownership.kubeletDropMark
        var rules = [
            EnsuredRule(
                chain: Ownership.kubeletFirewall,
                rule: Rule(
                    [
                        .comment("kubernetes firewall for dropping marked packets"),
                        .mark(value: mark, mask: mark, negated: false),
                    ], .drop))
        ]
        if family == .ipv4 { rules.append(EnsuredRule(chain: Ownership.kubeletFirewall, rule: localnetDrop)) }
        rules.append(EnsuredRule(chain: "OUTPUT", rule: Rule([], .jump(Ownership.kubeletFirewall))))
        rules.append(EnsuredRule(chain: "INPUT", rule: Rule([], .jump(Ownership.kubeletFirewall))))
        return rules
    }

    /// kubelet's "block incoming localnet connections" rule (kubernetes #90259: with route_localnet, a remote
    /// host could otherwise reach services bound to 127.0.0.1). Today's layout writes it into kube-proxy's own
    /// copy of KUBE-FIREWALL; v1.23 ensures kubelet's.
    static let localnetDrop = Rule(
        [
            .comment("block incoming localnet connections"),
            .destination(.cidr(CIDR("127.0.0.0/8")!), negated: false),
            .source(.cidr(CIDR("127.0.0.0/8")!), negated: true),
            .conntrackState([.related, .established, .dnat], negated: true),
        ], .drop)
}
