/// What the node knows of the cluster: Services and their endpoint slices, plain values.
///
/// Every change bumps a per-Service generation, so the compiler can tell which Services changed
/// since it last compiled them without comparing whole objects.
public struct ClusterState: Sendable {
    public private(set) var services: [ObjectName: Service] = [:]
    /// EndpointSlices by the slice's own name.
    public private(set) var slices: [ObjectName: EndpointSlice] = [:]
    /// Slice names per Service (EndpointSlices proper).
    private var sliceNamesByService: [ObjectName: Set<ObjectName>] = [:]
    /// Slices converted from v1 Endpoints, by Service; used only when a Service has no real slice.
    private var endpointsByService: [ObjectName: EndpointSlice] = [:]
    /// Per-Service generation; bumped whenever the Service or any slice naming it changes.
    public private(set) var generations: [ObjectName: UInt64] = [:]
    /// Bumped on every change; a compiler remembers it to ask what changed since.
    public private(set) var clock: UInt64 = 0
    /// Which Service each clock tick touched, oldest first; compacted so it stays O(Services).
    private var changeLog: [(clock: UInt64, service: ObjectName)] = []
    /// Clock values at or below this are no longer in the log.
    private var changeLogFloor: UInt64 = 0

    /// This node's own Node object (the one named by the node name), or nil until a source has seen it.
    public private(set) var node: Node?

    /// Identifies this state's lineage (copies share it): a compiler that followed one lineage must not
    /// take another's change log for its own.
    public let lineage = UInt64.random(in: 1...UInt64.max)

    public init() {}

    public init(services: [Service], slices: [EndpointSlice]) {
        for s in services { upsert(s) }
        for s in slices { upsert(s) }
    }

    private mutating func bump(_ service: ObjectName) {
        clock &+= 1
        generations[service] = clock
        changeLog.append((clock, service))
        if changeLog.count > max(4096, 4 * services.count) {
            // Keep the newest half; anyone asking about older clocks gets nil and recompiles fully.
            let drop = changeLog.count / 2
            changeLogFloor = changeLog[drop - 1].clock
            changeLog.removeFirst(drop)
        }
    }

    /// The Services touched since `since` (deduplicated), or nil when the log no longer reaches back that far.
    public func changedServices(since: UInt64) -> Set<ObjectName>? {
        if since < changeLogFloor { return nil }
        var out = Set<ObjectName>()
        var i = changeLog.count - 1
        while i >= 0, changeLog[i].clock > since {
            out.insert(changeLog[i].service)
            i -= 1
        }
        return out
    }

    public mutating func upsert(_ service: Service) {
        if services[service.name] == service { return }
        services[service.name] = service
        bump(service.name)
    }

    public mutating func removeService(_ name: ObjectName) {
        if services.removeValue(forKey: name) != nil { bump(name) }
    }

    public mutating func upsert(_ slice: EndpointSlice) {
        if slice.fromEndpoints {
            if endpointsByService[slice.service] == slice { return }
            endpointsByService[slice.service] = slice
            bump(slice.service)
            return
        }
        if let old = slices[slice.name] {
            if old == slice { return }
            if old.service != slice.service {
                sliceNamesByService[old.service]?.remove(slice.name)
                bump(old.service)
            }
        }
        slices[slice.name] = slice
        sliceNamesByService[slice.service, default: []].insert(slice.name)
        bump(slice.service)
    }

    public mutating func removeSlice(_ name: ObjectName) {
        guard let old = slices.removeValue(forKey: name) else { return }
        sliceNamesByService[old.service]?.remove(name)
        if sliceNamesByService[old.service]?.isEmpty == true { sliceNamesByService[old.service] = nil }
        bump(old.service)
    }

    /// Records this node's Node (nil: not seen, or deleted). When the zone label changes, every Service whose
    /// endpoints carry zone hints is bumped, so the compiler re-derives exactly those (kube-proxy resyncs when
    /// the node's topology labels change, pkg/proxy/config NodeTopologyConfig).
    public mutating func setNode(_ new: Node?) {
        let oldZone = node?.zone
        node = new
        guard new?.zone != oldZone else { return }
        var touched = Set<ObjectName>()
        for slice in slices.values where slice.endpoints.contains(where: { !$0.zoneHints.isEmpty }) {
            touched.insert(slice.service)
        }
        for (service, slice) in endpointsByService where slice.endpoints.contains(where: { !$0.zoneHints.isEmpty }) {
            touched.insert(service)
        }
        for service in touched.sorted() { bump(service) }
    }

    /// Removes the v1 Endpoints-derived slice of a Service.
    public mutating func removeEndpoints(of service: ObjectName) {
        if endpointsByService.removeValue(forKey: service) != nil { bump(service) }
    }

    /// The slice converted from a Service's v1 Endpoints, if it has one.
    public func endpointsSlice(of service: ObjectName) -> EndpointSlice? { endpointsByService[service] }

    /// Services that have a slice converted from v1 Endpoints.
    public var endpointsServices: [ObjectName] { Array(endpointsByService.keys) }

    /// The slices that feed a Service: its EndpointSlices sorted by name, or, when it has none,
    /// the slice converted from its v1 Endpoints (kube-proxy reads one source or the other).
    public func slices(for service: ObjectName) -> [EndpointSlice] {
        if let names = sliceNamesByService[service], !names.isEmpty {
            // Most Services have one slice: skip sorting a one-element set.
            if names.count == 1 { return slices[names.first!].map { [$0] } ?? [] }
            return names.sorted().compactMap { slices[$0] }
        }
        if let e = endpointsByService[service] { return [e] }
        return []
    }

    /// Services sorted by namespace/name: the order the compiler emits them in. O(n log n): the compiler
    /// asks only when Services were added or removed.
    public var sortedServiceNames: [ObjectName] { services.keys.sorted() }

    /// The generation of a Service (0 if never seen).
    public func generation(of service: ObjectName) -> UInt64 { generations[service] ?? 0 }

}
