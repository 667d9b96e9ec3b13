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
    /// The Service's own nat chains, in upstream's declaration order: EXT, FW, SVC, SVL, SEP today; SEP, SVC,
    /// XLB, FW in the v1.23 layout.
    var natChains: [Chain] = []
    var noLocalEndpointsInternal = 0
    var noLocalEndpointsExternal = 0
}

/// Builds the rules of one service port. One method per rule family, each short, following the
/// corresponding block of upstream's `syncProxyRules`. The v1.23 layout's rule families are in
/// `LegacyServicePortRules.swift`; what both layouts share (names, the ClusterIP jump, the health-check port,
/// endpoint chains, balancing and affinity) is here.
///
/// Everything several rules share (chain names, comments) is derived once per port or per endpoint and
/// shared between the rules: Strings are copy-on-write, so a shared comment costs a retain, not a copy.
struct ServicePortRules {
    let port: ServicePortInfo
    /// The port's endpoints, unique and sorted by `ip:port`; `cats` holds positions in it.
    let endpoints: [EndpointInfo]
    let cats: EndpointCategories
    let settings: NodeSettings
    let largeClusterMode: Bool

    let proto: String
    /// Chain names, each empty when this port never writes or jumps to that chain (SVL and EXT only exist in
    /// today's layout, XLB only in v1.23's).
    let svcChain: String
    let svlChain: String
    let extChain: String
    let xlbChain: String
    let fwChain: String
    /// The KUBE-SEP chain of each endpoint in `cats.allReachable` (empty for the others), by position.
    let endpointChains: [String]

    let hasInternalEndpoints: Bool
    let hasExternalEndpoints: Bool
    let usesExternalTrafficChain: Bool
    let usesFWChain: Bool
    let internalChain: String
    let externalPolicyChain: String
    let internalFilter: (Target, String)?
    let externalFilter: (Target, String)?
    /// `<port> cluster IP`, on the ClusterIP jump and the masquerade rule (empty when neither is written).
    let clusterIPComment: String

    /// - Parameter topology: this node's name and zone, which topology hints are matched against. The v1.23
    ///   layout ignores hints: 1.23 applied them in `FilterEndpoints` behind the TopologyAwareHints gate and the
    ///   Service's topology annotation, which legacy-layout.md does not cover (not re-read here).
    init(port: ServicePortInfo, endpoints: [EndpointInfo], settings: NodeSettings, topology: NodeTopology,
         largeClusterMode: Bool) {
        self.port = port
        self.endpoints = endpoints
        self.settings = settings
        self.largeClusterMode = largeClusterMode
        let v1_23 = settings.ruleLayout == .v1_23
        let cats = v1_23
            ? EndpointCategories(v1_23: endpoints, port) : EndpointCategories(endpoints, port, topology: topology)
        self.cats = cats
        let proto = port.proto.lowercased
        self.proto = proto
        // SVC, SVL, EXT, XLB and FW names all carry the same hash of `servicePortName + protocol`.
        let hash = ChainHash(port.name, proto)
        // v1.23 sent every LB VIP of a Service with endpoints through KUBE-FW; today only with source ranges.
        let usesFWChain = cats.hasAny && !port.loadBalancerVIPs.isEmpty
            && (v1_23 || !port.loadBalancerSourceRanges.isEmpty)
        svcChain = hash.chainName(Ownership.svcPrefix)
        svlChain = !v1_23 && (port.internalPolicyLocal || port.externalPolicyLocal) ? hash.chainName(Ownership.svlPrefix) : ""
        extChain = !v1_23 && port.externallyAccessible ? hash.chainName(Ownership.extPrefix) : ""
        // v1.23 declared KUBE-XLB for every eTP=Local port, even one without endpoints (legacy-layout §3.3).
        xlbChain = v1_23 && port.externalPolicyLocal ? hash.chainName(Ownership.xlbPrefix) : ""
        fwChain = usesFWChain ? hash.chainName(Ownership.fwPrefix) : ""
        endpointChains = Self.endpointChains(endpoints, cats.allReachable, port.name, proto)

        // v1.23 had no per-policy "no local endpoints" filter rules: internalTrafficPolicy filtered the endpoints
        // (`EndpointCategories(v1_23:)`) and eTP=Local with no local endpoint marked for drop in KUBE-XLB.
        var hasInternal = cats.hasAny
        var internalChain = svcChain
        if port.internalPolicyLocal && !v1_23 {
            internalChain = svlChain
            if cats.local.isEmpty { hasInternal = false }
        }
        var hasExternal = cats.hasAny
        var externalPolicyChain = svcChain
        if port.externalPolicyLocal && v1_23 {
            externalPolicyChain = xlbChain
        } else if port.externalPolicyLocal {
            externalPolicyChain = svlChain
            if cats.local.isEmpty { hasExternal = false }
        }
        self.internalChain = internalChain
        self.externalPolicyChain = externalPolicyChain
        hasInternalEndpoints = hasInternal
        hasExternalEndpoints = hasExternal
        usesExternalTrafficChain = !v1_23 && cats.hasAny && port.externallyAccessible
        self.usesFWChain = usesFWChain
        clusterIPComment = hasInternal ? TextJoin.join(port.name, " cluster IP") : ""

        if !cats.hasAny {
            let c = TextJoin.join(port.name, " has no endpoints")
            internalFilter = (.reject, c)
            externalFilter = (.reject, c)
        } else if !hasInternal || !hasExternal {
            let c = TextJoin.join(port.name, " has no local endpoints")
            internalFilter = hasInternal ? nil : (.drop, c)
            externalFilter = hasExternal ? nil : (.drop, c)
        } else {
            internalFilter = nil
            externalFilter = nil
        }
    }

