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
    private var clock: UInt64 = 0

    public init() {}

    public init(services: [Service], slices: [EndpointSlice]) {
        for s in services { upsert(s) }
        for s in slices { upsert(s) }
    }

    private mutating func bump(_ service: ObjectName) {
        clock &+= 1
        generations[service] = clock
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

    /// Removes the v1 Endpoints-derived slice of a Service.
    public mutating func removeEndpoints(of service: ObjectName) {
        if endpointsByService.removeValue(forKey: service) != nil { bump(service) }
    }

    /// The slices that feed a Service: its EndpointSlices sorted by name, or, when it has none,
    /// the slice converted from its v1 Endpoints (kube-proxy reads one source or the other).
    public func slices(for service: ObjectName) -> [EndpointSlice] {
        if let names = sliceNamesByService[service], !names.isEmpty {
            return names.sorted().compactMap { slices[$0] }
        }
        if let e = endpointsByService[service] { return [e] }
        return []
    }

    /// The generation of a Service (0 if never seen).
    public func generation(of service: ObjectName) -> UInt64 { generations[service] ?? 0 }

    /// Services sorted by namespace/name: the order the compiler emits them in.
    public var sortedServiceNames: [ObjectName] { services.keys.sorted() }
}
