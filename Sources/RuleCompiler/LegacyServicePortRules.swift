import KubeModel
import ProxyConfig
import Ruleset

/// The v1.23 layout's rule families (legacy-layout §3, kube-proxy's `syncProxyRules` before the 1.24
/// reorganisation): masquerade rules for external IPs and NodePorts in KUBE-SVC, every LB VIP through a KUBE-FW chain
/// ending in KUBE-MARK-DROP, eTP=Local through KUBE-XLB, and no filter DROP rules (kubelet's KUBE-FIREWALL drops what
/// nat marked). The ClusterIP jump, the health-check port, the SEP chains and balancing are shared with today's
/// layout, because v1.23 wrote them alike.
extension ServicePortRules {
    static let markDrop = Ownership.kubeletMarkDrop

    /// One service port in v1.23's emission order. Own chains are declared SEP, SVC, XLB, FW (§3.13).
    func writeV1_23(into f: inout ServiceFragment) {
        writeEndpointChains(into: &f)
        // The SVC chain starts with the masquerade rules of each frontend, in the order they are written.
        var svc = internalMasqueradeRule().map { [$0] } ?? []
        writeClusterIP(into: &f)
        writeV1_23ExternalIPs(into: &f, svc: &svc)
        let firewall = writeV1_23LoadBalancerIPs(into: &f)
        writeV1_23NodePort(into: &f, svc: &svc)
        writeHealthCheckNodePort(into: &f)
        if cats.hasAny { f.natChains.append(Chain(svcChain, svc + serviceToEndpointRules(cats.cluster, after: nil))) }
        writeV1_23LocalChain(into: &f)
        if !fwChain.isEmpty { f.natChains.append(Chain(fwChain, firewall)) }
        if port.externalPolicyLocal && cats.hasAny && cats.local.isEmpty { f.noLocalEndpointsExternal += 1 }
        if port.internalPolicyLocal && !port.externalPolicyLocal && !cats.hasAny && endpoints.contains(where: \.ready) {
            f.noLocalEndpointsInternal += 1
        }
    }

    /// External IPs (§3.5): eTP=Cluster masquerades off-cluster sources in SVC (masqueradeAll does not apply
    /// here in v1.23), eTP=Local goes to XLB unmasqueraded; without endpoints a filter REJECT.
    func writeV1_23ExternalIPs(into f: inout ServiceFragment, svc: inout [Rule]) {
        guard !port.externalIPs.isEmpty else { return }
        let comment = TextJoin.join(port.name, " external IP")
        for ip in port.externalIPs {
            if !cats.hasAny {
                if let (target, filterComment) = externalFilter {
                    f.filterExternalServices.append(Rule(frontend(filterComment, ip, port.port), target))
                }
                continue
            }
            if !port.externalPolicyLocal {
                svc.append(
                    Rule(
                        frontend(comment, ip, port.port, then: LocalMatch.ifNotLocal(settings.localDetector)),
                        .jump(Ownership.markMasq)))
            }
            f.natServices.append(Rule(frontend(comment, ip, port.port), .jump(externalPolicyChain)))
        }
    }

