import KubeModel
import ProxyConfig
import Ruleset

/// Puts fragments and the fixed rules together in upstream's chain and rule order: `add` each Service's
/// fragment in order, then take the `ruleset()`. The fixed chains, fixed rules and base jumps are the layout's
/// (`NodeSettings.ruleLayout`); a fixed chain of `Ownership.fixedChains` the layout does not declare is listed as
/// deleted, so switching layouts on a running node leaves nothing of the other behind.
struct Assembly {
    let settings: NodeSettings

    private var filterServices: [Rule] = []
    private var filterExternalServices: [Rule] = []
    private var filterNodePorts: [Rule] = []
    private var filterProxyFirewall: [Rule] = []
    private var natServices: [Rule] = []
    private var natNodePorts: [Rule] = []
    /// The fixed nat chains (filled in by `ruleset()`), then each Service's own chains as they are added.
    private var natChains = [Chain(Ownership.services), Chain(Ownership.nodePorts), Chain(Ownership.postrouting),
                             Chain(Ownership.markMasq)]

    /// `services` sizes the shared chains (about two KUBE-SERVICES rules and five chains per Service).
    init(settings: NodeSettings, services: Int = 0) {
        self.settings = settings
        natServices.reserveCapacity(services * 2 + 4)
        natChains.reserveCapacity(natChains.count + services * 5)
    }

    var mark: UInt32 { settings.masqueradeMark }
    var isIPv4: Bool { settings.family == .ipv4 }
    var isV1_23: Bool { settings.ruleLayout == .v1_23 }
    /// KUBE-FIREWALL (kubelet's anti-martian duplicate) is declared for IPv4 with localhost NodePorts, in today's
    /// layout only: v1.23 relies on kubelet's own chain, which it ensures and never declares.
    var writesKubeletFirewall: Bool { !isV1_23 && isIPv4 && settings.localhostNodePorts }

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
            Chain(Ownership.services, filterServices),
            Chain(Ownership.externalServices, filterExternalServices),
            Chain(Ownership.forward, forwardRules()),
            Chain(Ownership.nodePorts, filterNodePorts),
        ]
        // v1.23 dropped source-range misses in nat (KUBE-FW ends in KUBE-MARK-DROP); KUBE-PROXY-FIREWALL is 1.25's.
        if !isV1_23 { chains.append(Chain(Ownership.proxyFirewall, filterProxyFirewall)) }
        if writesKubeletFirewall { chains.append(Chain(Ownership.kubeletFirewall, [KubeletRules.localnetDrop])) }
        let jumps = isV1_23 ? BaseJumps.v1_23Filter : BaseJumps.filter(kubeletFirewall: writesKubeletFirewall)
        return TableRuleset(
            table: .filter, chains: chains, baseJumps: jumps, deletedChains: Self.undeclaredFixedChains(.filter, chains),
            ensured: isV1_23 ? KubeletRules.filter(family: settings.family) : [])
    }

    /// The fixed chains either layout may own that this one does not declare.
    static func undeclaredFixedChains(_ table: Table, _ chains: [Chain]) -> [String] {
        (Ownership.fixedChains[table] ?? []).filter { name in !chains.contains { $0.name == name } }
    }

    func forwardRules() -> [Rule] {
        var rules: [Rule] = []
        // Without tcp_be_liberal, INVALID packets can reset connections (kubernetes #74839, #117924). v1.23
        // wrote the drop unconditionally and had no nfacct counter (legacy-layout §2.1).
        if isV1_23 || !settings.conntrackTCPBeLiberal {
            var m: [Match] = [.conntrackState([.invalid], negated: false)]
            if !isV1_23 && settings.features.nfacct.contains(.ctStateInvalidDropped) {
                m.append(.nfacct(name: NFAcctCounter.ctStateInvalidDropped.rawValue))
            }
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
        return TableRuleset(
            table: .nat, chains: chains, baseJumps: BaseJumps.nat,
            deletedChains: Self.undeclaredFixedChains(.nat, chains), ensured: isV1_23 ? KubeletRules.nat : [])
    }

    /// The last rule(s) of nat KUBE-SERVICES: hand locally-addressed traffic to KUBE-NODEPORTS.
    func nodePortsTailRules() -> [Rule] {
        let comment = Match.comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
        switch settings.nodePortAddresses {
        case .all:
            var m: [Match] = [comment, .addrTypeLocal(.destination)]
            // Localhost NodePorts never work on IPv6, and on IPv4 only with route_localnet. v1.23 had no
            // localhostNodePorts option and excluded no loopback destination (legacy-layout §2.1).
            if !isV1_23 && !isIPv4 {
                m.append(.destination(.cidr(CIDR("::1/128")!), negated: true))
            } else if !isV1_23 && !settings.localhostNodePorts {
                m.append(.destination(.cidr(CIDR("127.0.0.0/8")!), negated: true))
            }
            return [Rule(m, .jump(Ownership.nodePorts))]
        case .addresses(let ips):
            return ips.filter { $0.family == settings.family }
                .filter { isV1_23 || !$0.isLoopback || (isIPv4 && settings.localhostNodePorts) }
                .map { Rule([comment, .destination(.ip($0), negated: false)], .jump(Ownership.nodePorts)) }
        }
    }
}

/// The jumps from base chains, in the order they end up in on a fresh node: upstream prepends each
/// (`EnsureRule(Prepend)`) in list order, so per base chain the last listed comes first, and kubelet's
/// KUBE-FIREWALL jumps, ensured afterwards, end up first of all.
public enum BaseJumps {
    /// kubelet's jumps to KUBE-FIREWALL: no comment, no match.
    static func kubeletJump(_ base: String) -> BaseChainJump {
        BaseChainJump(baseChain: base, rule: Rule([], .jump(Ownership.kubeletFirewall)))
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

    /// v1.23's filter jumps (no KUBE-PROXY-FIREWALL). kubelet's KUBE-FIREWALL jumps are only ensured in that
    /// layout: kubelet owns them, and on a v1.23 node they sit below kube-proxy's jumps (legacy-layout §1.3).
    public static let v1_23Filter: [BaseChainJump] = finalOrder(Ownership.v1_23Jumps(.filter))
}