    /// `servicePortEndpointChainName` of each reachable endpoint, hashed once however many rules name it.
    private static func endpointChains(
        _ endpoints: [EndpointInfo], _ reachable: [Int], _ portName: String, _ proto: String
    ) -> [String] {
        var chains = [String](repeating: "", count: endpoints.count)
        for i in reachable { chains[i] = ChainHash(portName, proto, endpoints[i].text).chainName(Ownership.sepPrefix) }
        return chains
    }

    /// `-m comment --comment C -m P -p P -d IP --dport N`, the start every frontend rule shares, then `extra`.
    func frontend(_ comment: String, _ ip: IPAddress, _ dport: Int, then extra: Match? = nil) -> [Match] {
        let c = Match.comment(comment), p = Match.proto(port.proto), d = Match.destination(.ip(ip), negated: false)
        guard let extra else { return [c, p, d, .destinationPort(dport)] }
        return [c, p, d, .destinationPort(dport), extra]
    }

    func write(into f: inout ServiceFragment) {
        if settings.ruleLayout == .v1_23 {
            writeV1_23(into: &f)
            return
        }
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
        if hasInternalEndpoints {
            f.natServices.append(Rule(frontend(clusterIPComment, port.clusterIP, port.port), .jump(internalChain)))
        } else if let (target, comment) = internalFilter {
            f.filterServices.append(Rule(frontend(comment, port.clusterIP, port.port), target))
        }
    }

    func writeExternalIPs(into f: inout ServiceFragment) {
        guard !port.externalIPs.isEmpty else { return }
        let comment = "\(port.name) external IP"
        for ip in port.externalIPs {
            if cats.hasAny {
                f.natServices.append(Rule(frontend(comment, ip, port.port), .jump(extChain)))
            }
            if !hasExternalEndpoints, let (target, filterComment) = externalFilter {
                f.filterExternalServices.append(Rule(frontend(filterComment, ip, port.port), target))
            }
        }
    }

    func writeLoadBalancerIPs(into f: inout ServiceFragment) {
        guard !port.loadBalancerVIPs.isEmpty else { return }
        let comment = "\(port.name) loadbalancer IP"
        let firewallComment = usesFWChain ? "\(port.name) traffic not accepted by \(fwChain)" : ""
        for ip in port.loadBalancerVIPs {
            if cats.hasAny {
                f.natServices.append(Rule(frontend(comment, ip, port.port), .jump(usesFWChain ? fwChain : extChain)))
            }
            if usesFWChain {
                f.filterProxyFirewall.append(Rule(frontend(firewallComment, ip, port.port), .drop))
            }
        }
        if !hasExternalEndpoints, let (target, filterComment) = externalFilter {
            for ip in port.loadBalancerVIPs {
                f.filterExternalServices.append(Rule(frontend(filterComment, ip, port.port), target))
            }
        }
    }

