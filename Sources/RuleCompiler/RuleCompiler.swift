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
/// The result is a pure function of `(ClusterState, NodeSettings)`. The instance only memoises: per-Service
/// fragments keyed by the Service's generation, and the assembled ruleset, which it patches in place for the
/// Services the state's change log names. A one-endpoint change therefore re-derives one Service and moves
/// no other rule. One compiler follows one ClusterState lineage (copies of one state as it evolves).
public final class RuleCompiler {
    /// Upstream's `largeClusterEndpointsThreshold`.
    public static let largeClusterEndpointsThreshold = 1000

    public let settings: NodeSettings
    public private(set) var lastStats = CompileStats()

    /// One Service's compiled view, kept in namespace/name order.
    private struct Entry {
        var name: ObjectName
        var generation: UInt64
        var ports: [ServicePortInfo]
        var endpoints: [[EndpointInfo]]
        var endpointCount: Int
        var fragment = ServiceFragment()
    }
    private var entries: [Entry] = []
    /// Rule/chain counts of each entry's fragment, flat, for the prefix sums of in-place patches.
    private var counts: [FragmentCounts] = []
    private var position: [ObjectName: Int] = [:]
    private var assembled: Ruleset?
    private var lineage: UInt64 = 0
    private var lastClock: UInt64 = 0
    private var totals = CompileStats()

    public init(settings: NodeSettings) {
        self.settings = settings
    }

    /// The ruleset the last compile returned (what the last commit wrote, for drift checks).
    public var lastResult: Ruleset? { assembled }

    /// Drops every cached fragment (the next compile derives all Services again).
    public func invalidate() {
        entries.removeAll()
        position.removeAll()
        assembled = nil
        lineage = 0
    }

    public func compile(_ state: ClusterState) -> Ruleset {
        if let rs = compileIncrementally(state) { return rs }
        return compileFully(state)
    }

