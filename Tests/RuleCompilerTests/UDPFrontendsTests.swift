import KubeModel
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// The frontends the conntrack reconciler checks, derived as upstream's `CleanStaleEntries` derives them.
final class UDPFrontendsTests: XCTestCase {
    private typealias F = UDPServiceFrontends.Frontend
    private func ip(_ s: String) -> IPAddress { Fixture.ip(s) }

    private func frontends(_ services: [Service], _ slices: [EndpointSlice], family: IPFamily = .ipv4)
        -> UDPServiceFrontends
    {
        RuleCompiler.udpFrontends(
            ClusterState(services: services, slices: slices),
            settings: Fixture.settings(family: family))
    }

    private let dnsPort = [ServicePort(name: "dns", protocol: .udp, port: 53, nodePort: 30053)]
    private let dnsSlicePort = [EndpointPort(name: "dns", port: 5353, protocol: .udp)]

    func testClusterIPLoadBalancerVIPsExternalIPsAndNodePortMapToServingEndpoints() {
        let svc = Fixture.service(
            "kube-system", "kube-dns", type: .loadBalancer, clusterIP: "10.96.0.53",
            ports: dnsPort, externalIPs: ["5.6.7.8"], lbIPs: ["1.2.3.4"])
        let slice = Fixture.slice(
            "kube-system", "kube-dns", ports: dnsSlicePort,
            [Fixture.ep("10.244.1.12"), Fixture.ep("10.244.2.7")])
        let f = frontends([svc], [slice])
        let serving: Set = [ip("10.244.1.12"), ip("10.244.2.7")]
        XCTAssertEqual(
            f.byAddress,
            [
                F(ip: ip("10.96.0.53"), port: 53): serving, F(ip: ip("1.2.3.4"), port: 53): serving,
                F(ip: ip("5.6.7.8"), port: 53): serving,
            ])
        XCTAssertEqual(f.byNodePort, [30053: serving])
    }

    func testOnlyUDPPortsCount() {
        let svc = Fixture.service(
            "ns", "mixed", clusterIP: "10.96.0.10",
            ports: [
                ServicePort(name: "tcp", protocol: .tcp, port: 53),
                ServicePort(name: "dns", protocol: .udp, port: 53),
            ])
        let slice = Fixture.slice(
            "ns", "mixed", ports: [EndpointPort(name: "tcp", port: 53, protocol: .tcp)] + dnsSlicePort,
            [Fixture.ep("10.244.1.12")])
        let f = frontends([svc], [slice])
        XCTAssertEqual(f.byAddress, [F(ip: ip("10.96.0.10"), port: 53): [ip("10.244.1.12")]])
        XCTAssertTrue(f.byNodePort.isEmpty)
    }

    func testServingCountsWhateverReadinessTerminationOrTrafficPolicy() {
        // Ready, serving-but-terminating and a remote endpoint under ITP Local all keep their flows; a
        // not-serving one does not.
        let svc = Fixture.service("ns", "dns", clusterIP: "10.96.0.10", ports: dnsPort, itp: .local)
        let slice = Fixture.slice(
            "ns", "dns", ports: dnsSlicePort,
            [
                Fixture.ep("10.244.1.1", node: "other-node"),
                Fixture.ep("10.244.1.2", ready: false, serving: true, terminating: true),
                Fixture.ep("10.244.1.3", ready: false, serving: false, terminating: true),
            ])
        XCTAssertEqual(
            frontends([svc], [slice]).byAddress,
            [F(ip: ip("10.96.0.10"), port: 53): [ip("10.244.1.1"), ip("10.244.1.2")]])
    }

    func testServicesWithoutServingEndpointsAreSkipped() {
        let noSlice = Fixture.service("ns", "empty", clusterIP: "10.96.0.11", ports: dnsPort)
        let notServing = Fixture.service("ns", "down", clusterIP: "10.96.0.12", ports: dnsPort)
        let slice = Fixture.slice(
            "ns", "down", ports: dnsSlicePort, [Fixture.ep("10.244.1.3", ready: false, serving: false)])
        XCTAssertTrue(frontends([noSlice, notServing], [slice]).isEmpty)
    }

    func testServicesKubeProxyIgnoresHaveNoFrontends() {
        var headless = Fixture.service("ns", "headless", clusterIP: "10.96.0.13", ports: dnsPort)
        headless.isHeadless = true
        headless.clusterIPs = []
        let other = Fixture.service(
            "ns", "other", clusterIP: "10.96.0.14", ports: dnsPort,
            labels: [Service.serviceProxyNameLabel: "someone-else"])
        let slices = ["headless", "other"].map {
            Fixture.slice("ns", $0, ports: dnsSlicePort, [Fixture.ep("10.244.1.1")])
        }
        XCTAssertTrue(frontends([headless, other], slices).isEmpty)
    }

    func testEachFamilySeesOnlyItsOwnAddresses() {
        let svc = Fixture.service(
            "ns", "dual", type: .nodePort, clusterIP: "10.96.0.10,fd00:10:96::a", ports: dnsPort,
            externalIPs: ["5.6.7.8", "2001:db8::5"])
        let v4 = Fixture.slice("ns", "dual", suffix: "v4", ports: dnsSlicePort, [Fixture.ep("10.244.1.1")])
        let v6 = Fixture.slice(
            "ns", "dual", suffix: "v6", family: .ipv6, ports: dnsSlicePort, [Fixture.ep("fd00:10:244::1")])
        let f6 = frontends([svc], [v4, v6], family: .ipv6)
        XCTAssertEqual(f6.family, .ipv6)
        XCTAssertEqual(
            f6.byAddress,
            [
                F(ip: ip("fd00:10:96::a"), port: 53): [ip("fd00:10:244::1")],
                F(ip: ip("2001:db8::5"), port: 53): [ip("fd00:10:244::1")],
            ])
        XCTAssertEqual(f6.byNodePort, [30053: [ip("fd00:10:244::1")]])
        XCTAssertEqual(frontends([svc], [v4, v6]).byNodePort, [30053: [ip("10.244.1.1")]])
    }
}
