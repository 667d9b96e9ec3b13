import Foundation
import KubeModel
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// Both layouts must treat traffic the same: every golden case's cluster (both case sets) is compiled in today's
/// layout and in v1.23's, and a generated set of flows (to each ClusterIP, external IP, LB VIP, NodePort and
/// health-check port, from a pod, the node, an endpoint itself, and outside clients inside and outside the LB
/// source ranges) gets the same verdict from the hook tracer: endpoints reached, masquerade, passed/dropped/
/// rejected. Each case runs
/// twice: with LB VIPs and external IPs routed through the node (forwarded), and with them assigned to the node
/// (delivered locally, as on clouds that add the VIP to the node).
///
/// Where v1.23 really behaved differently, the difference must be one of `Difference`, each checked precisely
/// and explained there; each must also show up somewhere in the cases, so the list stays honest.
/// LAYOUT_FLOWS_VERBOSE=1 prints every flow and both verdicts.
final class LayoutFlowTests: XCTestCase {
    struct Flow: Hashable, CustomStringConvertible {
        var origin: PacketTracer.Origin
        var source: String
        var destination: String
        var port: Int
        var proto: TransportProtocol
        var description: String { "\(origin.rawValue) \(source) -> \(destination):\(port)/\(proto.lowercased)" }
    }

    /// The documented ways v1.23 treated a flow differently from today's kube-proxy (legacy-layout §9).
    enum Difference: String, CaseIterable {
        /// The same drop in another place: where today's filter drops (KUBE-EXTERNAL-SERVICES "has no local
        /// endpoints", KUBE-PROXY-FIREWALL), v1.23 marked in nat (KUBE-MARK-DROP) and kubelet's KUBE-FIREWALL
        /// dropped the marked packet in INPUT or OUTPUT.
        case droppedByKubeletFirewall
        /// v1.23 "dropped" by marking in nat (KUBE-XLB without local endpoints, a KUBE-FW source-range miss) and
        /// left the drop to kubelet's KUBE-FIREWALL, which only INPUT and OUTPUT jump to. A marked packet to an
        /// address that is not the node's (an LB VIP or external IP routed through it) is forwarded un-NATed instead
        /// of dropped; it reaches no endpoint either way. Today's filter DROP rules (#110289, #110290) are jumped
        /// to from FORWARD too.
        case markedDropForwarded
        /// v1.23 masqueraded external-IP traffic in KUBE-SVC with `! -s <pod CIDR>` (or `! -i`), so pods reaching
        /// an eTP=Cluster external IP kept their source; today's KUBE-EXT masquerades all of it (#109060).
        case podToExternalIPNotMasqueraded
        /// ProxyTerminatingEndpoints was alpha and off in 1.23: serving-but-terminating endpoints were never used,
        /// where today they are the fallback when no endpoint is ready (KEP-1669).
        case terminatingEndpointsUnused
        /// internalTrafficPolicy Local filtered every frontend's endpoints to this node's in 1.23 (FilterEndpoints,
        /// REJECT "has no endpoints" without one); today it applies to ClusterIP traffic only and drops (#106497).
        case internalPolicyFilteredEveryFrontend
        /// v1.23 had no localhostNodePorts option and no `! -d 127.0.0.0/8` / `! -d ::1/128` in the NodePort tail:
        /// the node's own connection to a loopback NodePort is DNATed where today's rules leave it alone.
        case loopbackNodePortDNATed
    }

    struct Port {
        let info: ServicePortInfo
        let endpoints: [EndpointInfo]
    }

    /// The case's service ports in one family, with their endpoints as the compiler resolves them.
    func ports(_ state: ClusterState, _ settings: NodeSettings) -> [Port] {
        state.sortedServiceNames.flatMap { name -> [Port] in
            let byPort = EndpointResolution.endpoints(
                slices: state.slices(for: name), family: settings.family, nodeName: settings.nodeName)
            return ServicePortInfo.ports(of: state.services[name]!, family: settings.family).map {
                Port(info: $0, endpoints: byPort[EndpointResolution.Key(portName: $0.portName, proto: $0.proto)])
            }
        }
    }

    static func address(in cidr: CIDR, last: UInt8) -> String {
        var bytes = cidr.address.bytes
        bytes[bytes.count - 1] |= last
        return IPAddress(bytes: bytes)!.description
    }

