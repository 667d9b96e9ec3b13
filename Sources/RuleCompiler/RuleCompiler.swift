import KubeModel
import ProxyConfig
import Ruleset

/// Counts of what the last compile saw, for metrics and logs.
public struct CompileStats: Sendable, Equatable {
    public var services = 0
    public var servicePorts = 0
    public var endpoints = 0
    public var largeClusterMode = false
    /// Services whose fragment was derived anew in this compile (the rest came from the cache).
    public var fragmentsCompiled = 0
    public var noLocalEndpointsInternal = 0
    public var noLocalEndpointsExternal = 0
}

/// Compiles cluster state into the rules upstream kube-proxy (iptables mode) would write on this node.
///
/// The result is a pure function of `(ClusterState, NodeSettings)`. The instance only memoises per-Service
/// fragments keyed by the Service's generation, so a one-endpoint change re-derives one Service.
public final class RuleCompiler {
    /// Upstream's `largeClusterEndpointsThreshold`.
    public static let largeClusterEndpointsThreshold = 1000

    public let settings: NodeSettings
    public private(set) var lastStats = CompileStats()

    private struct CachedEndpoints {
        var generation: UInt64
        var ports: [ServicePortInfo]
        var endpoints: [[EndpointInfo]]
        var count: Int
    }
    private struct CachedFragment {
        var generation: UInt64
        var largeClusterMode: Bool
        var fragment: ServiceFragment
    }
    private var endpointCache: [ObjectName: CachedEndpoints] = [:]
    private var fragmentCache: [ObjectName: CachedFragment] = [:]

    public init(settings: NodeSettings) {
        self.settings = settings
    }

    /// Drops every cached fragment (the next compile derives all Services again).
    public func invalidate() {
        endpointCache.removeAll()
        fragmentCache.removeAll()
    }

    public func compile(_ state: ClusterState) -> Ruleset {
        var stats = CompileStats()
        let names = state.sortedServiceNames
        var resolved: [(ObjectName, UInt64, CachedEndpoints)] = []
        resolved.reserveCapacity(names.count)
        for name in names {
            let gen = state.generation(of: name)
            let entry: CachedEndpoints
            if let c = endpointCache[name], c.generation == gen {
                entry = c
            } else {
                entry = resolve(state.services[name]!, state: state, generation: gen)
                endpointCache[name] = entry
            }
            if !entry.ports.isEmpty {
                resolved.append((name, gen, entry))
                stats.services += 1
                stats.servicePorts += entry.ports.count
                stats.endpoints += entry.count
            }
        }
        if endpointCache.count > names.count {
            let live = Set(names)
            endpointCache = endpointCache.filter { live.contains($0.key) }
            fragmentCache = fragmentCache.filter { live.contains($0.key) }
        }
        let large = stats.endpoints > Self.largeClusterEndpointsThreshold
        stats.largeClusterMode = large

        var fragments: [ServiceFragment] = []
        fragments.reserveCapacity(resolved.count)
        for (name, gen, entry) in resolved {
            if let c = fragmentCache[name], c.generation == gen, c.largeClusterMode == large {
                fragments.append(c.fragment)
                continue
            }
            var f = ServiceFragment()
            for (port, eps) in zip(entry.ports, entry.endpoints) {
                ServicePortRules(port: port, endpoints: eps, settings: settings, largeClusterMode: large).write(into: &f)
            }
            fragmentCache[name] = CachedFragment(generation: gen, largeClusterMode: large, fragment: f)
            fragments.append(f)
            stats.fragmentsCompiled += 1
        }
        for f in fragments {
            stats.noLocalEndpointsInternal += f.noLocalEndpointsInternal
            stats.noLocalEndpointsExternal += f.noLocalEndpointsExternal
        }
        lastStats = stats
        return Assembly(settings: settings).ruleset(fragments)
    }

    private func resolve(_ svc: Service, state: ClusterState, generation: UInt64) -> CachedEndpoints {
        let ports = ServicePortInfo.ports(of: svc, family: settings.family)
        if ports.isEmpty { return CachedEndpoints(generation: generation, ports: [], endpoints: [], count: 0) }
        let byPort = EndpointResolution.endpoints(
            slices: state.slices(for: svc.name), family: settings.family, nodeName: settings.nodeName)
        let eps = ports.map { p in
            byPort[EndpointResolution.Key(portName: p.portName, proto: p.proto)] ?? []
        }
        return CachedEndpoints(generation: generation, ports: ports, endpoints: eps, count: eps.reduce(0) { $0 + $1.count })
    }
}

/// Puts fragments and the fixed rules together in upstream's chain and rule order.
struct Assembly {
    let settings: NodeSettings

