import KubeModel
import ProxyConfig

/// One endpoint of a service port, as upstream's `BaseEndpointInfo`.
struct EndpointInfo: Hashable {
    let ip: IPAddress
    let port: Int
    /// `ip:port` (`[ip]:port` for IPv6): the sort key, the comment text and the SEP hash input.
    let text: String
    let isLocal: Bool
    let ready: Bool
    let serving: Bool
    let terminating: Bool
    /// `hints.forZones[].name` and `hints.forNodes[].name` (topology-aware routing); empty when unset.
    var zoneHints: [String] = []
    var nodeHints: [String] = []
}

/// Where this node sits, as topology hints are matched against it: its name (node hints) and the value of its
/// `topology.kubernetes.io/zone` label (zone hints), "" when unknown, as upstream reads a missing label.
struct NodeTopology: Hashable {
    var nodeName: String
    var zone: String

    init(nodeName: String, zone: String?) {
        self.nodeName = nodeName
        self.zone = zone ?? ""
    }
}

/// A Service port as the iptables proxier sees it for one IP family (upstream's `servicePortInfo`).
struct ServicePortInfo {
    let service: ObjectName
    /// `ns/name:port` or `ns/name` (upstream's `svcPortNameString`).
    let name: String
    /// `spec.ports[].name`, which EndpointSlice ports are matched on.
    let portName: String
    let proto: TransportProtocol
    let clusterIP: IPAddress
    let port: Int
    let nodePort: Int
    let externalIPs: [IPAddress]
    let loadBalancerVIPs: [IPAddress]
    let loadBalancerSourceRanges: [CIDR]
    let healthCheckNodePort: Int
    let stickyMaxAgeSeconds: Int?
    let internalPolicyLocal: Bool
    let externalPolicyLocal: Bool

    /// Upstream's `ExternallyAccessible` of the port: reachable other than by ClusterIP in this family.
    var externallyAccessible: Bool { nodePort != 0 || !loadBalancerVIPs.isEmpty || !externalIPs.isEmpty }
    /// Cluster endpoints are needed for ITP Cluster, or for any externally reachable port (short circuits).
    var usesClusterEndpoints: Bool { !internalPolicyLocal || externallyAccessible }
    var usesLocalEndpoints: Bool { internalPolicyLocal || (externalPolicyLocal && externallyAccessible) }

    /// The per-family view of a Service's ports, or [] when kube-proxy would skip the Service:
    /// headless, ExternalName, handed to another proxy, or without a ClusterIP of this family.
    static func ports(of svc: Service, family: IPFamily) -> [ServicePortInfo] {
        if svc.isHeadless || svc.type == .externalName { return [] }
        if svc.labels[Service.serviceProxyNameLabel] != nil { return [] }
        guard let clusterIP = svc.clusterIPs.first(where: { $0.family == family }) else { return [] }
        let isExternalType = svc.type == .nodePort || svc.type == .loadBalancer
        // apiservice.ExternalPolicyLocal: eTP applies to every externally accessible Service, which includes a
        // ClusterIP Service with externalIPs (of any family: the Service's, not the port's, accessibility).
        let externallyAccessibleService = isExternalType || (svc.type == .clusterIP && !svc.externalIPs.isEmpty)
        let externalIPs = svc.externalIPs.filter { $0.family == family }
        let vips = svc.loadBalancerIngressIPs.filter { $0.family == family }
        let ranges = svc.loadBalancerSourceRanges.filter { $0.family == family }
        // apiservice.NeedsHealthCheck: LoadBalancer with externalTrafficPolicy Local.
        let hcnp = (svc.type == .loadBalancer && svc.externalTrafficPolicy == .local) ? svc.healthCheckNodePort : 0
        return svc.ports.map { p in
            ServicePortInfo(
                service: svc.name,
                name: p.name.isEmpty ? svc.name.description : "\(svc.name):\(p.name)", portName: p.name,
                proto: p.protocol, clusterIP: clusterIP, port: p.port,
                nodePort: isExternalType ? p.nodePort : 0,
                externalIPs: externalIPs, loadBalancerVIPs: vips, loadBalancerSourceRanges: ranges,
                healthCheckNodePort: hcnp, stickyMaxAgeSeconds: svc.sessionAffinityTimeout,
                internalPolicyLocal: svc.internalTrafficPolicy == .local,
                externalPolicyLocal: externallyAccessibleService && svc.externalTrafficPolicy == .local)
        }
    }
}

/// Endpoints per service port name, built as upstream's EndpointSliceCache does.
enum EndpointResolution {
    struct Key: Hashable {
        let portName: String
        let proto: TransportProtocol
    }

