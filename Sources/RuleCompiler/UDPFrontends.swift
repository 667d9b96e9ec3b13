import KubeModel
import ProxyConfig
import Ruleset

extension RuleCompiler {
    /// The UDP service frontends of one family and their serving endpoint IPs, from the same service-port and
    /// endpoint views the rules are compiled from, so the conntrack reconciler and the rules cannot disagree
    /// about which Services exist. As upstream's `CleanStaleEntries`: an endpoint counts when it is serving,
    /// whatever the traffic policies, topology or terminating state (changing those must not break existing
    /// flows, as for TCP); frontends are the ClusterIP, each load-balancer VIP and each external IP, plus the
    /// NodePort.
    public static func udpFrontends(_ state: ClusterState, settings: NodeSettings) -> UDPServiceFrontends {
        var out = UDPServiceFrontends(family: settings.family)
        for (name, svc) in state.services {
            let ports = ServicePortInfo.ports(of: svc, family: settings.family).filter { $0.proto == .udp }
            if ports.isEmpty { continue }
            let byPort = EndpointResolution.endpoints(
                slices: state.slices(for: name), family: settings.family, nodeName: settings.nodeName)
            for port in ports {
                let eps = byPort[EndpointResolution.Key(portName: port.portName, proto: port.proto)]
                let serving = Set(eps.lazy.filter(\.serving).map(\.ip))
                out.add(
                    addresses: [port.clusterIP] + port.loadBalancerVIPs + port.externalIPs, port: port.port,
                    nodePort: port.nodePort, serving: serving)
            }
        }
        return out
    }
}