    func flows(_ port: Port, _ settings: NodeSettings) -> [Flow] {
        let v4 = settings.family == .ipv4
        let info = port.info
        let node = settings.nodeIPs.first?.description ?? (v4 ? "192.168.0.2" : "2001:db8::1")
        let pod: String
        if case .cidr(let c) = settings.localDetector {
            pod = Self.address(in: c, last: 2)
        } else {
            pod = v4 ? "10.0.0.2" : "fd00:10::2"
        }
        let inside =
            info.loadBalancerSourceRanges.first.map { Self.address(in: $0, last: 5) }
            ?? (v4 ? "203.0.113.2" : "2001:db8:ffff::2")
        let outside = v4 ? "198.51.100.7" : "2001:db8:eeee::7"
        var sources: [(PacketTracer.Origin, String)] = [
            (.pod, pod), (.node, node), (.remote, inside), (.remote, outside),
        ]
        if let hairpin = port.endpoints.first { sources.append((.pod, hairpin.ip.description)) }
        var destinations = [(info.clusterIP.description, info.port)]
        destinations += (info.externalIPs + info.loadBalancerVIPs).map { ($0.description, info.port) }
        if info.nodePort != 0 { destinations.append((node, info.nodePort)) }
        if info.healthCheckNodePort != 0 { destinations.append((node, info.healthCheckNodePort)) }
        var out: [Flow] = []
        for (origin, source) in sources {
            for (destination, dport) in destinations {
                out.append(
                    Flow(origin: origin, source: source, destination: destination, port: dport, proto: info.proto))
            }
        }
        if info.nodePort != 0 {
            let loopback = v4 ? "127.0.0.1" : "::1"
            out.append(
                Flow(origin: .node, source: loopback, destination: loopback, port: info.nodePort, proto: info.proto))
        }
        return out
    }

    /// Which documented difference explains this pair of verdicts, if any.
    func explain(
        _ flow: Flow, _ port: Port, _ current: PacketTracer.Verdict, _ legacy: PacketTracer.Verdict,
        local: (String) -> Bool
    ) -> Difference? {
        let info = port.info
        let notReady = Set(port.endpoints.filter { !$0.ready }.map(\.text))
        let readyLocal = port.endpoints.filter { $0.ready && $0.isLocal }.map(\.text)
        if current == legacy {
            let moved = ["KUBE-EXTERNAL-SERVICES", Ownership.proxyFirewall].contains(current.droppedIn ?? "")
            let kubelet = legacy.droppedIn == Ownership.kubeletFirewall && legacy.mark & Ownership.kubeletDropMark != 0
            return current.fate == .dropped && moved && kubelet ? .droppedByKubeletFirewall : nil
        }
        if current.fate == .dropped && current.endpoints.isEmpty && legacy.fate == .passed && legacy.endpoints.isEmpty
            && legacy.mark & Ownership.kubeletDropMark != 0 && flow.origin != .node && !local(flow.destination)
        {
            return .markedDropForwarded
        }
        if flow.origin == .pod && info.externalIPs.map(\.description).contains(flow.destination)
            && !info.externalPolicyLocal
            && current.endpoints == legacy.endpoints && current.fate == legacy.fate && current.masquerade
            && !legacy.masquerade
        {
            return .podToExternalIPNotMasqueraded
        }
        if !current.endpoints.isEmpty && current.endpoints.allSatisfy(notReady.contains)
            && !legacy.endpoints.contains(where: notReady.contains)
        {
            return .terminatingEndpointsUnused
        }
        if info.internalPolicyLocal && !info.externalPolicyLocal && legacy.endpoints == readyLocal
            && (!readyLocal.isEmpty || legacy.fate == .rejected)
        {
            return .internalPolicyFilteredEveryFrontend
        }
        if flow.origin == .node && IPAddress(flow.destination)!.isLoopback && current.endpoints.isEmpty
            && current.fate == .passed && !legacy.endpoints.isEmpty && legacy.masquerade
        {
            return .loopbackNodePortDNATed
        }
        return nil
    }