    /// The endpoint list of each slice port (name, protocol) of one Service. A Service has a handful of
    /// ports, so a list searched by key is cheaper than hashing into a dictionary.
    struct ByPort {
        fileprivate var lists: [(key: Key, endpoints: [EndpointInfo])] = []

        /// The endpoints of `key`, or [] when no slice has that port.
        subscript(key: Key) -> [EndpointInfo] {
            for entry in lists where entry.key == key { return entry.endpoints }
            return []
        }

        /// Every slice port's endpoint list, whether or not the Service has that port.
        var allLists: [[EndpointInfo]] { lists.map(\.endpoints) }
    }

    /// Merges the slices of one Service: ports with a nil name or a nil/0 port are ignored, endpoints without
    /// addresses or of the other family are skipped, duplicates (same `ip:port`) are collapsed preferring a
    /// non-terminating copy, and each list is sorted by its `ip:port` text. Unset conditions read as upstream's
    /// EndpointSliceCache reads them: ready and serving unless said otherwise, not terminating.
    static func endpoints(slices: [EndpointSlice], family: IPFamily, nodeName: String) -> ByPort {
        var byPort = ByPort()
        for slice in slices where slice.addressType == family {
            for port in slice.ports {
                guard let name = port.name, let number = port.port, number != 0 else { continue }
                let key = Key(portName: name, proto: port.protocol)
                let index = byPort.lists.firstIndex { $0.key == key } ?? byPort.lists.endIndex
                if index == byPort.lists.endIndex { byPort.lists.append((key, [])) }
                byPort.lists[index].endpoints.reserveCapacity(
                    byPort.lists[index].endpoints.count + slice.endpoints.count)
                for ep in slice.endpoints {
                    guard let ip = ep.addresses.first, ip.family == family else { continue }
                    byPort.lists[index].endpoints.append(EndpointInfo(
                        ip: ip, port: number, text: ip.joined(port: number),
                        isLocal: !nodeName.isEmpty && ep.nodeName == nodeName,
                        ready: ep.conditions.ready ?? true, serving: ep.conditions.serving ?? true,
                        terminating: ep.conditions.terminating ?? false,
                        zoneHints: ep.zoneHints, nodeHints: ep.nodeHints))
                }
            }
        }
        for i in byPort.lists.indices { byPort.lists[i].endpoints = merged(byPort.lists[i].endpoints) }
        return byPort
    }

    /// `candidates` (in slice order) sorted by `ip:port`, one per `ip:port`: the last non-terminating copy if
    /// there is one, else the first copy. Upstream's merge (endpointslicecache.go `addEndpoints`) lets a later
    /// copy replace an earlier one unless the later one is terminating, so a running pod wins over a terminating
    /// one that had the same IP; its slice order is Go's map order, ours is slice name order.
    static func merged(_ candidates: [EndpointInfo]) -> [EndpointInfo] {
        // Usually each slice lists distinct endpoints in order already: nothing to do.
        if zip(candidates, candidates.dropFirst()).allSatisfy({ $0.text < $1.text }) { return candidates }
        // Ties in text keep slice order, so "first" and "last" below are slice order.
        let order = candidates.indices.sorted {
            let (a, b) = (candidates[$0].text, candidates[$1].text)
            return a == b ? $0 < $1 : a < b
        }
        var out: [EndpointInfo] = []
        out.reserveCapacity(candidates.count)
        var start = 0
        while start < order.count {
            var end = start + 1
            while end < order.count && candidates[order[end]].text == candidates[order[start]].text { end += 1 }
            let group = order[start..<end]
            out.append(candidates[group.last { !candidates[$0].terminating } ?? group.first!])
            start = end
        }
        return out
    }
}

/// Upstream's `CategorizeEndpoints` (pkg/proxy/topology.go), topology hints included.
///
/// The categories hold positions in the service port's endpoint list rather than copies, so the rules can
/// name each endpoint's chain once whichever categories it is in. That list is unique and sorted by
/// `ip:port` (`EndpointResolution`), so ascending positions are `ip:port` order.
struct EndpointCategories {
    var cluster: [Int] = []
    var local: [Int] = []
    var allReachable: [Int] = []
    var hasAny = false

