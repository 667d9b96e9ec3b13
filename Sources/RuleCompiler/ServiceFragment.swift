import KubeModel
import ProxyConfig
import Ruleset

/// Everything one Service contributes to the ruleset, for one family. Cached between compiles and
/// reassembled into the shared chains without being re-derived.
struct ServiceFragment {
    var natServices: [Rule] = []
    var natNodePorts: [Rule] = []
    var filterServices: [Rule] = []
    var filterExternalServices: [Rule] = []
    var filterNodePorts: [Rule] = []
    var filterProxyFirewall: [Rule] = []
    /// EXT, FW, SVC, SVL and SEP chains, in upstream's declaration order.
    var natChains: [Chain] = []
    var noLocalEndpointsInternal = 0
    var noLocalEndpointsExternal = 0
}

/// Builds the rules of one service port. One method per rule family, each short, following the
/// corresponding block of upstream's `syncProxyRules`.
struct ServicePortRules {
    let port: ServicePortInfo
    let cats: EndpointCategories
    let settings: NodeSettings
    let largeClusterMode: Bool

    let proto: String
    let svcChain: String
    let svlChain: String
    let extChain: String
    let fwChain: String

    let hasInternalEndpoints: Bool
    let hasExternalEndpoints: Bool
    let usesExternalTrafficChain: Bool
    let usesFWChain: Bool
    let internalChain: String
    let externalPolicyChain: String
    let internalFilter: (Target, String)?
    let externalFilter: (Target, String)?

    init(port: ServicePortInfo, endpoints: [EndpointInfo], settings: NodeSettings, largeClusterMode: Bool) {
        self.port = port
        self.settings = settings
        self.largeClusterMode = largeClusterMode
        let cats = EndpointCategories(endpoints, port)
        self.cats = cats
        proto = port.proto.lowercased
        let hash = ChainNaming.portProtoHash(port.name, proto)
        svcChain = "KUBE-SVC-" + hash
        svlChain = "KUBE-SVL-" + hash
        extChain = "KUBE-EXT-" + hash
        fwChain = "KUBE-FW-" + hash

        var hasInternal = cats.hasAny
        var internalChain = svcChain
        if port.internalPolicyLocal {
            internalChain = svlChain
            if cats.local.isEmpty { hasInternal = false }
        }
        var hasExternal = cats.hasAny
        var externalPolicyChain = svcChain
        if port.externalPolicyLocal {
            externalPolicyChain = svlChain
            if cats.local.isEmpty { hasExternal = false }
        }
        self.internalChain = internalChain
        self.externalPolicyChain = externalPolicyChain
        hasInternalEndpoints = hasInternal
        hasExternalEndpoints = hasExternal
        usesExternalTrafficChain = cats.hasAny && port.externallyAccessible
        usesFWChain = cats.hasAny && !port.loadBalancerVIPs.isEmpty && !port.loadBalancerSourceRanges.isEmpty

        if !cats.hasAny {
            let c = "\(port.name) has no endpoints"
            internalFilter = (.reject, c)
            externalFilter = (.reject, c)
        } else {
            let c = "\(port.name) has no local endpoints"
            internalFilter = hasInternal ? nil : (.drop, c)
            externalFilter = hasExternal ? nil : (.drop, c)
        }
    }

    /// `-m P -p P -d IP --dport N`, the match every frontend rule shares.
    private func frontend(_ ip: IPAddress, _ dport: Int) -> [Match] {
        [.proto(port.proto), .destination(.ip(ip), negated: false), .destinationPort(dport)]
    }

    func write(into f: inout ServiceFragment) {
        writeClusterIP(into: &f)
        writeExternalIPs(into: &f)
        writeLoadBalancerIPs(into: &f)
        writeNodePort(into: &f)
        writeHealthCheckNodePort(into: &f)
        writeExternalChain(into: &f)
        writeFirewallChain(into: &f)
        writePolicyChains(into: &f)
        writeEndpointChains(into: &f)
        if port.internalPolicyLocal && cats.hasAny && !hasInternalEndpoints { f.noLocalEndpointsInternal += 1 }
        if port.externalPolicyLocal && cats.hasAny && !hasExternalEndpoints { f.noLocalEndpointsExternal += 1 }
    }

    func writeClusterIP(into f: inout ServiceFragment) {
        let m = frontend(port.clusterIP, port.port)
        if hasInternalEndpoints {
            f.natServices.append(Rule([.comment("\(port.name) cluster IP")] + m, .jump(internalChain)))
        } else if let (target, comment) = internalFilter {
            f.filterServices.append(Rule([.comment(comment)] + m, target))
        }
    }