    private func compileFully(_ state: ClusterState) -> Ruleset {
        // Cached entries are only valid within one lineage (generations count per lineage).
        let previous = lineage == state.lineage && !entries.isEmpty
            ? Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0) }) : [:]
        let wasLarge = totals.largeClusterMode
        entries = []
        entries.reserveCapacity(state.services.count)
        position = [:]
        position.reserveCapacity(state.services.count)
        // Entries taken from the cache, whose fragment is reusable unless large-cluster mode flips.
        var cached: [Bool] = []
        cached.reserveCapacity(state.services.count)
        var endpoints = 0
        for name in state.sortedServiceNames {
            let gen = state.generation(of: name)
            position[name] = entries.count
            if let old = previous[name], old.generation == gen {
                entries.append(old)
                cached.append(true)
            } else {
                entries.append(resolve(name, state, gen))
                cached.append(false)
            }
            endpoints += entries[entries.count - 1].endpointCount
        }
        var stats = CompileStats()
        stats.endpoints = endpoints
        stats.largeClusterMode = endpoints > Self.largeClusterEndpointsThreshold
        // Each fragment goes into the assembled chains right after it is derived, while its rules are still
        // in cache: assembling retains every rule and chain again, which costs a cache miss when cold.
        var assembly = Assembly(settings: settings, services: entries.count)
        counts = []
        counts.reserveCapacity(entries.count)
        for i in entries.indices {
            if !cached[i] || wasLarge != stats.largeClusterMode {
                entries[i].fragment = fragment(entries[i].ports, entries[i].endpoints, large: stats.largeClusterMode)
                stats.fragmentsCompiled += 1
            }
            assembly.add(entries[i].fragment)
            counts.append(FragmentCounts(entries[i].fragment))
            add(entries[i].ports.count, entries[i].fragment, to: &stats, sign: 1)
        }
        let rs = assembly.ruleset()
        assembled = rs
        lineage = state.lineage
        lastClock = state.clock
        totals = stats
        lastStats = stats
        return rs
    }

    /// Patches the last assembled ruleset for the Services changed since the last compile, or returns nil when
    /// that is not possible (Services added or removed, another lineage, large-cluster mode flipped, many changes).
    private func compileIncrementally(_ state: ClusterState) -> Ruleset? {
        guard state.lineage == lineage, var rs = assembled,
              let changed = state.changedServices(since: lastClock), changed.count <= max(8, entries.count / 8)
        else { return nil }
        for name in changed where position[name] == nil || state.services[name] == nil { return nil }
        // Hand the storage over so that, once the caller has dropped the previous result, patches happen in place.
        assembled = nil
        var updates: [(Int, Entry)] = []
        var endpoints = totals.endpoints
        for name in changed {
            let i = position[name]!
            let e = resolve(name, state, state.generation(of: name))
            endpoints += e.endpointCount - entries[i].endpointCount
            updates.append((i, e))
        }
        let large = endpoints > Self.largeClusterEndpointsThreshold
        guard large == totals.largeClusterMode else { return nil }
        totals.endpoints = endpoints
        for (i, var e) in updates.sorted(by: { $0.0 < $1.0 }) {
            e.fragment = fragment(e.ports, e.endpoints, large: large)
            patch(&rs, at: i, old: entries[i].fragment, new: e.fragment)
            add(entries[i].ports.count, entries[i].fragment, to: &totals, sign: -1)
            add(e.ports.count, e.fragment, to: &totals, sign: 1)
            entries[i] = e
        }
        assembled = rs
        lastClock = state.clock
        lastStats = totals
        lastStats.fragmentsCompiled = updates.count
        return rs
    }

    /// Where fragment rules live in the assembled ruleset: (table index, chain index), in `FragmentCounts` order.
    private static let sharedChains: [(Int, Int)] = [(0, 0), (0, 1), (0, 3), (0, 4), (1, 0), (1, 1)]
    /// Per-service nat chains follow the four fixed nat chains.
    private static let natFixedChains = 4

    private func patch(_ rs: inout Ruleset, at index: Int, old: ServiceFragment, new: ServiceFragment) {
        let oldParts = FragmentCounts.parts(old)
        let newParts = FragmentCounts.parts(new)
        var offsets = SIMD8<Int>()
        counts.withUnsafeBufferPointer { for j in 0..<index { offsets &+= $0[j].lanes } }
        for (k, (t, c)) in Self.sharedChains.enumerated() where !(oldParts[k].isEmpty && newParts[k].isEmpty) {
            let offset = offsets[k]
            rs.tables[t].chains[c].rules.replaceSubrange(offset..<offset + oldParts[k].count, with: newParts[k])
        }
        let offset = Self.natFixedChains + offsets[6]
        rs.tables[1].chains.replaceSubrange(offset..<offset + old.natChains.count, with: new.natChains)
        counts[index] = FragmentCounts(new)
    }

    /// Adds (`sign` 1) or removes (-1) one Service's share of the totals.
    private func add(_ portCount: Int, _ fragment: ServiceFragment, to stats: inout CompileStats, sign: Int) {
        guard portCount > 0 else { return }
        stats.services += sign
        stats.servicePorts += sign * portCount
        stats.noLocalEndpointsInternal += sign * fragment.noLocalEndpointsInternal
        stats.noLocalEndpointsExternal += sign * fragment.noLocalEndpointsExternal
    }

    private func fragment(_ ports: [ServicePortInfo], _ endpoints: [[EndpointInfo]], large: Bool) -> ServiceFragment {
        var f = ServiceFragment()
        // Typically a SVC chain, maybe an EXT chain, and a SEP chain per endpoint per port; one ClusterIP rule.
        f.natChains.reserveCapacity(endpoints.reduce(0) { $0 + $1.count + 2 })
        f.natServices.reserveCapacity(ports.count)
        for (port, eps) in zip(ports, endpoints) {
            ServicePortRules(port: port, endpoints: eps, settings: settings, largeClusterMode: large).write(into: &f)
        }
        return f
    }

    private func resolve(_ name: ObjectName, _ state: ClusterState, _ generation: UInt64) -> Entry {
        let svc = state.services[name]!
        let ports = ServicePortInfo.ports(of: svc, family: settings.family)
        if ports.isEmpty { return Entry(name: name, generation: generation, ports: [], endpoints: [], endpointCount: 0) }
        let byPort = EndpointResolution.endpoints(
            slices: state.slices(for: name), family: settings.family, nodeName: settings.nodeName)
        let eps = ports.map { byPort[EndpointResolution.Key(portName: $0.portName, proto: $0.proto)] }
        return Entry(name: name, generation: generation, ports: ports, endpoints: eps,
                     endpointCount: eps.reduce(0) { $0 + $1.count })
    }
}

/// How many rules a fragment adds to each shared chain (lanes 0-5, in `RuleCompiler.sharedChains` order) and
/// how many chains of its own it has (lane 6). A SIMD vector so prefix sums over 30k Services stay a tight loop.
struct FragmentCounts {
    var lanes = SIMD8<Int>()

    init() {}
    init(_ f: ServiceFragment) {
        lanes = SIMD8(
            f.filterServices.count, f.filterExternalServices.count, f.filterNodePorts.count,
            f.filterProxyFirewall.count, f.natServices.count, f.natNodePorts.count, f.natChains.count, 0)
    }

    /// The fragment's rules for each shared chain, in the order of `RuleCompiler.sharedChains` (and of `lanes`).
    static func parts(_ f: ServiceFragment) -> [[Rule]] {
        [f.filterServices, f.filterExternalServices, f.filterNodePorts, f.filterProxyFirewall, f.natServices, f.natNodePorts]
    }
}

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
