import KubeModel
import ProxyConfig
import Ruleset

/// Puts fragments and the fixed rules together in upstream's chain and rule order: `add` each Service's
/// fragment in order, then take the `ruleset()`.
struct Assembly {
    let settings: NodeSettings

    private var filterServices: [Rule] = []
    private var filterExternalServices: [Rule] = []
    private var filterNodePorts: [Rule] = []
    private var filterProxyFirewall: [Rule] = []
    private var natServices: [Rule] = []
    private var natNodePorts: [Rule] = []
    /// The fixed nat chains (filled in by `ruleset()`), then each Service's own chains as they are added.
    private var natChains = [Chain("KUBE-SERVICES"), Chain("KUBE-NODEPORTS"), Chain("KUBE-POSTROUTING"),
                             Chain("KUBE-MARK-MASQ")]

    /// `services` sizes the shared chains (about two KUBE-SERVICES rules and five chains per Service).
    init(settings: NodeSettings, services: Int = 0) {
        self.settings = settings
        natServices.reserveCapacity(services * 2 + 4)
        natChains.reserveCapacity(natChains.count + services * 5)
    }

    var mark: UInt32 { settings.masqueradeMark }
    var isIPv4: Bool { settings.family == .ipv4 }
    /// KUBE-FIREWALL (kubelet's anti-martian duplicate) exists for IPv4 with localhost NodePorts.
    var writesKubeletFirewall: Bool { isIPv4 && settings.localhostNodePorts }

    /// Appends one Service's rules to the shared chains and its own chains after the others.
    mutating func add(_ f: ServiceFragment) {
        filterServices.append(contentsOf: f.filterServices)
        filterExternalServices.append(contentsOf: f.filterExternalServices)
        filterNodePorts.append(contentsOf: f.filterNodePorts)
        filterProxyFirewall.append(contentsOf: f.filterProxyFirewall)
        natServices.append(contentsOf: f.natServices)
        natNodePorts.append(contentsOf: f.natNodePorts)
        natChains.append(contentsOf: f.natChains)
    }

    /// The assembled ruleset. Moves the chains out rather than copying them (which would retain every rule
    /// again and leave the result shared, so that later in-place patches would copy it); the assembly is
    /// left empty.
    mutating func ruleset() -> Ruleset {
        Ruleset(family: settings.family, tables: [filter(), nat()])
    }

    func filter() -> TableRuleset {
        var chains = [
            Chain("KUBE-SERVICES", filterServices),
            Chain("KUBE-EXTERNAL-SERVICES", filterExternalServices),
            Chain("KUBE-FORWARD", forwardRules()),
            Chain("KUBE-NODEPORTS", filterNodePorts),
            Chain("KUBE-PROXY-FIREWALL", filterProxyFirewall),
        ]
        if writesKubeletFirewall {
            chains.append(Chain("KUBE-FIREWALL", [Rule([
                .comment("block incoming localnet connections"),
                .destination(.cidr(CIDR("127.0.0.0/8")!), negated: false),
                .source(.cidr(CIDR("127.0.0.0/8")!), negated: true),
                .conntrackState([.related, .established, .dnat], negated: true),
            ], .drop)]))
        }
        return TableRuleset(table: .filter, chains: chains, baseJumps: BaseJumps.filter(kubeletFirewall: writesKubeletFirewall))
    }

    func forwardRules() -> [Rule] {
        var rules: [Rule] = []
        // Without tcp_be_liberal, INVALID packets can reset connections (kubernetes #74839, #117924).
        if !settings.conntrackTCPBeLiberal {
            var m: [Match] = [.conntrackState([.invalid], negated: false)]
            if settings.features.nfacctCounters { m.append(.nfacct(name: "ct_state_invalid_dropped_pkts")) }
            rules.append(Rule(m, .drop))
        }
        rules.append(Rule([.comment("kubernetes forwarding rules"), .mark(value: mark, mask: mark, negated: false)], .accept))
        rules.append(Rule([.comment("kubernetes forwarding conntrack rule"),
                           .conntrackState([.related, .established], negated: false)], .accept))
        return rules
    }

    mutating func nat() -> TableRuleset {
        natServices.append(contentsOf: nodePortsTailRules())
        natChains[0].rules = natServices
        natChains[1].rules = natNodePorts
        natChains[2].rules = [
            Rule([.mark(value: mark, mask: mark, negated: true)], .return),
            // Clear the mark so a packet that re-traverses the stack is not masqueraded twice.
            Rule([], .markXor(mark)),
            Rule([.comment("kubernetes service traffic requiring SNAT")],
                 .masquerade(randomFully: settings.features.randomFully)),
        ]
        natChains[3].rules = [Rule([], .markOr(mark))]
        natServices = []
        natNodePorts = []
        let chains = natChains
        natChains = []
        return TableRuleset(table: .nat, chains: chains, baseJumps: BaseJumps.nat)
    }

    /// The last rule(s) of nat KUBE-SERVICES: hand locally-addressed traffic to KUBE-NODEPORTS.
    func nodePortsTailRules() -> [Rule] {
        let comment = Match.comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
        switch settings.nodePortAddresses {
        case .all:
            var m: [Match] = [comment, .addrTypeLocal(.destination)]
            // Localhost NodePorts never work on IPv6, and on IPv4 only with route_localnet.
            if !isIPv4 {
                m.append(.destination(.cidr(CIDR("::1/128")!), negated: true))
            } else if !settings.localhostNodePorts {
                m.append(.destination(.cidr(CIDR("127.0.0.0/8")!), negated: true))
            }
            return [Rule(m, .jump("KUBE-NODEPORTS"))]
        case .addresses(let ips):
            return ips.filter { $0.family == settings.family }
                .filter { !$0.isLoopback || (isIPv4 && settings.localhostNodePorts) }
                .map { Rule([comment, .destination(.ip($0), negated: false)], .jump("KUBE-NODEPORTS")) }
        }
    }
}

/// The jumps from base chains, in the order they end up in on a fresh node: upstream prepends each
/// (`EnsureRule(Prepend)`) in list order, so per base chain the last listed comes first, and kubelet's
/// KUBE-FIREWALL jumps, ensured afterwards, end up first of all.
public enum BaseJumps {
    /// kubelet's jumps to KUBE-FIREWALL: no comment, no match.
    static func kubeletJump(_ base: String) -> BaseChainJump {
        BaseChainJump(baseChain: base, rule: Rule([], .jump("KUBE-FIREWALL")))
    }

    /// Final order after prepending each listed jump: grouped by base chain, reversed within it.
    static func finalOrder(_ list: [BaseChainJump], prependedLast: [BaseChainJump] = []) -> [BaseChainJump] {
        var order: [String] = []
        for j in list + prependedLast where !order.contains(j.baseChain) { order.append(j.baseChain) }
        var out: [BaseChainJump] = []
        for base in order {
            out += prependedLast.filter { $0.baseChain == base }.reversed()
            out += list.filter { $0.baseChain == base }.reversed()
        }
        return out
    }

    public static func filter(kubeletFirewall: Bool) -> [BaseChainJump] {
        let kubelet = kubeletFirewall ? [kubeletJump("INPUT"), kubeletJump("OUTPUT")] : []
        return finalOrder(Ownership.upstreamJumps(.filter), prependedLast: kubelet)
    }

    public static let nat: [BaseChainJump] = finalOrder(Ownership.upstreamJumps(.nat))
}
