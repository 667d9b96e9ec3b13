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

/// Compiles cluster state into the rules upstream kube-proxy (iptables mode) would write on this node, in the
/// layout `settings.ruleLayout` names (today's, or v1.23's: the layout is a choice inside the per-rule-family
/// methods of `ServicePortRules` and in `Assembly`; caching and patching are the same for both).
///
/// The result is a pure function of `(ClusterState, NodeSettings)`. The instance only memoises: per-Service
/// fragments keyed by the Service's generation (and, for a Service whose endpoints carry zone hints, by this
/// node's zone), and the assembled ruleset, which it patches in place for the Services the state's change log
/// names. A one-endpoint change therefore re-derives one Service and moves
/// no other rule. One compiler follows one ClusterState lineage (copies of one state as it evolves).
public final class RuleCompiler {
    /// Upstream's `largeClusterEndpointsThreshold`.
    public static let largeClusterEndpointsThreshold = 1000

    public let settings: NodeSettings
    public private(set) var lastStats = CompileStats()
    /// What the last compile changed against the one before it (the chains of the Services it patched), or
    /// `everything` after a full compile: what a backend may limit its work to.
    public private(set) var lastChange: RulesetChange
    /// The Services the last compile patched because they changed; nil: it compiled every Service.
    public private(set) var lastChangedServices: [ObjectName]?
    /// The Services left out of the ruleset because their rules break a kernel limit (`KernelLimits`), as of the
    /// last compile: each is checked when its fragment is derived, and stays out until a version of it is within
    /// the limits or it is deleted.
    public private(set) var limitViolations: [ObjectName: [ServiceLimitViolation]] = [:]

    /// One Service's compiled view, kept in namespace/name order.
    private struct Entry {
        var name: ObjectName
        var generation: UInt64
        var ports: [ServicePortInfo]
        var endpoints: [[EndpointInfo]]
        var endpointCount: Int
        /// Some endpoint carries zone hints, so the fragment depends on this node's zone.
        var zoneHinted: Bool
        var fragment = ServiceFragment()
        /// Why the fragment is empty: the derived rules broke these kernel limits.
        var limits: [ServiceLimitViolation] = []
    }
    private var entries: [Entry] = []
    /// Rule/chain counts of each entry's fragment, flat, for the prefix sums of in-place patches.
    private var counts: [FragmentCounts] = []
    private var position: [ObjectName: Int] = [:]
    private var assembled: Ruleset?
    private var lineage: UInt64 = 0
    private var lastClock: UInt64 = 0
    private var totals = CompileStats()
    /// This node's zone when the kept fragments were derived.
    private var zone: String?

    public init(settings: NodeSettings) {
        self.settings = settings
        lastChange = .everything(settings.family, id: 0)
        sharedChains = settings.ruleLayout == .v1_23
            ? [(0, 0), (0, 1), (0, 3), nil, (1, 0), (1, 1)] : [(0, 0), (0, 1), (0, 3), (0, 4), (1, 0), (1, 1)]
    }

    /// The ruleset the last compile returned (what the last commit wrote, for drift checks).
    public var lastResult: Ruleset? { assembled }

