import KubeModel
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// Flows through the upstream fixture and through one cluster per feature, asserted with the tracer.
final class TracerFlowTests: XCTestCase {
    typealias F = Fixture
    let pod = "10.0.0.2"
    let node = "192.168.0.2"
    let external = "203.0.113.2"
    let externalBlocked = "203.0.113.130"

    func check(_ t: PacketTracer, _ src: String, _ dst: String, _ port: Int, _ outputs: [String], masq: Bool,
               proto: TransportProtocol = .tcp, file: StaticString = #filePath, line: UInt = #line) {
        let r = t.trace(src, dst, port, proto: proto)
        XCTAssertEqual(r.outputs, outputs, "\(src) -> \(dst):\(port)", file: file, line: line)
        XCTAssertEqual(r.masquerade, masq, "masquerade of \(src) -> \(dst):\(port)", file: file, line: line)
    }

    func testOverallClusterFlows() {
        let (services, slices) = UpstreamFixtureTests.overallCluster()
        let t = PacketTracer(F.compile(services, slices))
        // ClusterIP: pods are not masqueraded, everything else is.
        check(t, pod, "172.30.0.41", 80, ["10.180.0.1:80"], masq: false)
        check(t, node, "172.30.0.41", 80, ["10.180.0.1:80"], masq: true)
        check(t, external, "172.30.0.41", 80, ["10.180.0.1:80"], masq: true)
        // Hairpin: the endpoint reaching its own Service is masqueraded by its SEP chain.
        check(t, "10.180.0.1", "172.30.0.41", 80, ["10.180.0.1:80"], masq: true)
        // ETP Local with no local endpoint: external clients are dropped on external IP, LB IP and NodePort,
        // pods and the node itself are short-circuited to the cluster-wide endpoints.
        check(t, external, "192.168.99.22", 80, ["DROP"], masq: false)
        check(t, external, "1.2.3.4", 80, ["DROP"], masq: false)
        check(t, external, node, 3001, ["DROP"], masq: false)
        check(t, pod, "1.2.3.4", 80, ["10.180.0.2:80"], masq: false)
        check(t, node, node, 3001, ["10.180.0.2:80"], masq: true)
        check(t, "127.0.0.1", "127.0.0.1", 3001, ["10.180.0.2:80"], masq: true)
        // NodePort with ETP Cluster: masqueraded, reaches the endpoint.
        check(t, external, node, 3003, ["10.180.0.3:80"], masq: true)
        check(t, external, "192.168.1.2", 3003, ["10.180.0.3:80"], masq: true)
        // Two endpoints, probabilistic: both branches collected.
        check(t, pod, "172.30.0.44", 80, ["10.180.0.4:80", "10.180.0.5:80"], masq: false)
        check(t, external, "192.168.99.33", 80, ["10.180.0.4:80", "10.180.0.5:80"], masq: true)
        // LB source ranges: allowed client reaches the endpoint, blocked one is dropped by KUBE-PROXY-FIREWALL.
        check(t, external, "5.6.7.8", 80, ["10.180.0.3:80"], masq: true)
        check(t, externalBlocked, "5.6.7.8", 80, ["DROP"], masq: false)
        // NodePorts are not subject to source ranges.
        check(t, externalBlocked, node, 3002, ["10.180.0.3:80"], masq: true)
        // No endpoints: REJECT.
        check(t, pod, "172.30.0.46", 80, ["REJECT"], masq: false)
        // Health check node port accepted.
        check(t, external, node, 30000, ["ACCEPT"], masq: false)
        // Nothing listens elsewhere.
        check(t, pod, "172.30.0.41", 81, [], masq: false)
    }

    func testExternalTrafficPolicyLocalUsesOnlyLocalEndpointsAndKeepsSource() {
        let svc = F.service("ns", "web", type: .loadBalancer, clusterIP: "172.30.0.50",
                            ports: [ServicePort(name: "http", port: 80, nodePort: 30080)], lbIPs: ["1.2.3.4"],
                            etp: .local, hcnp: 30500)
        let slice = F.slice("ns", "web", ports: [EndpointPort(name: "http", port: 8080)],
                            [F.ep("10.180.0.1", node: "test-node"), F.ep("10.180.1.1", node: "other")])
        let t = PacketTracer(F.compile([svc], [slice]))
        check(t, external, "1.2.3.4", 80, ["10.180.0.1:8080"], masq: false)
        check(t, external, node, 30080, ["10.180.0.1:8080"], masq: false)
        // Pods still reach every endpoint (short circuit to the cluster chain).
        check(t, pod, "1.2.3.4", 80, ["10.180.0.1:8080", "10.180.1.1:8080"], masq: false)
        check(t, pod, "172.30.0.50", 80, ["10.180.0.1:8080", "10.180.1.1:8080"], masq: false)
    }

