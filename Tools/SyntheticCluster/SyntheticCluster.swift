import KubeModel

/// Deterministic synthetic clusters for benchmarks: N Services × E endpoints with the mix of `make bench`
/// (20% NodePort, 5% LoadBalancer with source ranges, 5% ClientIP affinity, 5% externalTrafficPolicy Local,
/// 10% multi-port). Same seed, same cluster.
public struct SyntheticCluster {
    public var services: [Service] = []
    public var slices: [EndpointSlice] = []

    /// A small xorshift generator: reproducible across runs and platforms.
    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
        mutating func percent() -> Int { Int(next() % 100) }
    }

    public init(services count: Int, endpointsPerService: Int = 3, seed: UInt64 = 0x6b75_6265_6e61_7464, nodeName: String = "node-1") {
        var rng = Rng(state: seed)
        var nodePort = 30000
        for i in 0..<count {
            let ns = "ns\(i % 100)"
            let name = "svc\(i)"
            let roll = rng.percent()
            // Disjoint bands so the mix is exact in expectation: 5 LB, 15 NodePort (+5 LB = 20% with NodePorts).
            let isLB = roll < 5
            let isNodePort = roll >= 5 && roll < 20
            let affinity = rng.percent() < 5
            let etpLocal = (isLB || isNodePort) ? rng.percent() < 25 : false  // 25% of the 20% = 5%
            let multiPort = rng.percent() < 10
            var ports = [ServicePort(name: "http", protocol: .tcp, port: 80, targetPort: .int(8080))]
            if multiPort { ports.append(ServicePort(name: "metrics", protocol: .tcp, port: 9090, targetPort: .int(9090))) }
            if isLB || isNodePort {
                for p in ports.indices {
                    ports[p].nodePort = nodePort
                    nodePort += 1
                    if nodePort > 32767 { nodePort = 30000 }
                }
            }
            let clusterIP = IPAddress(bytes: [10, 96, UInt8((i >> 8) & 0xFF), UInt8(i & 0xFF)].with(i >> 16))!
            services.append(Service(
                name: ObjectName(namespace: ns, name: name), resourceVersion: "1",
                type: isLB ? .loadBalancer : isNodePort ? .nodePort : .clusterIP,
                clusterIPs: [clusterIP], ports: ports,
                loadBalancerIngressIPs: isLB ? [IPAddress(bytes: [198, 18, UInt8((i >> 8) & 0xFF), UInt8(i & 0xFF)])!] : [],
                loadBalancerSourceRanges: isLB ? [CIDR("203.0.113.0/24")!, CIDR("198.51.100.0/24")!] : [],
                externalTrafficPolicy: etpLocal ? .local : .cluster,
                healthCheckNodePort: (isLB && etpLocal) ? 32000 + (i % 700) : 0,
                sessionAffinityTimeout: affinity ? 10800 : nil))
            var endpoints: [Endpoint] = []
            for e in 0..<endpointsPerService {
                let n = i * endpointsPerService + e
                let ip = IPAddress(bytes: [10, UInt8(128 + (n >> 16) & 0x7F), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)])!
                endpoints.append(Endpoint(addresses: [ip], conditions: EndpointConditions(ready: true),
                                          nodeName: e == 0 ? nodeName : "node-\(2 + (n % 50))"))
            }
            slices.append(EndpointSlice(
                name: ObjectName(namespace: ns, name: "\(name)-abcde"), serviceName: name, resourceVersion: "1",
                addressType: .ipv4, endpoints: endpoints,
                ports: ports.map { EndpointPort(name: $0.name, port: $0.port == 80 ? 8080 : 9090, protocol: .tcp) }))
        }
    }

    public var state: ClusterState { ClusterState(services: services, slices: slices) }
}

extension Array where Element == UInt8 {
    /// Puts the high bits of a large index into the second octet so 10.96.0.0/12 holds 30k+ Services.
    fileprivate func with(_ high: Int) -> [UInt8] {
        var a = self
        a[1] = UInt8(96 + high)
        return a
    }
}