    /// Drops every cached fragment (the next compile derives all Services again).
    public func invalidate() {
        entries.removeAll()
        position.removeAll()
        assembled = nil
        lineage = 0
        limitViolations = [:]
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
        let zone = state.node?.zone
        let sameZone = zone == self.zone
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
            if let old = previous[name], old.generation == gen, sameZone || !old.zoneHinted {
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
        var limits: [ObjectName: [ServiceLimitViolation]] = [:]
        counts = []
        counts.reserveCapacity(entries.count)
        for i in entries.indices {
            if !cached[i] || wasLarge != stats.largeClusterMode {
                derive(&entries[i], large: stats.largeClusterMode, zone: zone)
                stats.fragmentsCompiled += 1
            }
            if !entries[i].limits.isEmpty { limits[entries[i].name] = entries[i].limits }
            assembly.add(entries[i].fragment)
            counts.append(FragmentCounts(entries[i].fragment))
            add(entries[i].ports.count, entries[i].fragment, to: &stats, sign: 1)
        }
        let rs = assembly.ruleset()
        limitViolations = limits
        assembled = rs
        lineage = state.lineage
        lastClock = state.clock
        self.zone = zone
        totals = stats
        lastStats = stats
        lastChange = .everything(settings.family, id: RulesetChange.newID())
        lastChangedServices = nil
        return rs
    }

    /// Patches the last assembled ruleset for the Services changed since the last compile, or returns nil when
    /// that is not possible (Services added or removed, another lineage, large-cluster mode flipped, many changes).
    /// A change of this node's zone re-derives every Service whose endpoints carry zone hints, whether or not the
    /// state's change log names it.
    private func compileIncrementally(_ state: ClusterState) -> Ruleset? {
        guard state.lineage == lineage, assembled != nil,
              var changed = state.changedServices(since: lastClock) else { return nil }
        let zone = state.node?.zone
        if zone != self.zone {
            for e in entries where e.zoneHinted { changed.insert(e.name) }
        }
        guard changed.count <= max(8, entries.count / 8), var rs = assembled else { return nil }
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
        var touched: [Table: Set<String>] = [:]
        for (i, var e) in updates.sorted(by: { $0.0 < $1.0 }) {
            derive(&e, large: large, zone: zone)
            limitViolations[e.name] = e.limits.isEmpty ? nil : e.limits
            patch(&rs, at: i, old: entries[i].fragment, new: e.fragment, touched: &touched)
            add(entries[i].ports.count, entries[i].fragment, to: &totals, sign: -1)
            add(e.ports.count, e.fragment, to: &totals, sign: 1)
            entries[i] = e
        }
        assembled = rs
        lastClock = state.clock
        self.zone = zone
        lastStats = totals
        lastStats.fragmentsCompiled = updates.count
        lastChange = RulesetChange(family: settings.family, id: RulesetChange.newID(), base: lastChange.id,
                                   touched: touched)
        lastChangedServices = changed.map { $0 }
        return rs
    }

    /// `RuleCompiler.udpFrontends` of the last compiled state, from the views cached for its rules (no Service is
    /// resolved again): of every Service, or (`only`) of the frontends the named Services use, each still with
    /// the serving endpoints of every Service that shares it (so a shared frontend keeps another Service's flows).
    public func cachedUDPFrontends(only names: [ObjectName]? = nil) -> UDPServiceFrontends {
        var out = UDPServiceFrontends(family: settings.family)
        func addresses(_ p: ServicePortInfo) -> [IPAddress] { [p.clusterIP] + p.loadBalancerVIPs + p.externalIPs }
        func add(_ e: Entry) {
            for (port, eps) in zip(e.ports, e.endpoints) where port.proto == .udp {
                out.add(addresses: addresses(port), port: port.port, nodePort: port.nodePort,
                        serving: Set(eps.lazy.filter(\.serving).map(\.ip)))
            }
        }
        guard let names else {
            entries.forEach(add)
            return out
        }
        var frontends = Set<UDPServiceFrontends.Frontend>()
        var nodePorts = Set<Int>()
        for name in names {
            guard let i = position[name] else { continue }
            for port in entries[i].ports where port.proto == .udp {
                for ip in addresses(port) { frontends.insert(.init(ip: ip, port: port.port)) }
                if port.nodePort != 0 { nodePorts.insert(port.nodePort) }
            }
        }
        if frontends.isEmpty && nodePorts.isEmpty { return out }
        for e in entries {
            let shares = e.ports.contains { p in
                p.proto == .udp
                    && (nodePorts.contains(p.nodePort)
                        || addresses(p).contains { frontends.contains(.init(ip: $0, port: p.port)) })
            }
            if shares { add(e) }
        }
        return out
    }

    /// Where fragment rules live in the assembled ruleset: (table index, chain index), in `FragmentCounts` order.
    /// The v1.23 layout has no KUBE-PROXY-FIREWALL (its fragments never hold rules for it).
    private let sharedChains: [(Int, Int)?]
    /// Per-service nat chains follow the four fixed nat chains (in both layouts).
    private static let natFixedChains = 4

    /// Replaces one Service's rules and chains and notes, per table, the chains it rewrote, added or removed.
    private func patch(_ rs: inout Ruleset, at index: Int, old: ServiceFragment, new: ServiceFragment,
                       touched: inout [Table: Set<String>]) {
        let oldParts = FragmentCounts.parts(old)
        let newParts = FragmentCounts.parts(new)
        var offsets = SIMD8<Int>()
        counts.withUnsafeBufferPointer { for j in 0..<index { offsets &+= $0[j].lanes } }
        for (k, place) in sharedChains.enumerated() where !(oldParts[k].isEmpty && newParts[k].isEmpty) {
            guard let (t, c) = place else { preconditionFailure("a fragment holds rules for a chain its layout lacks") }
            let offset = offsets[k]
            rs.tables[t].chains[c].rules.replaceSubrange(offset..<offset + oldParts[k].count, with: newParts[k])
            // a shared chain (KUBE-SERVICES holds a rule of every Service) counts only when its share changed
            if oldParts[k] != newParts[k] { touched[rs.tables[t].table, default: []].insert(rs.tables[t].chains[c].name) }
        }
        if old.natChains != new.natChains {
            // the Service's own chains that went, came or changed (an endpoint's SEP chain; its SVC chain)
            var names = touched[rs.tables[1].table, default: []]
            let before = Dictionary(old.natChains.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for chain in new.natChains where before[chain.name] != chain { names.insert(chain.name) }
            let after = Set(new.natChains.map(\.name))
            for chain in old.natChains where !after.contains(chain.name) { names.insert(chain.name) }
            touched[rs.tables[1].table] = names
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

    /// Derives an entry's fragment; a Service any of whose ports breaks a kernel limit gets an empty one (no
    /// rules at all: see `limitViolations`), and the violations are kept with the entry.
    private func derive(_ e: inout Entry, large: Bool, zone: String?) {
        var f = ServiceFragment()
        var limits: [ServiceLimitViolation] = []
        let topology = NodeTopology(nodeName: settings.nodeName, zone: zone)
        // Typically a SVC chain, maybe an EXT chain, and a SEP chain per endpoint per port; one ClusterIP rule.
        f.natChains.reserveCapacity(e.endpoints.reduce(0) { $0 + $1.count + 2 })
        f.natServices.reserveCapacity(e.ports.count)
        for (port, eps) in zip(e.ports, e.endpoints) {
            let start = f.marks
            ServicePortRules(port: port, endpoints: eps, settings: settings, topology: topology, largeClusterMode: large)
                .write(into: &f)
            for v in f.limitViolations(since: start) {
                limits.append(ServiceLimitViolation(
                    family: settings.family, service: port.service, portName: port.portName, port: port.port,
                    proto: port.proto, violation: v))
            }
        }
        e.fragment = limits.isEmpty ? f : ServiceFragment()
        e.limits = limits
    }

    private func resolve(_ name: ObjectName, _ state: ClusterState, _ generation: UInt64) -> Entry {
        let svc = state.services[name]!
        let ports = ServicePortInfo.ports(of: svc, family: settings.family)
        if ports.isEmpty {
            return Entry(name: name, generation: generation, ports: [], endpoints: [], endpointCount: 0, zoneHinted: false)
        }
        let byPort = EndpointResolution.endpoints(
            slices: state.slices(for: name), family: settings.family, nodeName: settings.nodeName)
        let eps = ports.map { byPort[EndpointResolution.Key(portName: $0.portName, proto: $0.proto)] }
        return Entry(name: name, generation: generation, ports: ports, endpoints: eps,
                     endpointCount: eps.reduce(0) { $0 + $1.count },
                     zoneHinted: eps.contains { $0.contains { !$0.zoneHints.isEmpty } })
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