    func testInternalTrafficPolicyLocalDropsWithoutLocalEndpoints() {
        let svc = F.service("ns", "api", clusterIP: "172.30.0.60", itp: .local)
        let remote = F.slice("ns", "api", [F.ep("10.180.1.1", node: "other")])
        let t = PacketTracer(F.compile([svc], [remote]))
        check(t, pod, "172.30.0.60", 80, ["DROP"], masq: false)
        let local = F.slice("ns", "api", [F.ep("10.180.1.1", node: "other"), F.ep("10.180.0.7", node: "test-node")])
        let t2 = PacketTracer(F.compile([svc], [local]))
        check(t2, pod, "172.30.0.60", 80, ["10.180.0.7:80"], masq: false)
    }

    func testTerminatingEndpointsAreUsedOnlyWhenNoneIsReady() {
        let svc = F.service("ns", "t", clusterIP: "172.30.0.70")
        let mixed = F.slice("ns", "t", [
            F.ep("10.180.0.1", ready: true),
            F.ep("10.180.0.2", ready: false, serving: true, terminating: true),
            F.ep("10.180.0.3", ready: false, serving: false, terminating: true),
        ])
        check(PacketTracer(F.compile([svc], [mixed])), pod, "172.30.0.70", 80, ["10.180.0.1:80"], masq: false)
        let terminatingOnly = F.slice("ns", "t", [
            F.ep("10.180.0.2", ready: false, serving: true, terminating: true),
            F.ep("10.180.0.3", ready: false, serving: false, terminating: true),
        ])
        check(PacketTracer(F.compile([svc], [terminatingOnly])), pod, "172.30.0.70", 80, ["10.180.0.2:80"], masq: false)
        let notServing = F.slice("ns", "t", [F.ep("10.180.0.3", ready: false, serving: false, terminating: true)])
        check(PacketTracer(F.compile([svc], [notServing])), pod, "172.30.0.70", 80, ["REJECT"], masq: false)
    }

    func testUnsetServingCountsAsServingForTheTerminatingFallback() {
        // Upstream reads a nil `serving` as true whatever `ready` says: a terminating endpoint without the
        // condition still takes traffic when nothing is ready.
        let svc = F.service("ns", "t", clusterIP: "172.30.0.71")
        let slice = F.slice("ns", "t", [F.ep("10.180.0.2", ready: false, terminating: true)])
        check(PacketTracer(F.compile([svc], [slice])), pod, "172.30.0.71", 80, ["10.180.0.2:80"], masq: false)
    }

    func testExternalTrafficPolicyLocalAppliesToClusterIPServiceWithExternalIPs() {
        // apiservice.ExternalPolicyLocal: a ClusterIP Service with externalIPs is externally accessible, so its
        // eTP=Local keeps external clients on this node's endpoints with their source address.
        let svc = F.service("ns", "eip", clusterIP: "172.30.0.72", externalIPs: ["192.168.99.72"], etp: .local)
        let both = F.slice("ns", "eip", [F.ep("10.180.0.1", node: "test-node"), F.ep("10.180.1.1", node: "other")])
        let t = PacketTracer(F.compile([svc], [both]))
        check(t, external, "192.168.99.72", 80, ["10.180.0.1:80"], masq: false)
        // Pods and the ClusterIP still reach every endpoint.
        check(t, pod, "192.168.99.72", 80, ["10.180.0.1:80", "10.180.1.1:80"], masq: false)
        check(t, pod, "172.30.0.72", 80, ["10.180.0.1:80", "10.180.1.1:80"], masq: false)
        let remoteOnly = F.slice("ns", "eip", [F.ep("10.180.1.1", node: "other")])
        let t2 = PacketTracer(F.compile([svc], [remoteOnly]))
        check(t2, external, "192.168.99.72", 80, ["DROP"], masq: false)
        check(t2, pod, "172.30.0.72", 80, ["10.180.1.1:80"], masq: false)
        // The same Service with eTP=Cluster sends external clients anywhere, masqueraded.
        let cluster = F.service("ns", "eip", clusterIP: "172.30.0.72", externalIPs: ["192.168.99.72"])
        check(PacketTracer(F.compile([cluster], [remoteOnly])), external, "192.168.99.72", 80, ["10.180.1.1:80"],
              masq: true)
    }

