import KubeModel
import ProxyConfig

/// One Service's health-check node port in one family and its ready endpoints on this node.
public struct HealthCheckEndpoints: Hashable, Sendable {
    public var service: ObjectName
    public var healthCheckNodePort: Int
    /// Distinct IPs of this family's ready endpoints on this node (terminating ones do not count).
    public var localReadyEndpoints: Int

    public init(service: ObjectName, healthCheckNodePort: Int, localReadyEndpoints: Int) {
        self.service = service
        self.healthCheckNodePort = healthCheckNodePort
        self.localReadyEndpoints = localReadyEndpoints
    }
}

extension RuleCompiler {
    /// What one family's health-check servers report, from the same service-port and endpoint views the rules
    /// are compiled from. As upstream's per-family proxier: the Services are those with a health-check node port
    /// in this family (`svcPortMap.HealthCheckNodePorts()`: LoadBalancer, eTP=Local, a ClusterIP of this family),
    /// and the count is `EndpointsMap.LocalReadyEndpoints()`: distinct IPs of ready endpoints on this node over
    /// all of the Service's slice ports, after duplicates are merged.
    public static func healthCheckEndpoints(_ state: ClusterState, settings: NodeSettings) -> [HealthCheckEndpoints] {
        var out: [HealthCheckEndpoints] = []
        for name in state.sortedServiceNames {
            let ports = ServicePortInfo.ports(of: state.services[name]!, family: settings.family)
            guard let hcnp = ports.first(where: { $0.healthCheckNodePort != 0 })?.healthCheckNodePort else { continue }
            let byPort = EndpointResolution.endpoints(
                slices: state.slices(for: name), family: settings.family, nodeName: settings.nodeName)
            var local = Set<IPAddress>()
            for list in byPort.allLists {
                for ep in list where ep.ready && ep.isLocal { local.insert(ep.ip) }
            }
            out.append(HealthCheckEndpoints(service: name, healthCheckNodePort: hcnp, localReadyEndpoints: local.count))
        }
        return out
    }
}
