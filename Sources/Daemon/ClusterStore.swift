import Foundation
import KubeModel
import KubeSource
import Logging

/// The daemon's copy of the cluster, fed by a source, read by the sync loop. Thread-safe.
///
/// Counts pending Service and endpoint changes (upstream's change trackers) and remembers each
/// EndpointSlice's `last-change-trigger-time` until the commit that carries it.
public final class ClusterStore: @unchecked Sendable {
    private let lock = NSLock()
    private var state = ClusterState()
    private var servicesSynced = false
    private var endpointsSynced = false
    private var pendingServices = 0
    private var pendingEndpoints = 0
    private var triggerTimes: [Date] = []
    private var onChange: @Sendable () -> Void = {}
    public private(set) var node: NodeInfo?

    public init() {}

    /// Called (outside the lock) after every change that should lead to a sync.
    public func setOnChange(_ f: @escaping @Sendable () -> Void) {
        lock.lock(); onChange = f; lock.unlock()
    }

    /// True once both the Services and the endpoints have been listed (upstream's `isInitialized`).
    public var isInitialized: Bool {
        lock.lock(); defer { lock.unlock() }
        return servicesSynced && endpointsSynced
    }

    /// What the sync loop works from: a snapshot, the change counts since the last take, the trigger times.
    public struct Snapshot {
        public var state: ClusterState
        public var serviceChanges: Int
        public var endpointChanges: Int
        public var triggerTimes: [Date]
    }

    public func take() -> Snapshot {
        lock.lock(); defer { lock.unlock() }
        let s = Snapshot(state: state, serviceChanges: pendingServices, endpointChanges: pendingEndpoints,
                         triggerTimes: triggerTimes)
        pendingServices = 0
        pendingEndpoints = 0
        triggerTimes = []
        return s
    }

    /// The current state without taking the pending changes.
    public func take(peekOnly: Bool) -> ClusterState {
        lock.lock(); defer { lock.unlock() }
        return state
    }

    public var pending: (services: Int, endpoints: Int) {
        lock.lock(); defer { lock.unlock() }
        return (pendingServices, pendingEndpoints)
    }

    private func mutate(_ body: (inout ClusterState) -> (services: Int, endpoints: Int)) {
        lock.lock()
        let (s, e) = body(&state)
        pendingServices += s
        pendingEndpoints += e
        let notify = onChange
        lock.unlock()
        if s + e > 0 { notify() }
    }

    /// Replaces everything (a manifest load, or both kinds after a relist): differences become changes.
    public func replace(services: [Service], slices: [EndpointSlice]) {
        replace(.service, services: services)
        replace(.endpointSlice, slices: slices.filter { !$0.fromEndpoints })
        replace(.endpoints, slices: slices.filter(\.fromEndpoints))
        markSynced(.service)
        markSynced(.endpointSlice)
    }

    public func replace(_ kind: ResourceKind, services: [Service] = [], slices: [EndpointSlice] = []) {
        mutate { state in
            var changes = 0
            switch kind {
            case .service:
                let wanted = Dictionary(services.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
                for name in state.services.keys where wanted[name] == nil {
                    state.removeService(name)
                    changes += 1
                }
                for s in wanted.values where state.services[s.name] != s {
                    state.upsert(s)
                    changes += 1
                }
                return (changes, 0)
            case .endpointSlice:
                let wanted = Dictionary(slices.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
                for name in state.slices.keys where wanted[name] == nil {
                    state.removeSlice(name)
                    changes += 1
                }
                for s in wanted.values where state.slices[s.name] != s {
                    state.upsert(s)
                    changes += 1
                }
                return (0, changes)
            case .endpoints:
                let wanted = Set(slices.map(\.service))
                for name in state.endpointsServices where !wanted.contains(name) {
                    state.removeEndpoints(of: name)
                    changes += 1
                }
                for s in slices where !state.slices(for: s.service).contains(s) {
                    state.upsert(s)
                    changes += 1
                }
                return (0, changes)
            }
        }
        rememberTriggers(slices)
    }

    public func markSynced(_ kind: ResourceKind) {
        lock.lock()
        if kind == .service { servicesSynced = true } else { endpointsSynced = true }
        let notify = onChange
        lock.unlock()
        notify()
    }

    public func upsert(_ service: Service) {
        mutate { state in
            guard state.services[service.name] != service else { return (0, 0) }
            state.upsert(service)
            return (1, 0)
        }
    }

    public func upsert(_ slice: EndpointSlice) {
        mutate { state in
            state.upsert(slice)
            return (0, 1)
        }
        rememberTriggers([slice])
    }

    public func delete(_ kind: ResourceKind, _ name: ObjectName) {
        mutate { state in
            switch kind {
            case .service:
                state.removeService(name)
                return (1, 0)
            case .endpointSlice:
                state.removeSlice(name)
                return (0, 1)
            case .endpoints:
                state.removeEndpoints(of: name)
                return (0, 1)
            }
        }
    }

    public func setNode(_ info: NodeInfo) {
        lock.lock(); node = info; let notify = onChange; lock.unlock()
        notify()
    }

    private func rememberTriggers(_ slices: [EndpointSlice]) {
        let dates = slices.compactMap { $0.lastChangeTriggerTime.flatMap(RFC3339.parse) }
        guard !dates.isEmpty else { return }
        lock.lock(); triggerTimes += dates; lock.unlock()
    }
}
