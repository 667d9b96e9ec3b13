import KubeModel

/// For one IP family, every UDP service frontend that has at least one serving endpoint, with the IPs of
/// those endpoints: what upstream's conntrack reconciler (`CleanStaleEntries`, reference §5) compares each
/// UDP conntrack entry against. Built by the compiler, consumed by the conntrack reconciler.
public struct UDPServiceFrontends: Sendable, Equatable {
    /// A frontend address: a ClusterIP, load-balancer VIP or external IP, and the service port.
    public struct Frontend: Hashable, Sendable, CustomStringConvertible {
        public var ip: IPAddress
        public var port: Int

        public init(ip: IPAddress, port: Int) {
            self.ip = ip
            self.port = port
        }

        public var description: String { self.ip.joined(port: self.port) }
    }

    public var family: IPFamily
    /// `ip:port` → serving endpoint IPs.
    public private(set) var byAddress: [Frontend: Set<IPAddress>] = [:]
    /// NodePort (any destination address) → serving endpoint IPs.
    public private(set) var byNodePort: [Int: Set<IPAddress>] = [:]

    public init(family: IPFamily) {
        self.family = family
    }

    /// True when no entry can be stale, so the table need not be read at all.
    public var isEmpty: Bool { self.byAddress.isEmpty && self.byNodePort.isEmpty }

    /// Adds one service port. A port without serving endpoints is ignored: upstream leaves its entries alone.
    /// Upstream keeps the last service port seen for a shared frontend (map order, i.e. random); the sets are
    /// merged here instead, which can only keep more entries, never delete a live flow of another Service.
    public mutating func add(addresses: [IPAddress], port: Int, nodePort: Int, serving: Set<IPAddress>) {
        guard !serving.isEmpty else { return }
        for ip in addresses {
            self.byAddress[Frontend(ip: ip, port: port), default: []].formUnion(serving)
        }
        if nodePort != 0 {
            self.byNodePort[nodePort, default: []].formUnion(serving)
        }
    }
}
