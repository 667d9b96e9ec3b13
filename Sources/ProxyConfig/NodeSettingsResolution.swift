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
    ///   family; BridgeInterface / InterfaceNamePrefix use `detectLocal`.
    /// - `nodePortAddresses`: empty, or no entry of this family, or a `/0` / `all` entry means `.all`
    ///   (upstream's `NewNodePortAddresses` in iptables mode). Otherwise the node IPs of this family that
    ///   fall in the listed CIDRs; `primary` is the first node IP of this family; `localhost` is
    ///   127.0.0.0/8 or ::1/128 and always yields the loopback address, which every host has.
    /// - `localhostNodePorts` only ever applies to IPv4.
    public func nodeSettings(
        family: IPFamily, nodeName: String, nodeIPs: [IPAddress], podCIDR: CIDR?, features: KernelFeatures,
        ruleLayout: RuleLayout = .current
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
        return NodeSettings(
            family: family,
            nodeName: nodeName,
            nodeIPs: familyIPs,
            masqueradeBit: iptables.masqueradeBit,
            masqueradeAll: iptables.masqueradeAll,
            localhostNodePorts: family == .ipv4 && iptables.localhostNodePorts,
            localDetector: detector,
            nodePortAddresses: resolveNodePortAddresses(family: family, familyIPs: familyIPs),
            conntrackTCPBeLiberal: conntrack.tcpBeLiberal,
            features: features,
            ruleLayout: ruleLayout)
    }

    private func resolveNodePortAddresses(family: IPFamily, familyIPs: [IPAddress]) -> NodePortAddresses {
        let loopback = IPAddress(family == .ipv4 ? "127.0.0.1" : "::1")!
        var cidrs: [CIDR] = []
        var explicit: [IPAddress] = []
        var any = false
        for entry in nodePortAddresses {
            switch NodePortAddressKeyword(rawValue: entry) {
            case .all?:
                return .all
            case .primary?:
                any = true
                if let first = familyIPs.first { explicit.append(first) }
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
        for ip in explicit + familyIPs.filter({ ip in cidrs.contains { $0.contains(ip) } }) where !out.contains(ip) {
            out.append(ip)
        }
        return .addresses(out)
    }
}
