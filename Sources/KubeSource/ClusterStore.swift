import Foundation
import KubeModel

/// An object the source saw but could not accept, and what the store did about it.
public struct InvalidObject: Sendable, Equatable, CustomStringConvertible {
    public var kind: ResourceKind
    public var name: ObjectName
    /// The errors that rejected it (object and field named in each).
    public var issues: [DecodeIssue]
    /// True when an earlier, valid version exists and keeps its rules; false on a fresh start or for an object
    /// never seen valid, which then has no rules until it is fixed.
    public var keptLastGood: Bool

    public var description: String {
        let why = self.issues.map(\.description).joined(separator: "; ")
        return self.keptLastGood
            ? "\(why) (invalid update ignored: the last good version of \(self.kind) \(self.name) keeps its rules until it is fixed or deleted)"
            : "\(why) (no last good version of \(self.kind) \(self.name): it has no rules until it is fixed)"
    }
}

/// The daemon's copy of the cluster, fed by a source, read by the sync loop. Thread-safe.
///
/// Counts pending Service and endpoint changes (upstream's change trackers) and remembers each
/// EndpointSlice's `last-change-trigger-time` until the commit that carries it.
///
/// One rule for invalid objects, whatever path they arrive by (watch event, relist after a 410 or a reconnect,
/// a poll, a manifest reload): the last good version of a Service, EndpointSlice or Endpoints keeps its rules
/// until the object is fixed or deleted. Every invalid version is reported to `onInvalid` each time it is seen.
/// So the kernel's state does not depend on the history of watch faults.
public final class ClusterStore: @unchecked Sendable {
    private let lock = NSLock()
    private var state = ClusterState()
    private var servicesSynced = false
    private var endpointsSynced = false
    private var pendingServices = 0
    private var pendingEndpoints = 0
    private var triggerTimes: [Date] = []
    private var onChange: @Sendable () -> Void = {}
    private var onInvalid: @Sendable (InvalidObject) -> Void = { _ in }
    private var onRequest: APIRequestObserver?
    private var sawNode = false
    /// Callers of `waitForNode` still waiting, each with what it waits for.
    private var nodeWaiters: [UInt64: (until: @Sendable (Node) -> Bool, resume: CheckedContinuation<Node?, Never>)] = [:]
    private var nextWaiter: UInt64 = 0

    public init() {}

    /// Called (outside the lock) after every change that should lead to a sync.
    public func setOnChange(_ f: @escaping @Sendable () -> Void) {
        self.lock.withLock { self.onChange = f }
    }

    /// Called (outside the lock) for every invalid object seen.
    public func setOnInvalid(_ f: @escaping @Sendable (InvalidObject) -> Void) {
        self.lock.withLock { self.onInvalid = f }
    }

    /// Told of every request an apiserver source feeding this store makes (set before the source runs).
    public func setOnRequest(_ f: @escaping APIRequestObserver) {
        self.lock.withLock { self.onRequest = f }
    }

    /// The request observer, if one was set.
    public var requestObserver: APIRequestObserver? { self.lock.withLock { self.onRequest } }

    /// True once both the Services and the endpoints have been listed (upstream's `isInitialized`).
    public var isInitialized: Bool {
        self.lock.withLock { self.servicesSynced && self.endpointsSynced }
    }

    /// This node's Node object as last seen (`state.node`); nil before it is seen, or after it was deleted.
    public var node: Node? { self.lock.withLock { self.state.node } }

    /// True once the source has seen this node's Node at least once, even if it was deleted since
    /// (`nodeSeen && node == nil` is a deleted Node).
    public var nodeSeen: Bool { self.lock.withLock { self.sawNode } }

    /// True while a `waitForNode` call is waiting (tests wait on it instead of sleeping).
    var hasNodeWaiters: Bool { self.lock.withLock { !self.nodeWaiters.isEmpty } }

