import KubeModel

extension KubeProxyConfiguration {
    /// The node name kube-proxy would use: `--hostname-override`, else `hostnameOverride` from the file,
    /// else the host's name; trimmed and lowercased as kube-proxy's `nodeutil.GetHostname` does.
    public static func nodeName(flag: String?, config: String?, hostname: () -> String) -> String {
        for candidate in [flag, config] {
            if let c = candidate?.trimmingWhitespace(), !c.isEmpty { return c.lowercased() }
        }
        return hostname().trimmingWhitespace().lowercased()
    }

    /// What the rule compiler needs for one IP family of this node.
    ///
    /// - `detectLocalMode`: ClusterCIDR uses the `clusterCIDR` entry of this family (`.none` when there is
    ///   none, as upstream: no detector, no short-circuit rules); NodeCIDR uses `podCIDR` when it is of this
    ///   family (the caller picks the Node's first podCIDR of the family); BridgeInterface / InterfaceNamePrefix
    ///   use `detectLocal`.
    /// - `nodePortAddresses`: empty, or no entry of this family, or a `/0` / `all` entry means `.all`
    ///   (upstream's `NewNodePortAddresses` in iptables mode). Otherwise the local addresses of this family that
    ///   fall in the listed CIDRs (upstream's `GetNodeIPs`: every interface address, loopback included);
    ///   `localAddresses` nil matches against the node IPs instead. `primary` is the node IP of this family as a
    ///   host CIDR, unless it is a loopback address (upstream's server.go); `localhost` is 127.0.0.0/8 or ::1/128
    ///   and always yields the loopback address, which every host has.
    /// - `localhostNodePorts` only ever applies to IPv4, and is off when `nodePortAddresses` holds IPv4 CIDRs none
    ///   of which contains the loopback range (upstream's `ContainsIPv4Loopback` in `NewProxier`).
    public func nodeSettings(
        family: IPFamily, nodeName: String, nodeIPs: [IPAddress], podCIDR: CIDR?, features: KernelFeatures,
        ruleLayout: RuleLayout = .current, localAddresses: [IPAddress]? = nil
    ) -> NodeSettings {
        let familyIPs = nodeIPs.filter { $0.family == family }
        let detector: LocalTrafficDetector
        switch detectLocalMode {
        case .clusterCIDR:
            detector = clusterCIDRs.first(where: { $0.family == family }).map { .cidr($0) } ?? .none
        case .nodeCIDR:
            detector = podCIDR.flatMap { $0.family == family ? .cidr($0) : nil } ?? .none
        case .bridgeInterface:
            detector = .bridgeInterface(detectLocal.bridgeInterface)
        case .interfaceNamePrefix:
            detector = .interfaceNamePrefix(detectLocal.interfaceNamePrefix)
        }
        let candidates = (localAddresses ?? familyIPs).filter { $0.family == family }
        return NodeSettings(
            family: family,
            nodeName: nodeName,
            nodeIPs: familyIPs,
            masqueradeBit: iptables.masqueradeBit,
            masqueradeAll: iptables.masqueradeAll,
            localhostNodePorts: family == .ipv4 && iptables.localhostNodePorts
                && nodePortAddressesContainIPv4Loopback(nodeIPs: nodeIPs),
            localDetector: detector,
            nodePortAddresses: resolveNodePortAddresses(family: family, familyIPs: familyIPs, candidates: candidates),
            conntrackTCPBeLiberal: conntrack.tcpBeLiberal,
            features: features,
            ruleLayout: ruleLayout)
    }

    /// The IPv4 CIDRs `nodePortAddresses` stands for (keywords expanded as upstream's server.go does), or nil when
    /// it has none (upstream then matches all of IPv4, loopback included).
    private func ipv4NodePortCIDRs(nodeIPs: [IPAddress]) -> [CIDR]? {
        var out: [CIDR] = []
        for entry in nodePortAddresses {
            switch NodePortAddressKeyword(rawValue: entry) {
            case .all?: out.append(CIDR("0.0.0.0/0")!)
            case .localhost?: out.append(CIDR("127.0.0.0/8")!)
            case .primary?:
                if let ip = nodeIPs.first(where: { $0.family == .ipv4 }), !ip.isLoopback {
                    out.append(CIDR(address: ip, prefixLength: 32)!)
                }
            case nil:
                if let cidr = CIDR(entry), cidr.family == .ipv4 { out.append(cidr) }
            }
        }
        return out.isEmpty ? nil : out
    }

    private func nodePortAddressesContainIPv4Loopback(nodeIPs: [IPAddress]) -> Bool {
        guard let cidrs = ipv4NodePortCIDRs(nodeIPs: nodeIPs) else { return true }
        let loopback = IPAddress("127.0.0.0")!
        return cidrs.contains { $0.contains(loopback) || $0.address.isLoopback }
    }

    private func resolveNodePortAddresses(family: IPFamily, familyIPs: [IPAddress], candidates: [IPAddress])
        -> NodePortAddresses
    {
        let loopback = IPAddress(family == .ipv4 ? "127.0.0.1" : "::1")!
        var cidrs: [CIDR] = []
        var explicit: [IPAddress] = []
        var any = false
        for entry in nodePortAddresses {
            switch NodePortAddressKeyword(rawValue: entry) {
            case .all?:
                return .all
            case .primary?:
                // Upstream turns `primary` into the node IP's host CIDR, skipping a loopback node IP (no Node IP
                // known): that family then has no entry and matches all.
                guard let first = familyIPs.first, !first.isLoopback else { continue }
                any = true
                cidrs.append(CIDR(address: first, prefixLength: family == .ipv4 ? 32 : 128)!)
            case .localhost?:
                any = true
                cidrs.append(CIDR(family == .ipv4 ? "127.0.0.0/8" : "::1/128")!)
                explicit.append(loopback)
            case nil:
                guard let cidr = CIDR(entry), cidr.family == family else { continue }
                if cidr.prefixLength == 0 { return .all }
                any = true
                cidrs.append(cidr)
            }
        }
        guard any else { return .all }
        var out: [IPAddress] = []
        for ip in explicit + candidates.filter({ ip in cidrs.contains { $0.contains(ip) } }) where !out.contains(ip) {
            out.append(ip)
        }
        return .addresses(out)
    }
}
