/// `namespace/name` of a namespaced object; a cluster-scoped object (a Node) has an empty namespace and is
/// written as its name alone.
public struct ObjectName: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var namespace: String
    public var name: String
    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }
    public var description: String { namespace.isEmpty ? name : "\(namespace)/\(name)" }
    public static func < (a: ObjectName, b: ObjectName) -> Bool {
        (a.namespace, a.name) < (b.namespace, b.name)
    }
}

/// L4 protocol of a Service port.
public enum TransportProtocol: String, Sendable, Hashable, CaseIterable {
    case tcp = "TCP"
    case udp = "UDP"
    case sctp = "SCTP"

    /// `tcp`, `udp`, `sctp`: iptables' spelling and the input of upstream's chain-name hash.
    public var lowercased: String {
        switch self {
        case .tcp: "tcp"
        case .udp: "udp"
        case .sctp: "sctp"
        }
    }
}

/// `spec.type` of a Service.
public enum ServiceType: String, Sendable, Hashable {
    case clusterIP = "ClusterIP"
    case nodePort = "NodePort"
    case loadBalancer = "LoadBalancer"
    case externalName = "ExternalName"
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
public enum TrafficPolicy: String, Sendable, Hashable {
    case cluster = "Cluster"
    case local = "Local"
}

/// `targetPort`: a number or a port name.
public enum IntOrString: Hashable, Sendable {
    case int(Int)
    case string(String)
}

/// One entry of `spec.ports`.
public struct ServicePort: Hashable, Sendable {
    public var name: String
    public var `protocol`: TransportProtocol
    public var port: Int
    public var targetPort: IntOrString?
    /// 0 when the port has no NodePort.
    public var nodePort: Int

    public init(name: String = "", protocol: TransportProtocol = .tcp, port: Int,
                targetPort: IntOrString? = nil, nodePort: Int = 0) {
        self.name = name
        self.protocol = `protocol`
        self.port = port
        self.targetPort = targetPort
        self.nodePort = nodePort
    }
}

/// A v1 Service, reduced to what a service proxy reads, with every field already validated.
public struct Service: Hashable, Sendable {
    public var name: ObjectName
    public var resourceVersion: String
    public var labels: [String: String]
    public var type: ServiceType
    /// `spec.clusterIPs` (or `spec.clusterIP`); empty for headless (`None`) or unset.
    public var clusterIPs: [IPAddress]
    /// True when `spec.clusterIP` is `None`.
    public var isHeadless: Bool
    public var ports: [ServicePort]
    public var externalIPs: [IPAddress]
    /// `status.loadBalancer.ingress[].ip` whose `ipMode` is unset or `VIP`.
    public var loadBalancerIngressIPs: [IPAddress]
    /// `spec.loadBalancerSourceRanges`, parsed leniently (surrounding whitespace trimmed).
    public var loadBalancerSourceRanges: [CIDR]
    public var externalTrafficPolicy: TrafficPolicy
    public var internalTrafficPolicy: TrafficPolicy
    /// 0 when unset.
    public var healthCheckNodePort: Int
    /// ClientIP affinity timeout in seconds, or nil for `sessionAffinity: None`.
    public var sessionAffinityTimeout: Int?
    /// The `service.kubernetes.io/topology-mode` annotation (or the deprecated
    /// `service.kubernetes.io/topology-aware-hints`), which turns on zone hints; nil when unset.
    public var topologyMode: String?
    /// `spec.trafficDistribution` (`PreferClose`, ...), which also turns on hints; nil when unset.
    public var trafficDistribution: String?

    public init(name: ObjectName, resourceVersion: String = "", labels: [String: String] = [:],
                type: ServiceType = .clusterIP, clusterIPs: [IPAddress] = [], isHeadless: Bool = false,
                ports: [ServicePort] = [], externalIPs: [IPAddress] = [], loadBalancerIngressIPs: [IPAddress] = [],
                loadBalancerSourceRanges: [CIDR] = [], externalTrafficPolicy: TrafficPolicy = .cluster,
                internalTrafficPolicy: TrafficPolicy = .cluster, healthCheckNodePort: Int = 0,
                sessionAffinityTimeout: Int? = nil, topologyMode: String? = nil, trafficDistribution: String? = nil) {
        self.name = name
        self.resourceVersion = resourceVersion
        self.labels = labels
        self.type = type
        self.clusterIPs = clusterIPs
        self.isHeadless = isHeadless
        self.ports = ports
        self.externalIPs = externalIPs
        self.loadBalancerIngressIPs = loadBalancerIngressIPs
        self.loadBalancerSourceRanges = loadBalancerSourceRanges
        self.externalTrafficPolicy = externalTrafficPolicy
        self.internalTrafficPolicy = internalTrafficPolicy
        self.healthCheckNodePort = healthCheckNodePort
        self.sessionAffinityTimeout = sessionAffinityTimeout
        self.topologyMode = topologyMode
        self.trafficDistribution = trafficDistribution
    }