    /// Waits until this node's Node is present and `until` holds for it (upstream's NodeManager waits for node IPs,
    /// and for podCIDRs in NodeCIDR mode); returns it, or nil when `timeout` passes first or the task is cancelled.
    /// Returns at once when the Node already qualifies.
    public func waitForNode(timeout: Duration, until: @escaping @Sendable (Node) -> Bool = { _ in true }) async -> Node? {
        if let node = self.node, until(node) { return node }
        let id: UInt64 = self.lock.withLock {
            self.nextWaiter += 1
            return self.nextWaiter
        }
        return await withTaskGroup(of: Node?.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (c: CheckedContinuation<Node?, Never>) in
                        let now: Node?? = self.lock.withLock {
                            if let node = self.state.node, until(node) { return .some(node) }
                            if Task.isCancelled { return .some(nil) }
                            self.nodeWaiters[id] = (until, c)
                            return .none
                        }
                        if let now { c.resume(returning: now) }
                    }
                } onCancel: {
                    self.lock.withLock { self.nodeWaiters.removeValue(forKey: id) }?.resume.resume(returning: nil)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// What the sync loop works from: a snapshot, the change counts since the last take, the trigger times.
    public struct Snapshot: Sendable {
        public var state: ClusterState
        public var serviceChanges: Int
        public var endpointChanges: Int
        public var triggerTimes: [Date]
        public init(state: ClusterState, serviceChanges: Int = 0, endpointChanges: Int = 0, triggerTimes: [Date] = []) {
            self.state = state
            self.serviceChanges = serviceChanges
            self.endpointChanges = endpointChanges
            self.triggerTimes = triggerTimes
        }
    }

    /// The current state and the changes pending since the last take, which are cleared.
    public func take() -> Snapshot {
        self.lock.withLock {
            let s = Snapshot(state: self.state, serviceChanges: self.pendingServices,
                             endpointChanges: self.pendingEndpoints, triggerTimes: self.triggerTimes)
            self.pendingServices = 0
            self.pendingEndpoints = 0
            self.triggerTimes = []
            return s
        }
    }

    /// The current state without taking the pending changes.
    public func peek() -> ClusterState { self.lock.withLock { self.state } }

    public var pending: (services: Int, endpoints: Int) {
        self.lock.withLock { (self.pendingServices, self.pendingEndpoints) }
    }

    // MARK: - Changes

    /// Applies one source event.
    public func apply(_ event: SourceEvent<DecodeResult>) {
        switch event {
        case .replaceAll(let kind, let results): self.replace(kind, with: results)
        case .synced(let kind): self.markSynced(kind)
        case .upsert(let kind, let result): self.upsert(kind, result)
        case .delete(let kind, let name): self.delete(kind, name)
        case .node(let node): self.setNode(node)
        }
    }

    /// Replaces everything of one kind (a list, a relist, a poll's first list): listed valid objects replace
    /// what is held, held objects not listed go, and a listed invalid object keeps its last good version.
    public func replace(_ kind: ResourceKind, with results: [DecodeResult]) {
        let invalid = Self.invalid(kind, in: results)
        self.replace(
            kind, services: results.compactMap(\.service).map(Self.content),
            slices: results.compactMap(\.slice).map(Self.content), invalid: invalid)
    }

    /// Objects are held without their resourceVersion: a relist that only renumbers objects (an apiserver
    /// restored from a backup, a test apiserver restarted) is no change, re-derives nothing and observes no
    /// programming latency.
    static func content(_ s: Service) -> Service {
        var s = s
        s.resourceVersion = ""
        return s
    }

    static func content(_ s: EndpointSlice) -> EndpointSlice {
        var s = s
        s.resourceVersion = ""
        return s
    }

    /// A whole manifest load: every kind at once, then both marked listed. `keep` names objects whose files
    /// could not be read this time; they keep whatever they had.
    public func replace(load: ManifestLoad, keep: [(ResourceKind, ObjectName)] = []) {
        var invalid: [ResourceKind: [ObjectName: [DecodeIssue]]] = [:]
        for issue in load.errors {
            guard let name = issue.object, let kind = ResourceKind(rawValue: issue.kind) else { continue }
            invalid[kind, default: [:]][name, default: []].append(issue)
        }
        for (kind, name) in keep where invalid[kind]?[name] == nil { invalid[kind, default: [:]][name] = [] }
        self.replace(.service, services: load.services.map(Self.content), invalid: invalid[.service] ?? [:])
        self.replace(.endpointSlice, slices: load.slices.filter { !$0.fromEndpoints }.map(Self.content),
                     invalid: invalid[.endpointSlice] ?? [:])
        self.replace(.endpoints, slices: load.slices.filter(\.fromEndpoints).map(Self.content),
                     invalid: invalid[.endpoints] ?? [:])
        self.markSynced(.service)
        self.markSynced(.endpointSlice)
    }

    /// A watch or poll upsert: a valid object replaces what is held; an invalid one is reported and ignored.
    public func upsert(_ kind: ResourceKind, _ result: DecodeResult) {
        if let s = result.service.map(Self.content) {
            self.mutate { state in
                guard state.services[s.name] != s else { return (0, 0) }
                state.upsert(s)
                return (1, 0)
            }
        } else if let s = result.slice.map(Self.content) {
            var changed = false
            self.mutate { state in
                changed = (s.fromEndpoints ? state.endpointsSlice(of: s.service) : state.slices[s.name]) != s
                state.upsert(s)
                return (0, 1)
            }
            if changed { self.rememberTriggers([s]) }
        } else if case .rejected(_, let name?) = result.object {
            self.report(kind, name, result.issues.filter { $0.severity == .error })
        }
    }

    public func delete(_ kind: ResourceKind, _ name: ObjectName) {
        self.mutate { state in
            switch kind {
            case .service:
                guard state.services[name] != nil else { return (0, 0) }
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

    public func markSynced(_ kind: ResourceKind) {
        let notify: @Sendable () -> Void = self.lock.withLock {
            if kind == .service { self.servicesSynced = true } else { self.endpointsSynced = true }
            return self.onChange
        }
        notify()
    }

    /// Records this node's Node (nil: deleted, or absent from a manifest reload) in the state, which re-derives the
    /// Services with zone hints when the zone changed. Held without its resourceVersion, as other objects are.
    public func setNode(_ new: Node?) {
        let content = new.map { node -> Node in
            var n = node
            n.resourceVersion = ""
            return n
        }
        let (changed, notify, ready) = self.lock.withLock {
            () -> (Bool, @Sendable () -> Void, [(CheckedContinuation<Node?, Never>, Node)]) in
            if content != nil { self.sawNode = true }
            guard self.state.node != content else { return (false, self.onChange, []) }
            self.state.setNode(content)
            var ready: [(CheckedContinuation<Node?, Never>, Node)] = []
            if let node = content {
                for (id, waiter) in self.nodeWaiters where waiter.until(node) {
                    self.nodeWaiters[id] = nil
                    ready.append((waiter.resume, node))
                }
            }
            return (true, self.onChange, ready)
        }
        for (c, node) in ready { c.resume(returning: node) }
        if changed { notify() }
    }

    // MARK: - Internals

    private static func invalid(_ kind: ResourceKind, in results: [DecodeResult]) -> [ObjectName: [DecodeIssue]] {
        var out: [ObjectName: [DecodeIssue]] = [:]
        for r in results {
            if case .rejected(_, let name?) = r.object { out[name, default: []] += r.issues.filter { $0.severity == .error } }
        }
        return out
    }

    private func replace(_ kind: ResourceKind, services: [Service] = [], slices: [EndpointSlice] = [],
                         invalid: [ObjectName: [DecodeIssue]]) {
        var reports: [InvalidObject] = []
        // Only slices that changed carry their trigger time to the next sync: a relist repeats every slice, and
        // upstream observes the programming latency of changes only.
        var changedSlices: [EndpointSlice] = []
        self.mutate { state in
            var changes = 0
            switch kind {
            case .service:
                let wanted = Dictionary(services.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
                for name in state.services.keys where wanted[name] == nil && invalid[name] == nil {
                    state.removeService(name)
                    changes += 1
                }
                for s in wanted.values where state.services[s.name] != s {
                    state.upsert(s)
                    changes += 1
                }
                for (name, issues) in invalid where wanted[name] == nil {
                    reports.append(InvalidObject(kind: kind, name: name, issues: issues,
                                                 keptLastGood: state.services[name] != nil))
                }
                return (changes, 0)
            case .endpointSlice:
                let wanted = Dictionary(slices.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
                for (name, slice) in state.slices where !slice.fromEndpoints && wanted[name] == nil && invalid[name] == nil {
                    state.removeSlice(name)
                    changes += 1
                }
                for s in wanted.values where state.slices[s.name] != s {
                    state.upsert(s)
                    changedSlices.append(s)
                    changes += 1
                }
                for (name, issues) in invalid where wanted[name] == nil {
                    reports.append(InvalidObject(kind: kind, name: name, issues: issues,
                                                 keptLastGood: state.slices[name] != nil))
                }
                return (0, changes)
            case .endpoints:
                // Endpoints are named after their Service; converted slices are kept per Service.
                let wanted = Dictionary(slices.map { ($0.service, $0) }, uniquingKeysWith: { $1 })
                for name in state.endpointsServices where wanted[name] == nil && invalid[name] == nil {
                    state.removeEndpoints(of: name)
                    changes += 1
                }
                for (service, s) in wanted where state.endpointsSlice(of: service) != s {
                    state.upsert(s)
                    changedSlices.append(s)
                    changes += 1
                }
                for (name, issues) in invalid where wanted[name] == nil {
                    reports.append(InvalidObject(kind: kind, name: name, issues: issues,
                                                 keptLastGood: state.endpointsSlice(of: name) != nil))
                }
                return (0, changes)
            }
        }
        self.rememberTriggers(changedSlices)
        let notify = self.lock.withLock { self.onInvalid }
        for r in reports.sorted(by: { $0.name < $1.name }) { notify(r) }
    }

    private func report(_ kind: ResourceKind, _ name: ObjectName, _ issues: [DecodeIssue]) {
        let (kept, notify) = self.lock.withLock { () -> (Bool, @Sendable (InvalidObject) -> Void) in
            let kept: Bool
            switch kind {
            case .service: kept = self.state.services[name] != nil
            case .endpointSlice: kept = self.state.slices[name] != nil
            case .endpoints: kept = self.state.endpointsSlice(of: name) != nil
            }
            return (kept, self.onInvalid)
        }
        notify(InvalidObject(kind: kind, name: name, issues: issues, keptLastGood: kept))
    }

    private func mutate(_ body: (inout ClusterState) -> (services: Int, endpoints: Int)) {
        let (total, notify): (Int, @Sendable () -> Void) = self.lock.withLock {
            let (s, e) = body(&self.state)
            self.pendingServices += s
            self.pendingEndpoints += e
            return (s + e, self.onChange)
        }
        if total > 0 { notify() }
    }

    private func rememberTriggers(_ slices: [EndpointSlice]) {
        let dates = slices.compactMap { $0.lastChangeTriggerTime.flatMap(RFC3339.parse) }
        guard !dates.isEmpty else { return }
        self.lock.withLock { self.triggerTimes += dates }
    }
}
