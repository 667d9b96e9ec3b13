/// A v1 Node, reduced to what a service proxy reads of its own Node: the zone label (topology hints),
/// taints and deletion (load-balancer eligibility), addresses (node IPs, families) and podCIDRs
/// (the NodeCIDR local-traffic detector).
public struct Node: Hashable, Sendable {
    public var name: String
    public var resourceVersion: String
    public var labels: [String: String]
    public var taints: [NodeTaint]
    /// `metadata.deletionTimestamp` as written (RFC 3339); nil while the Node is not being deleted.
    public var deletionTimestamp: String?
    /// `status.addresses`, in the order the Node lists them; entries whose address does not parse are dropped
    /// by the decoder (as upstream's `ParseIPSloppy` callers skip them).
    public var addresses: [NodeAddress]
    /// `spec.podCIDRs` (or `spec.podCIDR`).
    public var podCIDRs: [CIDR]

    public init(name: String, resourceVersion: String = "", labels: [String: String] = [:], taints: [NodeTaint] = [],
                deletionTimestamp: String? = nil, addresses: [NodeAddress] = [], podCIDRs: [CIDR] = []) {
        self.name = name
        self.resourceVersion = resourceVersion
        self.labels = labels
        self.taints = taints
        self.deletionTimestamp = deletionTimestamp
        self.addresses = addresses
        self.podCIDRs = podCIDRs
    }

    /// `topology.kubernetes.io/zone`: the zone that zone hints are matched against.
    public static let zoneLabel = "topology.kubernetes.io/zone"
    /// The taint the cluster autoscaler puts on a node it is about to remove.
    public static let toBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

    /// This node's zone, or nil when the label is unset.
    public var zone: String? { labels[Node.zoneLabel] }
}

/// One entry of `spec.taints`.
public struct NodeTaint: Hashable, Sendable {
    public var key: String
    public var value: String
    public var effect: String
    public init(key: String, value: String = "", effect: String = "") {
        self.key = key
        self.value = value
        self.effect = effect
    }
}

/// One entry of `status.addresses`.
public struct NodeAddress: Hashable, Sendable {
    /// `InternalIP`, `ExternalIP`, `Hostname`, ... as written.
    public var type: String
    public var address: IPAddress
    public init(type: String, address: IPAddress) {
        self.type = type
        self.address = address
    }
}