    func writeExternalIPs(into f: inout ServiceFragment) {
        for ip in port.externalIPs {
            let m = frontend(ip, port.port)
            if cats.hasAny {
                f.natServices.append(Rule([.comment("\(port.name) external IP")] + m, .jump(extChain)))
            }
            if !hasExternalEndpoints, let (target, comment) = externalFilter {
                f.filterExternalServices.append(Rule([.comment(comment)] + m, target))
            }
        }
    }

    func writeLoadBalancerIPs(into f: inout ServiceFragment) {
        for ip in port.loadBalancerVIPs {
            let m = frontend(ip, port.port)
            if cats.hasAny {
                f.natServices.append(
                    Rule([.comment("\(port.name) loadbalancer IP")] + m, .jump(usesFWChain ? fwChain : extChain)))
            }
            if usesFWChain {
                f.filterProxyFirewall.append(
                    Rule([.comment("\(port.name) traffic not accepted by \(fwChain)")] + m, .drop))
            }
        }
        if !hasExternalEndpoints, let (target, comment) = externalFilter {
            for ip in port.loadBalancerVIPs {
                f.filterExternalServices.append(Rule([.comment(comment)] + frontend(ip, port.port), target))
            }
        }
    }

    func writeNodePort(into f: inout ServiceFragment) {
        guard port.nodePort != 0 else { return }
        if cats.hasAny {
            // NodePorts are not subject to loadBalancerSourceRanges (upstream cannot change that either).
            if settings.localhostNodePorts && settings.family == .ipv4 && settings.features.nfacctCounters {
                f.natNodePorts.append(Rule([
                    .comment(port.name), .proto(port.proto),
                    .destination(.cidr(CIDR("127.0.0.0/8")!), negated: false), .destinationPort(port.nodePort),
                    .nfacct(name: "localhost_nps_accepted_pkts"),
                ], .jump(extChain)))
            }
            f.natNodePorts.append(
                Rule([.comment(port.name), .proto(port.proto), .destinationPort(port.nodePort)], .jump(extChain)))
        }
        if !hasExternalEndpoints, let (target, comment) = externalFilter {
            f.filterExternalServices.append(Rule([
                .comment(comment), .addrTypeLocal(.destination), .proto(port.proto), .destinationPort(port.nodePort),
            ], target))
        }
    }

    func writeHealthCheckNodePort(into f: inout ServiceFragment) {
        guard port.healthCheckNodePort != 0 else { return }
        // Accepted whether or not the node has local endpoints: the LB must be able to ask.
        f.filterNodePorts.append(Rule([
            .comment("\(port.name) health check node port"), .proto(.tcp), .destinationPort(port.healthCheckNodePort),
        ], .accept))
    }

    /// The first rule of the internal policy chain: masquerade off-cluster traffic to the ClusterIP
    /// (everything with masqueradeAll; nothing without a local-traffic detector).
    func internalMasqueradeRule() -> [Rule] {
        guard hasInternalEndpoints else { return [] }
        var m: [Match] = [.comment("\(port.name) cluster IP")] + frontend(port.clusterIP, port.port)
        if !settings.masqueradeAll {
            guard let notLocal = LocalMatch.ifNotLocal(settings.localDetector) else { return [] }
            m.append(notLocal)
        }
        return [Rule(m, .jump("KUBE-MARK-MASQ"))]
    }

    func writeExternalChain(into f: inout ServiceFragment) {
        guard usesExternalTrafficChain else { return }
        var rules: [Rule] = []
        if !port.externalPolicyLocal {
            rules.append(Rule([.comment("masquerade traffic for \(port.name) external destinations")],
                              .jump("KUBE-MARK-MASQ")))
        } else {
            if let local = LocalMatch.ifLocal(settings.localDetector) {
                rules.append(Rule([.comment("pod traffic for \(port.name) external destinations"), local],
                                  .jump(svcChain)))
            }
            rules.append(Rule([.comment("masquerade LOCAL traffic for \(port.name) external destinations"),
                               .addrTypeLocal(.source)], .jump("KUBE-MARK-MASQ")))
            rules.append(Rule([.comment("route LOCAL traffic for \(port.name) external destinations"),
                               .addrTypeLocal(.source)], .jump(svcChain)))
        }
        if hasExternalEndpoints { rules.append(Rule([], .jump(externalPolicyChain))) }
        f.natChains.append(Chain(extChain, rules))
    }