    /// LB VIPs (§3.6): each goes to KUBE-FW, which masquerades (eTP=Cluster), admits the source ranges (or
    /// everyone) to SVC or XLB, and marks the rest for kubelet's drop. The block is written once per VIP, as
    /// upstream appended it inside its per-VIP loop (one chain, repeated blocks). Returns the FW chain's rules.
    func writeV1_23LoadBalancerIPs(into f: inout ServiceFragment) -> [Rule] {
        guard !port.loadBalancerVIPs.isEmpty else { return [] }
        let comment = TextJoin.join(port.name, " loadbalancer IP")
        let c = Match.comment(comment)
        var firewall: [Rule] = []
        for ip in port.loadBalancerVIPs {
            guard cats.hasAny else {
                if let (target, filterComment) = externalFilter {
                    f.filterExternalServices.append(Rule(frontend(filterComment, ip, port.port), target))
                }
                continue
            }
            f.natServices.append(Rule(frontend(comment, ip, port.port), .jump(fwChain)))
            if !port.externalPolicyLocal { firewall.append(Rule([c], .jump(Ownership.markMasq))) }
            if port.loadBalancerSourceRanges.isEmpty {
                firewall.append(Rule([c], .jump(externalPolicyChain)))
            } else {
                for cidr in port.loadBalancerSourceRanges {
                    firewall.append(Rule([c, .source(.cidr(cidr), negated: false)], .jump(externalPolicyChain)))
                }
                // A VIP that is also a local address loops node-originated requests back with the VIP as source.
                if let nodeIP = settings.nodeIPs.first,
                    port.loadBalancerSourceRanges.contains(where: { $0.contains(nodeIP) })
                {
                    firewall.append(Rule([c, .source(.ip(ip), negated: false)], .jump(externalPolicyChain)))
                }
            }
            firewall.append(Rule([c], .jump(Self.markDrop)))
        }
        return firewall
    }

    /// NodePort (§3.7): eTP=Cluster masquerades in SVC; eTP=Local masquerades only localhost sources ("Fix
    /// localhost martian source error") and goes to XLB. Only when the node has a NodePort address.
    func writeV1_23NodePort(into f: inout ServiceFragment, svc: inout [Rule]) {
        guard port.nodePort != 0, hasNodePortAddress else { return }
        guard cats.hasAny else {
            if let (target, comment) = externalFilter {
                f.filterExternalServices.append(
                    Rule(
                        [
                            .comment(comment), .addrTypeLocal(.destination), .proto(port.proto),
                            .destinationPort(port.nodePort),
                        ], target))
            }
            return
        }
        let match: [Match] = [.comment(port.name), .proto(port.proto), .destinationPort(port.nodePort)]
        if port.externalPolicyLocal {
            let loopback = CIDR(settings.family == .ipv4 ? "127.0.0.0/8" : "::1/128")!
            f.natNodePorts.append(Rule(match + [.source(.cidr(loopback), negated: false)], .jump(Ownership.markMasq)))
        } else {
            svc.append(Rule(match, .jump(Ownership.markMasq)))
        }
        f.natNodePorts.append(Rule(match, .jump(externalPolicyChain)))
    }

    /// v1.23 wrote NodePort rules only when the node had an address for them (`nodeAddresses` non-empty).
    var hasNodePortAddress: Bool {
        if case .addresses(let ips) = settings.nodePortAddresses { return !ips.isEmpty }
        return true
    }

    /// KUBE-XLB (§3.10), declared for every eTP=Local port and empty without endpoints: pods and the node itself
    /// are short-circuited to SVC (the node masqueraded), the rest balanced over local endpoints, or marked for
    /// kubelet's drop when there is none.
    func writeV1_23LocalChain(into f: inout ServiceFragment) {
        guard !xlbChain.isEmpty else { return }
        var rules: [Rule] = []
        if cats.hasAny {
            if let local = LocalMatch.ifLocal(settings.localDetector) {
                rules.append(
                    Rule(
                        [.comment("Redirect pods trying to reach external loadbalancer VIP to clusterIP"), local],
                        .jump(svcChain)))
            }
            rules.append(
                Rule(
                    [.comment("masquerade LOCAL traffic for \(port.name) LB IP"), .addrTypeLocal(.source)],
                    .jump(Ownership.markMasq)))
            rules.append(
                Rule(
                    [
                        .comment("route LOCAL traffic for \(port.name) LB IP to service chain"),
                        .addrTypeLocal(.source),
                    ], .jump(svcChain)))
            if cats.local.isEmpty {
                rules.append(
                    Rule([.comment(TextJoin.join(port.name, " has no local endpoints"))], .jump(Self.markDrop)))
            } else {
                rules += serviceToEndpointRules(cats.local, after: nil)
            }
        }
        f.natChains.append(Chain(xlbChain, rules))
    }
}