    func testEveryGoldenClusterGetsTheSameVerdictsInBothLayouts() throws {
        var seen: [Difference: Int] = [:]
        var compared = 0
        let dirs = try GoldenTests.caseSets.flatMap { set in
            try GoldenTests.cases(set.directory).map {
                GoldenTests.goldenDirectory.appendingPathComponent(set.directory).appendingPathComponent($0)
            }
        }
        for dir in dirs {
            let name = dir.deletingLastPathComponent().lastPathComponent + "/" + dir.lastPathComponent
            let state = try GoldenTests.clusterState(caseDirectory: dir)
            for family in IPFamily.allCases {
                let current = try GoldenTests.settings(caseDirectory: dir, family: family, layout: .current)
                let legacy = try GoldenTests.settings(caseDirectory: dir, family: family, layout: .v1_23)
                let rsCurrent = RuleCompiler(settings: current).compile(state)
                let rsLegacy = RuleCompiler(settings: legacy).compile(state)
                let node = PacketTracer.defaultNodeIPs + current.nodeIPs.map(\.description)
                let frontends = ports(state, current).flatMap {
                    ($0.info.loadBalancerVIPs + $0.info.externalIPs).map(\.description)
                }
                for local in [node, node + frontends] {
                    let tc = PacketTracer(rsCurrent, nodeIPs: local)
                    let tl = PacketTracer(rsLegacy, nodeIPs: local)
                    for port in ports(state, current) {
                        for flow in flows(port, current) {
                            let a = tc.flow(flow.origin, flow.source, flow.destination, flow.port, proto: flow.proto)
                            let b = tl.flow(flow.origin, flow.source, flow.destination, flow.port, proto: flow.proto)
                            compared += 1
                            if ProcessInfo.processInfo.environment["LAYOUT_FLOWS_VERBOSE"] == "1" {
                                print("\(name) \(family.flagName) \(flow)\n  current: \(a)\n  v1.23:   \(b)")
                            }
                            if let why = explain(flow, port, a, b, local: { tc.isLocal(IPAddress($0)!) }) {
                                seen[why, default: 0] += 1
                            } else if a != b || a.droppedIn != b.droppedIn {
                                XCTFail(
                                    "\(name) \(family.flagName) \(port.info.name): \(flow)\n  current: \(a)\n  v1.23:   \(b)"
                                )
                            }
                        }
                    }
                }
            }
        }
        XCTAssertGreaterThan(compared, 1000)
        for d in Difference.allCases { XCTAssertNotNil(seen[d], "documented difference \(d) never seen in the cases") }
    }

    // MARK: the documented differences, one flow each

    typealias F = Fixture
    let external = "203.0.113.2", blocked = "198.51.100.7", pod = "10.0.0.2", node = "192.168.0.2"

    /// A LoadBalancer with a source range, eTP=Cluster, one endpoint; its VIP local to the node or not.
    func sourceRangeTracers(vipIsLocal: Bool) -> (current: PacketTracer, legacy: PacketTracer) {
        let svc = F.service(
            "ns", "lb", type: .loadBalancer, clusterIP: "172.30.0.10",
            ports: [ServicePort(name: "p80", port: 80, nodePort: 30010)], lbIPs: ["5.6.7.8"],
            sourceRanges: ["203.0.113.0/25"])
        let slice = F.slice("ns", "lb", [F.ep("10.180.0.1")])
        let local = PacketTracer.defaultNodeIPs + (vipIsLocal ? ["5.6.7.8"] : [])
        return (
            PacketTracer(F.compile([svc], [slice]), nodeIPs: local),
            PacketTracer(F.compile([svc], [slice], settings: F.settings(layout: .v1_23)), nodeIPs: local)
        )
    }

    func testSourceRangesAdmitClientsInsideAndStopClientsOutsideInBothLayouts() {
        for vipIsLocal in [false, true] {
            let (current, legacy) = sourceRangeTracers(vipIsLocal: vipIsLocal)
            for t in [current, legacy] {
                XCTAssertEqual(t.flow(.remote, external, "5.6.7.8", 80).endpoints, ["10.180.0.1:80"])
                XCTAssertEqual(t.flow(.remote, blocked, "5.6.7.8", 80).endpoints, [])
                // NodePorts are not subject to source ranges, in either layout.
                XCTAssertEqual(t.flow(.remote, blocked, node, 30010).endpoints, ["10.180.0.1:80"])
            }
            XCTAssertEqual(current.flow(.remote, blocked, "5.6.7.8", 80).droppedIn, Ownership.proxyFirewall)
        }
    }

    /// v1.23: a source-range miss is marked (KUBE-FW ends in KUBE-MARK-DROP) and kubelet's KUBE-FIREWALL drops
    /// it in INPUT: so when the VIP is the node's own address the client is dropped, as today.
    func testV123DropsAnOutOfRangeClientInKubeletsFirewallWhenTheVIPIsLocal() {
        let v = sourceRangeTracers(vipIsLocal: true).legacy.flow(.remote, blocked, "5.6.7.8", 80)
        XCTAssertEqual(v.fate, .dropped)
        XCTAssertEqual(v.droppedIn, Ownership.kubeletFirewall)
        XCTAssertEqual(v.mark & Ownership.kubeletDropMark, Ownership.kubeletDropMark)
    }

    /// v1.23: kubelet's KUBE-FIREWALL is not jumped to from FORWARD, so when the VIP is only routed through the
    /// node the marked packet is forwarded as it came (no endpoint reached), where today KUBE-PROXY-FIREWALL drops.
    func testV123ForwardsAnOutOfRangeClientUnNATedWhenTheVIPIsRoutedThroughTheNode() {
        let (current, legacy) = sourceRangeTracers(vipIsLocal: false)
        XCTAssertEqual(current.flow(.remote, blocked, "5.6.7.8", 80).fate, .dropped)
        let v = legacy.flow(.remote, blocked, "5.6.7.8", 80)
        XCTAssertEqual(v.fate, .passed)
        XCTAssertEqual(v.endpoints, [])
    }

