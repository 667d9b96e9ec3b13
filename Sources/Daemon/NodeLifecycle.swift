import KubeModel
import KubeSource
import Logging

/// What kube-natd does about its own Node over its life, as upstream's `NodeManager` (pkg/proxy/node.go): wait for
/// the Node before the first sync, and restart (exit, for the supervisor to start it again) when the values taken
/// from it at start change: its node IPs always, its podCIDRs in NodeCIDR mode.
public struct NodeLifecycle: Sendable {
    /// Wait for the Node before the first sync (the apiserver source; manifest files need not hold a Node).
    public var waitForNode: Bool
    /// detectLocalMode NodeCIDR: wait for podCIDRs too, and restart when they change (upstream's `watchPodCIDRs`).
    public var watchPodCIDRs: Bool
    /// How often the wait looks (upstream: 1 s).
    public var pollInterval: Duration = .seconds(1)
    /// How long it waits before giving up (upstream: 5 minutes "for allocators to assign a PodCIDR").
    public var timeout: Duration = .seconds(300)

    public init(waitForNode: Bool, watchPodCIDRs: Bool) {
        self.waitForNode = waitForNode
        self.watchPodCIDRs = watchPodCIDRs
    }

    /// Why the Node is not yet one to start from (nil: it is): it must exist and list a node IP, and have podCIDRs
    /// when they are watched.
    public func notReady(_ node: Node?, name: String) -> String? {
        guard let node else { return "node \"\(name)\" not found" }
        if NodeSetup.hostIPs(of: node).isEmpty { return "node \"\(name)\": host IP unknown (no InternalIP or ExternalIP)" }
        if self.watchPodCIDRs && node.podCIDRs.isEmpty { return "node \"\(name)\" does not have any PodCIDR allocated" }
        return nil
    }

    /// Why kube-natd must restart, given the Node it started from and the Node now; nil to carry on. As upstream:
    /// a deleted Node, changed podCIDRs (when watched), changed node IPs; a Node that lists no IP any more is
    /// logged by the caller but does not restart.
    public func restartReason(started: Node?, now: Node?) -> String? {
        guard let now else { return started.map { "node \"\($0.name)\" is being deleted" } }
        let old = started?.podCIDRs ?? []
        if self.watchPodCIDRs && old != now.podCIDRs {
            return "PodCIDRs changed for node \"\(now.name)\": \(Self.list(old)) -> \(Self.list(now.podCIDRs))"
        }
        let oldIPs = started.map(NodeSetup.hostIPs(of:)) ?? []
        let newIPs = NodeSetup.hostIPs(of: now)
        if !newIPs.isEmpty && oldIPs != newIPs {
            return "NodeIPs changed for node \"\(now.name)\": \(Self.list(oldIPs)) -> \(Self.list(newIPs))"
        }
        return nil
    }

    /// Polls the store until the Node is ready to start from, at most `timeout` on `clock`; throws with the last
    /// reason when it does not become so (upstream returns the error and kube-proxy exits).
    public func wait<C: Clock>(for name: String, in store: ClusterStore, clock: C, logger: Logger) async throws -> Node
    where C.Duration == Duration {
        let deadline = clock.now.advanced(by: self.timeout)
        var logged: String?
        while true {
            let node = store.peek().node
            guard let why = self.notReady(node, name: name) else { return node! }
            if why != logged {
                logger.info("waiting for the Node before the first sync: \(why)")
                logged = why
            }
            if clock.now >= deadline { throw SetupError.source("gave up waiting for the Node after \(self.timeout): \(why)") }
            try await clock.sleep(until: min(clock.now.advanced(by: self.pollInterval), deadline), tolerance: nil)
        }
    }

    static func list<T: CustomStringConvertible>(_ xs: [T]) -> String { "[" + xs.map(\.description).joined(separator: " ") + "]" }
}