    func testMasqueradeAllMasqueradesPods() {
        var s = F.settings()
        s.masqueradeAll = true
        let svc = F.service("ns", "m", clusterIP: "172.30.0.80")
        let t = PacketTracer(F.compile([svc], [F.slice("ns", "m", [F.ep("10.180.0.1")])], settings: s))
        check(t, pod, "172.30.0.80", 80, ["10.180.0.1:80"], masq: true)
    }

    func testNoLocalDetectorMeansNoClusterIPMasquerade() {
        var s = F.settings()
        s.localDetector = .none
        let svc = F.service("ns", "m", clusterIP: "172.30.0.80")
        let t = PacketTracer(F.compile([svc], [F.slice("ns", "m", [F.ep("10.180.0.1")])], settings: s))
        check(t, external, "172.30.0.80", 80, ["10.180.0.1:80"], masq: false)
    }

    func testUDPAndSCTPPortsMatchTheirProtocolOnly() {
        let svc = F.service("kube-system", "dns", clusterIP: "172.30.0.10", ports: [
            ServicePort(name: "dns", protocol: .udp, port: 53), ServicePort(name: "dns-tcp", protocol: .tcp, port: 53),
            ServicePort(name: "sig", protocol: .sctp, port: 9999),
        ])
        let slice = F.slice("kube-system", "dns", ports: [
            EndpointPort(name: "dns", port: 5353, protocol: .udp), EndpointPort(name: "dns-tcp", port: 5353, protocol: .tcp),
            EndpointPort(name: "sig", port: 9999, protocol: .sctp),
        ], [F.ep("10.180.0.9")])
        let t = PacketTracer(F.compile([svc], [slice]))
        check(t, pod, "172.30.0.10", 53, ["10.180.0.9:5353"], masq: false, proto: .udp)
        check(t, pod, "172.30.0.10", 53, ["10.180.0.9:5353"], masq: false, proto: .tcp)
        check(t, pod, "172.30.0.10", 9999, ["10.180.0.9:9999"], masq: false, proto: .sctp)
        check(t, pod, "172.30.0.10", 9999, [], masq: false, proto: .udp)
    }

    func testNodePortAddressesLimitNodePortsToListedIPs() {
        var s = F.settings()
        s.nodePortAddresses = .addresses([F.ip("192.168.1.2")])
        let svc = F.service("ns", "np", type: .nodePort, clusterIP: "172.30.0.90",
                            ports: [ServicePort(name: "p80", port: 80, nodePort: 30090)])
        let t = PacketTracer(F.compile([svc], [F.slice("ns", "np", [F.ep("10.180.0.1")])], settings: s))
        check(t, external, "192.168.1.2", 30090, ["10.180.0.1:80"], masq: true)
        check(t, external, node, 30090, [], masq: false)
    }

    func testIPv6ClusterIPAndNodePort() {
        let s = F.settings(family: .ipv6)
        let svc = F.service("ns", "v6", type: .nodePort, clusterIP: "172.30.0.91,fd00:30::91",
                            ports: [ServicePort(name: "p80", port: 80, nodePort: 30091)])
        let slice = F.slice("ns", "v6", family: .ipv6, [F.ep("fd00:10::5")])
        let t = PacketTracer(F.compile([svc], [slice], settings: s))
        check(t, "fd00:10::7", "fd00:30::91", 80, ["[fd00:10::5]:80"], masq: false)
        check(t, "2001:db8:ffff::1", "2001:db8::1", 30091, ["[fd00:10::5]:80"], masq: true)
        // Localhost NodePorts never work on IPv6.
        check(t, "::1", "::1", 30091, [], masq: false)
    }

    func testServiceProxyNameHeadlessAndExternalNameGetNoRules() {
        let svcs = [
            F.service("ns", "other", clusterIP: "172.30.0.95", labels: [Service.serviceProxyNameLabel: "someone-else"]),
            Service(name: ObjectName(namespace: "ns", name: "headless"), isHeadless: true,
                    ports: [ServicePort(name: "p80", port: 80)]),
            Service(name: ObjectName(namespace: "ns", name: "ext"), type: .externalName),
        ]
        let slices = [F.slice("ns", "other", [F.ep("10.180.0.1")]), F.slice("ns", "headless", [F.ep("10.180.0.2")])]
        let rs = F.compile(svcs, slices)
        XCTAssertEqual(rs, F.compile([], []))
    }
}