    func writeNodePort(into f: inout ServiceFragment) {
        guard port.nodePort != 0 else { return }
        if cats.hasAny {
            // NodePorts are not subject to loadBalancerSourceRanges (upstream cannot change that either).
            if settings.localhostNodePorts && settings.family == .ipv4 && settings.features.nfacct.contains(.localhostNodePortsAccepted) {
                f.natNodePorts.append(Rule([
                    .comment(port.name), .proto(port.proto),
                    .destination(.cidr(CIDR("127.0.0.0/8")!), negated: false), .destinationPort(port.nodePort),
                    .nfacct(name: NFAcctCounter.localhostNodePortsAccepted.rawValue),
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
    func internalMasqueradeRule() -> Rule? {
        guard hasInternalEndpoints else { return nil }
        var notLocal: Match? = nil
        if !settings.masqueradeAll {
            guard let m = LocalMatch.ifNotLocal(settings.localDetector) else { return nil }
            notLocal = m
        }
        return Rule(frontend(clusterIPComment, port.clusterIP, port.port, then: notLocal), .jump(Ownership.markMasq))
    }

    func writeExternalChain(into f: inout ServiceFragment) {
        guard usesExternalTrafficChain else { return }
        var rules: [Rule] = []
        if !port.externalPolicyLocal {
            rules.append(Rule([.comment("masquerade traffic for \(port.name) external destinations")],
                              .jump(Ownership.markMasq)))
        } else {
            if let local = LocalMatch.ifLocal(settings.localDetector) {
                rules.append(Rule([.comment("pod traffic for \(port.name) external destinations"), local],
                                  .jump(svcChain)))
            }
            rules.append(Rule([.comment("masquerade LOCAL traffic for \(port.name) external destinations"),
                               .addrTypeLocal(.source)], .jump(Ownership.markMasq)))
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
            let lead = internalChain == svcChain ? masq : nil
            f.natChains.append(Chain(svcChain, serviceToEndpointRules(cats.cluster, after: lead)))
        }
        if !cats.local.isEmpty && port.usesLocalEndpoints {
            let lead = internalChain == svlChain ? masq : nil
            f.natChains.append(Chain(svlChain, serviceToEndpointRules(cats.local, after: lead)))
        }
    }

    /// `writeServiceToEndpointRules`: affinity checks first, then the random-balancing ladder, after `lead`.
    func serviceToEndpointRules(_ positions: [Int], after lead: Rule?) -> [Rule] {
        var rules: [Rule] = []
        rules.reserveCapacity(1 + positions.count * (port.stickyMaxAgeSeconds == nil ? 1 : 2))
        if let lead { rules.append(lead) }
        // v1.23 commented these rules with the bare port name; `N -> ip:port` came later (legacy-layout §3.9).
        let bare = settings.ruleLayout == .v1_23
        let comments = positions.map {
            largeClusterMode ? "" : bare ? port.name : TextJoin.join(port.name, " -> ", endpoints[$0].text)
        }
        if let seconds = port.stickyMaxAgeSeconds {
            for (i, comment) in zip(positions, comments) {
                let chain = endpointChains[i]
                rules.append(Rule(commented(comment, .recentCheck(name: chain, seconds: seconds)), .jump(chain)))
            }
        }
        let n = positions.count
        for (k, (i, comment)) in zip(positions, comments).enumerated() {
            let rule: [Match] = k < n - 1
                ? commented(comment, .statisticRandom(probability: ChainNaming.probability(n - k)))
                : commented(comment)
            rules.append(Rule(rule, .jump(endpointChains[i])))
        }
        return rules
    }

    func writeEndpointChains(into f: inout ServiceFragment) {
        let sticky = port.stickyMaxAgeSeconds != nil
        for i in cats.allReachable {
            let ep = endpoints[i]
            let chain = endpointChains[i]
            let dnat: [Match] = sticky
                ? commented(port.name, .recentSet(name: chain), .proto(port.proto))
                : commented(port.name, .proto(port.proto))
            f.natChains.append(Chain(chain, [
                Rule(commented(port.name, .source(.ip(ep.ip), negated: false)), .jump(Ownership.markMasq)),
                Rule(dnat, .dnat(ep.ip, port: ep.port)),
            ]))
        }
    }

    /// `appendServiceCommentLocked`: the comment, then the matches; above 1000 endpoints upstream drops
    /// these comments to shrink the table.
    private func commented(_ text: String) -> [Match] {
        largeClusterMode ? [] : [.comment(text)]
    }

    private func commented(_ text: String, _ m1: Match) -> [Match] {
        largeClusterMode ? [m1] : [.comment(text), m1]
    }

    private func commented(_ text: String, _ m1: Match, _ m2: Match) -> [Match] {
        largeClusterMode ? [m1, m2] : [.comment(text), m1, m2]
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