    /// Why kube-natd ensures kubelet's rules: without them v1.23's "drops" only set a mark (kubernetes #85572).
    func testWithoutKubeletsRulesV123DropsNothing() {
        var rs = sourceRangeTracers(vipIsLocal: true).legacy.ruleset
        for t in rs.tables.indices { rs.tables[t].ensured = [] }
        let v = PacketTracer(rs, nodeIPs: PacketTracer.defaultNodeIPs + ["5.6.7.8"]).flow(
            .remote, blocked, "5.6.7.8", 80)
        XCTAssertEqual(v.fate, .passed)
        XCTAssertEqual(v.endpoints, [])
    }

    func testV123DropsExternalTrafficWithoutLocalEndpointsInKubeletsFirewall() {
        let svc = F.service(
            "ns", "local", type: .nodePort, clusterIP: "172.30.0.11",
            ports: [ServicePort(name: "p80", port: 80, nodePort: 30011)], etp: .local)
        let slice = F.slice("ns", "local", [F.ep("10.180.0.2", node: "other")])
        let current = PacketTracer(F.compile([svc], [slice]))
        let legacy = PacketTracer(F.compile([svc], [slice], settings: F.settings(layout: .v1_23)))
        XCTAssertEqual(current.flow(.remote, external, node, 30011).droppedIn, "KUBE-EXTERNAL-SERVICES")
        XCTAssertEqual(legacy.flow(.remote, external, node, 30011).droppedIn, Ownership.kubeletFirewall)
        // Pods and the node itself are short-circuited to every endpoint in both.
        for t in [current, legacy] {
            XCTAssertEqual(t.flow(.pod, pod, node, 30011).endpoints, ["10.180.0.2:80"])
            XCTAssertEqual(
                t.flow(.node, node, node, 30011), .init(endpoints: ["10.180.0.2:80"], masquerade: true, fate: .passed))
        }
    }

    func testPodsReachingAnExternalIPKeepTheirSourceInV123() {
        let svc = F.service("ns", "ext", clusterIP: "172.30.0.12", externalIPs: ["192.168.99.12"])
        let slice = F.slice("ns", "ext", [F.ep("10.180.0.3")])
        let current = PacketTracer(F.compile([svc], [slice]))
        let legacy = PacketTracer(F.compile([svc], [slice], settings: F.settings(layout: .v1_23)))
        XCTAssertTrue(current.flow(.pod, pod, "192.168.99.12", 80).masquerade)
        XCTAssertFalse(legacy.flow(.pod, pod, "192.168.99.12", 80).masquerade)
        for t in [current, legacy] { XCTAssertTrue(t.flow(.remote, external, "192.168.99.12", 80).masquerade) }
    }

    /// The hook model agrees with upstream's tracer on today's layout (the same endpoints, the same REJECTs and
    /// DROPs), so what it says about v1.23 rests on the same reading of the rules.
    func testTheHookModelAgreesWithUpstreamsTracerOnTodaysLayout() {
        let (services, slices) = UpstreamFixtureTests.overallCluster()
        let t = PacketTracer(F.compile(services, slices))
        let flows: [(PacketTracer.Origin, String, String, Int)] = [
            (.pod, pod, "172.30.0.41", 80), (.remote, external, "192.168.99.22", 80),
            (.remote, external, "1.2.3.4", 80),
            (.remote, external, node, 3001), (.pod, pod, "1.2.3.4", 80), (.remote, external, node, 3003),
            (.pod, pod, "172.30.0.44", 80), (.remote, external, "5.6.7.8", 80),
            (.remote, "203.0.113.130", "5.6.7.8", 80),
            (.remote, "203.0.113.130", node, 3002), (.pod, pod, "172.30.0.46", 80), (.pod, pod, "172.30.0.41", 81),
        ]
        for (origin, source, destination, port) in flows {
            let upstream = t.trace(source, destination, port)
            let hook = t.flow(origin, source, destination, port)
            let blocked = hook.fate == .passed ? [] : [hook.fate == .dropped ? "DROP" : "REJECT"]
            XCTAssertEqual(hook.endpoints + blocked, upstream.outputs, "\(source) -> \(destination):\(port)")
            if hook.fate == .passed {
                XCTAssertEqual(hook.masquerade, upstream.masquerade, "\(source) -> \(destination):\(port)")
            }
        }
    }
}
