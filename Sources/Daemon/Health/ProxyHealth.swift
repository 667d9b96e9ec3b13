import Foundation
import KubeModel

/// The proxy's own health, as upstream's `ProxyHealthServer` tracks it: per IP family, when rules
/// were last written and the oldest change still waiting to be written.
///
/// Thread-safe; the sync loop writes, the HTTP handlers read.
///
/// Wiring, as upstream's proxier does it: call `updated(family:)` once when the sync loop starts
/// (so a proxy that never manages to sync turns unhealthy), `queuedUpdate(family:)` whenever a
/// Service or EndpointSlice change asks for a sync, and `updated(family:)` after every successful
/// write of a family's rules.
public final class ProxyHealth: @unchecked Sendable {
    /// How long a queued update may wait for a successful sync (upstream: 2 × syncPeriod).
    public let healthTimeout: Duration
    /// The clock the HTTP handlers read; tests inject their own.
    public let clock: @Sendable () -> WallTime

    private let lock = NSLock()
    private var lastUpdated: [IPFamily: WallTime] = [:]
    private var oldestPendingQueued: [IPFamily: WallTime] = [:]
    // Upstream: "The node is eligible (and thus the proxy healthy) while it's starting up and
    // until we've processed the first node event that indicates the contrary."
    private var eligible = true

    public init(healthTimeout: Duration, clock: @escaping @Sendable () -> WallTime = { WallTime.now() }) {
        self.healthTimeout = healthTimeout
        self.clock = clock
    }

    /// Upstream's `healthTimeout` for a given `syncPeriod`.
    public convenience init(syncPeriod: Duration, clock: @escaping @Sendable () -> WallTime = { WallTime.now() }) {
        self.init(healthTimeout: syncPeriod * 2, clock: clock)
    }

    /// A change for `family` is waiting to be written. Only the oldest pending one counts.
    public func queuedUpdate(family: IPFamily, at time: WallTime? = nil) {
        let time = time ?? self.clock()
        self.lock.withLock {
            if self.oldestPendingQueued[family] == nil {
                self.oldestPendingQueued[family] = time
            }
        }
    }

    /// The rules of `family` were written successfully; nothing is pending for it any more.
    public func updated(family: IPFamily, at time: WallTime? = nil) {
        let time = time ?? self.clock()
        self.lock.withLock {
            self.oldestPendingQueued[family] = nil
            self.lastUpdated[family] = time
        }
    }

    /// False once the Node is being deleted or is tainted `ToBeDeletedByClusterAutoscaler`; `/healthz`
    /// then answers 503 so load balancers drain the node (`/livez` ignores it).
    public var nodeEligible: Bool {
        get { self.lock.withLock { self.eligible } }
        set { self.lock.withLock { self.eligible = newValue } }
    }

    /// Upstream's eligibility rule (`SyncNode`): not deleted and not marked for deletion by the
    /// cluster autoscaler.
    public static func isNodeEligible(beingDeleted: Bool, taintKeys: [String]) -> Bool {
        !beingDeleted && !taintKeys.contains(Node.toBeDeletedTaint)
    }

    /// A Node event (upstream's `SyncNode`): eligibility follows the Node's deletion timestamp and taints.
    public func syncNode(_ node: Node) {
        self.nodeEligible = Self.isNodeEligible(beingDeleted: node.deletionTimestamp != nil,
                                                taintKeys: node.taints.map(\.key))
    }

    /// True unless some family that has synced before has had a change pending for `healthTimeout`
    /// or longer. A family that never called `updated` is "starting up" and does not count, as upstream.
    public func isHealthy(now: WallTime? = nil) -> Bool {
        self.status(now: now).healthy
    }

    /// The health verdict and the `lastUpdated` time the endpoints report: the newest update when
    /// healthy, the late family's last update when not, nil (Go's zero time) before any update.
    public func status(now: WallTime? = nil) -> (healthy: Bool, lastUpdated: WallTime?) {
        let now = now ?? self.clock()
        return self.lock.withLock {
            var newest: WallTime?
            // Sorted so that with two late families the answer does not depend on hashing.
            for family in self.lastUpdated.keys.sorted(by: { $0.rawValue < $1.rawValue }) {
                let updated = self.lastUpdated[family]!
                if newest == nil || updated > newest! { newest = updated }
                guard let queued = self.oldestPendingQueued[family] else { continue }
                if now.since(queued) < self.healthTimeout { continue }
                return (false, updated)
            }
            return (true, newest)
        }
    }
}