    /// The label that hands a Service to another proxy; kube-proxy skips such Services.
    public static let serviceProxyNameLabel = "service.kubernetes.io/service-proxy-name"
    /// Label on headless Services; kube-proxy's informer filters them out.
    public static let headlessLabel = "service.kubernetes.io/headless"
}

/// `endpoints[].conditions` of an EndpointSlice; nil means unset.
public struct EndpointConditions: Hashable, Sendable {
    public var ready: Bool?
    public var serving: Bool?
    public var terminating: Bool?
    public init(ready: Bool? = nil, serving: Bool? = nil, terminating: Bool? = nil) {
        self.ready = ready
        self.serving = serving
        self.terminating = terminating
    }
}

/// One entry of an EndpointSlice's `endpoints`.
public struct Endpoint: Hashable, Sendable {
    /// `addresses`, already checked to be of the slice's address type. kube-proxy uses only the first.
    public var addresses: [IPAddress]
    public var conditions: EndpointConditions
    public var nodeName: String?
    public var zone: String?
    /// `hints.forZones[].name`: the zones this endpoint should serve under topology-aware routing.
    public var zoneHints: [String]
    /// `hints.forNodes[].name`: the nodes this endpoint should serve (`PreferSameNode`).
    public var nodeHints: [String]
    public init(addresses: [IPAddress], conditions: EndpointConditions = .init(), nodeName: String? = nil,
                zone: String? = nil, zoneHints: [String] = [], nodeHints: [String] = []) {
        self.addresses = addresses
        self.conditions = conditions
        self.nodeName = nodeName
        self.zone = zone
        self.zoneHints = zoneHints
        self.nodeHints = nodeHints
    }
}

/// One entry of an EndpointSlice's `ports`. A nil name or port is kept so the compiler can ignore it as upstream does.
public struct EndpointPort: Hashable, Sendable {
    public var name: String?
    public var port: Int?
    public var `protocol`: TransportProtocol
    public init(name: String? = "", port: Int?, protocol: TransportProtocol = .tcp) {
        self.name = name
        self.port = port
        self.protocol = `protocol`
    }
}

/// A discovery.k8s.io/v1 EndpointSlice (or a v1 Endpoints converted to one).
public struct EndpointSlice: Hashable, Sendable {
    /// The slice's own namespace/name.
    public var name: ObjectName
    /// The Service it belongs to (`kubernetes.io/service-name` label), in the same namespace.
    public var serviceName: String
    public var resourceVersion: String
    /// nil for `FQDN` slices, which kube-proxy ignores.
    public var addressType: IPFamily?
    public var endpoints: [Endpoint]
    public var ports: [EndpointPort]
    /// `endpoints.kubernetes.io/last-change-trigger-time`, as written (RFC 3339).
    public var lastChangeTriggerTime: String?
    /// True when this slice was converted from a v1 Endpoints object.
    public var fromEndpoints: Bool

    public init(name: ObjectName, serviceName: String, resourceVersion: String = "", addressType: IPFamily? = .ipv4,
                endpoints: [Endpoint] = [], ports: [EndpointPort] = [], lastChangeTriggerTime: String? = nil,
                fromEndpoints: Bool = false) {
        self.name = name
        self.serviceName = serviceName
        self.resourceVersion = resourceVersion
        self.addressType = addressType
        self.endpoints = endpoints
        self.ports = ports
        self.lastChangeTriggerTime = lastChangeTriggerTime
        self.fromEndpoints = fromEndpoints
    }

    /// The Service this slice serves.
    public var service: ObjectName { ObjectName(namespace: name.namespace, name: serviceName) }

    public static let serviceNameLabel = "kubernetes.io/service-name"
}