    func writeFirewallChain(into f: inout ServiceFragment) {
        guard usesFWChain else { return }
        let comment = Match.comment("\(port.name) loadbalancer IP")
        var rules: [Rule] = []
        var allowFromNode = false
        let nodeIP = settings.nodeIPs.first
        for cidr in port.loadBalancerSourceRanges {
            rules.append(Rule([comment, .source(.cidr(cidr), negated: false)], .jump(extChain)))
            if let nodeIP, cidr.contains(nodeIP) { allowFromNode = true }
        }
        // A VIP that is also a local address loops node-originated requests back with the VIP as source.
        if allowFromNode {
            for vip in port.loadBalancerVIPs {
                rules.append(Rule([comment, .source(.ip(vip), negated: false)], .jump(extChain)))
            }
        }
        rules.append(Rule([.comment("other traffic to \(port.name) will be dropped by KUBE-PROXY-FIREWALL")], .none))
        f.natChains.append(Chain(fwChain, rules))
    }

    func writePolicyChains(into f: inout ServiceFragment) {
        let masq = internalMasqueradeRule()
        if !cats.cluster.isEmpty && port.usesClusterEndpoints {
            let lead = internalChain == svcChain ? masq : []
            f.natChains.append(Chain(svcChain, lead + serviceToEndpointRules(cats.cluster)))
        }
        if !cats.local.isEmpty && port.usesLocalEndpoints {
            let lead = internalChain == svlChain ? masq : []
            f.natChains.append(Chain(svlChain, lead + serviceToEndpointRules(cats.local)))
        }
    }

    /// `writeServiceToEndpointRules`: affinity checks first, then the random-balancing ladder.
    func serviceToEndpointRules(_ endpoints: [EndpointInfo]) -> [Rule] {
        var rules: [Rule] = []
        rules.reserveCapacity(endpoints.count * (port.stickyMaxAgeSeconds == nil ? 1 : 2))
        let chains = endpoints.map { endpointChain($0) }
        if let seconds = port.stickyMaxAgeSeconds {
            for (ep, chain) in zip(endpoints, chains) {
                rules.append(Rule(comment("\(port.name) -> \(ep.text)") + [.recentCheck(name: chain, seconds: seconds)],
                                  .jump(chain)))
            }
        }
        let n = endpoints.count
        for (i, (ep, chain)) in zip(endpoints, chains).enumerated() {
            var m = comment("\(port.name) -> \(ep.text)")
            if i < n - 1 { m.append(.statisticRandom(probability: ChainNaming.probability(n - i))) }
            rules.append(Rule(m, .jump(chain)))
        }
        return rules
    }

    func writeEndpointChains(into f: inout ServiceFragment) {
        for ep in cats.allReachable {
            let chain = endpointChain(ep)
            let c = comment(port.name)
            var dnat = c
            if port.stickyMaxAgeSeconds != nil { dnat.append(.recentSet(name: chain)) }
            dnat.append(.proto(port.proto))
            f.natChains.append(Chain(chain, [
                Rule(c + [.source(.ip(ep.ip), negated: false)], .jump("KUBE-MARK-MASQ")),
                Rule(dnat, .dnat(ep.ip, port: ep.port)),
            ]))
        }
    }

    /// `appendServiceCommentLocked`: above 1000 endpoints upstream drops these comments to shrink the table.
    private func comment(_ text: String) -> [Match] { largeClusterMode ? [] : [.comment(text)] }

    private func endpointChain(_ ep: EndpointInfo) -> String {
        ChainNaming.endpointChain(port.name, proto, ep.text)
    }
}

/// The local-traffic detector's matches (`IfLocal` / `IfNotLocal`).
enum LocalMatch {
    static func ifLocal(_ d: LocalTrafficDetector) -> Match? {
        switch d {
        case .none: nil
        case .cidr(let c): .source(.cidr(c), negated: false)
        case .bridgeInterface(let name): .inInterface(name, negated: false)
        case .interfaceNamePrefix(let prefix): .inInterface(prefix + "+", negated: false)
        }
    }

    static func ifNotLocal(_ d: LocalTrafficDetector) -> Match? {
        switch d {
        case .none: nil
        case .cidr(let c): .source(.cidr(c), negated: true)
        case .bridgeInterface(let name): .inInterface(name, negated: true)
        case .interfaceNamePrefix(let prefix): .inInterface(prefix + "+", negated: true)
        }
    }
}