    var mark: UInt32 { settings.masqueradeMark }
    var isIPv4: Bool { settings.family == .ipv4 }
    /// KUBE-FIREWALL (kubelet's anti-martian duplicate) exists for IPv4 with localhost NodePorts.
    var writesKubeletFirewall: Bool { isIPv4 && settings.localhostNodePorts }

    func ruleset(_ fragments: [ServiceFragment]) -> Ruleset {
        Ruleset(family: settings.family, tables: [filter(fragments), nat(fragments)])
    }

    func filter(_ fragments: [ServiceFragment]) -> TableRuleset {
        var services: [Rule] = []
        var external: [Rule] = []
        var nodePorts: [Rule] = []
        var firewall: [Rule] = []
        for f in fragments {
            services.append(contentsOf: f.filterServices)
            external.append(contentsOf: f.filterExternalServices)
            nodePorts.append(contentsOf: f.filterNodePorts)
            firewall.append(contentsOf: f.filterProxyFirewall)
        }
        var chains = [
            Chain("KUBE-SERVICES", services),
            Chain("KUBE-EXTERNAL-SERVICES", external),
            Chain("KUBE-FORWARD", forwardRules()),
            Chain("KUBE-NODEPORTS", nodePorts),
            Chain("KUBE-PROXY-FIREWALL", firewall),
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

    func nat(_ fragments: [ServiceFragment]) -> TableRuleset {
        var services: [Rule] = []
        var nodePorts: [Rule] = []
        var perService: [Chain] = []
        services.reserveCapacity(fragments.count * 2 + 4)
        perService.reserveCapacity(fragments.count * 5)
        for f in fragments {
            services.append(contentsOf: f.natServices)
            nodePorts.append(contentsOf: f.natNodePorts)
            perService.append(contentsOf: f.natChains)
        }
        services.append(contentsOf: nodePortsTailRules())
        var chains = [
            Chain("KUBE-SERVICES", services),
            Chain("KUBE-NODEPORTS", nodePorts),
            Chain("KUBE-POSTROUTING", [
                Rule([.mark(value: mark, mask: mark, negated: true)], .return),
                // Clear the mark so a packet that re-traverses the stack is not masqueraded twice.
                Rule([], .markXor(mark)),
                Rule([.comment("kubernetes service traffic requiring SNAT")],
                     .masquerade(randomFully: settings.features.randomFully)),
            ]),
            Chain("KUBE-MARK-MASQ", [Rule([], .markOr(mark))]),
        ]
        chains.append(contentsOf: perService)
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
    static func jump(_ base: String, _ extra: [Match], _ comment: String?, _ to: String) -> BaseChainJump {
        BaseChainJump(baseChain: base, rule: Rule(extra + (comment.map { [.comment($0)] } ?? []), .jump(to)))
    }
    static let new: [Match] = [.conntrackState([.new], negated: false)]

    /// Upstream's `iptablesJumpChains` for filter, in list order.
    static let filterList: [BaseChainJump] = [
        jump("INPUT", new, "kubernetes externally-visible service portals", "KUBE-EXTERNAL-SERVICES"),
        jump("FORWARD", new, "kubernetes externally-visible service portals", "KUBE-EXTERNAL-SERVICES"),
        jump("INPUT", [], "kubernetes health check service ports", "KUBE-NODEPORTS"),
        jump("FORWARD", new, "kubernetes service portals", "KUBE-SERVICES"),
        jump("OUTPUT", new, "kubernetes service portals", "KUBE-SERVICES"),
        jump("FORWARD", [], "kubernetes forwarding rules", "KUBE-FORWARD"),
        jump("INPUT", new, "kubernetes load balancer firewall", "KUBE-PROXY-FIREWALL"),
        jump("OUTPUT", new, "kubernetes load balancer firewall", "KUBE-PROXY-FIREWALL"),
        jump("FORWARD", new, "kubernetes load balancer firewall", "KUBE-PROXY-FIREWALL"),
    ]
    static let natList: [BaseChainJump] = [
        jump("OUTPUT", [], "kubernetes service portals", "KUBE-SERVICES"),
        jump("PREROUTING", [], "kubernetes service portals", "KUBE-SERVICES"),
        jump("POSTROUTING", [], "kubernetes postrouting rules", "KUBE-POSTROUTING"),
    ]

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
        let kubelet = kubeletFirewall
            ? [jump("INPUT", [], nil, "KUBE-FIREWALL"), jump("OUTPUT", [], nil, "KUBE-FIREWALL")] : []
        return finalOrder(filterList, prependedLast: kubelet)
    }

    public static let nat: [BaseChainJump] = finalOrder(natList)
}