    init(_ endpoints: [EndpointInfo], _ port: ServicePortInfo, topology: NodeTopology) {
        var mode = TopologyMode.none
        if port.usesClusterEndpoints {
            mode = TopologyMode(endpoints, topology)
            cluster = endpoints.indices.filter { endpoints[$0].ready && mode.admits(endpoints[$0], topology) }
            // No ready endpoint anywhere (topology already fell back to none when none was ready for this node's
            // topology): fall back to serving-and-terminating ones, ignoring topology (KEP-1669).
            if cluster.isEmpty {
                cluster = endpoints.indices.filter { endpoints[$0].serving && endpoints[$0].terminating }
            }
            if !cluster.isEmpty { hasAny = true }
        }
        if !port.usesLocalEndpoints {
            allReachable = cluster
            return
        }
        // Local traffic policy ignores topology: this node's endpoints are as close as it gets.
        var localReady = false
        var localServingTerminating = false
        for ep in endpoints {
            if ep.ready {
                hasAny = true
                if ep.isLocal { localReady = true }
            } else if ep.serving && ep.terminating {
                hasAny = true
                if ep.isLocal { localServingTerminating = true }
            }
        }
        if localReady {
            local = endpoints.indices.filter { endpoints[$0].isLocal && endpoints[$0].ready }
        } else if localServingTerminating {
            local = endpoints.indices.filter {
                endpoints[$0].isLocal && endpoints[$0].serving && endpoints[$0].terminating
            }
        }
        if !port.usesClusterEndpoints || local.isEmpty {
            allReachable = port.usesClusterEndpoints ? cluster : local
            return
        }
        // The union: topology may leave local endpoints out of `cluster`, and `local` may hold terminating ones.
        // Upstream merges through a map (random order); we keep `ip:port` order so output is deterministic.
        allReachable = Self.union(cluster, local)
    }

    /// kube-proxy v1.23's endpoint selection (legacy-layout §3.1), which the v1.23 layout's rules are derived
    /// from: only Ready endpoints count (its ProxyTerminatingEndpoints gate was alpha, off by default), `cluster`
    /// feeds KUBE-SVC and `local` (eTP=Local only) KUBE-XLB. internalTrafficPolicy Local was applied by
    /// `FilterEndpoints` before anything else: unless the Service is eTP=Local (which returned every endpoint), only
    /// this node's endpoints remain, for every frontend, and none left means "has no endpoints" (the
    /// behaviour #106497 changed in 1.24; the spec marks the 1.23 code as not re-read, this follows 1.22/1.23's
    /// `FilterEndpoints` as the spec's §9 describes it).
    init(v1_23 endpoints: [EndpointInfo], _ port: ServicePortInfo) {
        let onlyLocal = port.internalPolicyLocal && !port.externalPolicyLocal
        cluster = endpoints.indices.filter { endpoints[$0].ready && (!onlyLocal || endpoints[$0].isLocal) }
        hasAny = !cluster.isEmpty
        if port.externalPolicyLocal { local = cluster.filter { endpoints[$0].isLocal } }
        // Every local endpoint is also a cluster one: SEP chains exist for exactly the SVC chain's endpoints.
        allReachable = cluster
    }

    /// The union of two ascending position lists, ascending.
    static func union(_ a: [Int], _ b: [Int]) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(a.count + b.count)
        var i = 0, j = 0
        while i < a.count || j < b.count {
            if j == b.count || (i < a.count && a[i] < b[j]) {
                out.append(a[i])
                i += 1
            } else {
                if i < a.count && a[i] == b[j] { i += 1 }
                out.append(b[j])
                j += 1
            }
        }
        return out
    }
}

/// Upstream's `topologyModeFromHints`: which hints, if any, narrow a port's cluster endpoints on this node.
/// Only ready endpoints decide. Node hints first (PreferSameNode; upstream's PreferSameTrafficDistribution gate,
/// on by default in current releases): every ready endpoint has one and at least one names this node. Then zone
/// hints (PreferSameZone): every ready endpoint has one and at least one names this node's zone. Otherwise none.
/// The Service's `trafficDistribution` and topology annotation are not read: the hints alone decide.
enum TopologyMode: Equatable {
    case none
    case preferSameNode
    case preferSameZone

    init(_ endpoints: [EndpointInfo], _ topology: NodeTopology) {
        var anyReady = false
        var allNodeHinted = true, forThisNode = false
        var allZoneHinted = true, forThisZone = false
        for ep in endpoints where ep.ready {
            anyReady = true
            if ep.nodeHints.isEmpty {
                allNodeHinted = false
            } else if ep.nodeHints.contains(topology.nodeName) {
                forThisNode = true
            }
            if ep.zoneHints.isEmpty {
                allZoneHinted = false
            } else if ep.zoneHints.contains(topology.zone) {
                forThisZone = true
            }
        }
        if anyReady && allNodeHinted && forThisNode {
            self = .preferSameNode
        } else if anyReady && allZoneHinted && forThisZone {
            self = .preferSameZone
        } else {
            self = .none
        }
    }

    /// Upstream's `availableForTopology`: whether the mode keeps this endpoint (no fallback here; the fallback
    /// happened when the mode was chosen).
    func admits(_ ep: EndpointInfo, _ topology: NodeTopology) -> Bool {
        switch self {
        case .none: true
        case .preferSameNode: ep.nodeHints.contains(topology.nodeName)
        case .preferSameZone: ep.zoneHints.contains(topology.zone)
        }
    }
}
