import KubeModel
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// Upstream's TestOverallIPTablesRules (reference §2.2 inputs, §2.3 expected output, verbatim).
final class UpstreamFixtureTests: XCTestCase {
    static func overallCluster() -> ([Service], [EndpointSlice]) {
        typealias F = Fixture
        let services = [
            F.service("ns1", "svc1", clusterIP: "172.30.0.41"),
            F.service("ns2", "svc2", type: .loadBalancer, clusterIP: "172.30.0.42",
                      ports: [ServicePort(name: "p80", port: 80, nodePort: 3001)], externalIPs: ["192.168.99.22"],
                      lbIPs: ["1.2.3.4"], etp: .local, hcnp: 30000),
            F.service("ns3", "svc3", type: .nodePort, clusterIP: "172.30.0.43",
                      ports: [ServicePort(name: "p80", port: 80, nodePort: 3003)]),
            F.service("ns4", "svc4", type: .nodePort, clusterIP: "172.30.0.44",
                      ports: [ServicePort(name: "p80", port: 80, targetPort: .int(80))], externalIPs: ["192.168.99.33"]),
            F.service("ns5", "svc5", type: .loadBalancer, clusterIP: "172.30.0.45",
                      ports: [ServicePort(name: "p80", port: 80, nodePort: 3002)], lbIPs: ["5.6.7.8"],
                      sourceRanges: [" 203.0.113.0/25"], etp: .cluster, hcnp: 30000, affinity: 10800),
            F.service("ns6", "svc6", clusterIP: "172.30.0.46", ports: [ServicePort(name: "p80", port: 80, targetPort: .int(80))]),
        ]
        let slices = [
            F.slice("ns1", "svc1", [F.ep("10.180.0.1")]),
            F.slice("ns2", "svc2", [F.ep("10.180.0.2")]),
            F.slice("ns3", "svc3", [F.ep("10.180.0.3")]),
            F.slice("ns4", "svc4", [F.ep("10.180.0.4"), F.ep("10.180.0.5", node: "test-node")]),
            F.slice("ns5", "svc5", [F.ep("10.180.0.3")]),
        ]
        return (services, slices)
    }

    func testOverallIPTablesRulesMatchUpstreamVerbatim() throws {
        let (services, slices) = Self.overallCluster()
        let rs = Fixture.compile(services, slices)
        assertSameLines(upstreamSorted(rs), try golden("upstream-overall-iptables-rules.txt"))
    }

    /// Upstream also checks `sync_proxy_rules_iptables_total{table="nat"}` equals the nat `-A` lines.
    func testNatRuleCountEqualsTheNatRulesOfTheExpectedPayload() throws {
        let (services, slices) = Self.overallCluster()
        let rs = Fixture.compile(services, slices)
        let expected = try golden("upstream-overall-iptables-rules.txt")
        let natSection = expected.components(separatedBy: "*nat\n")[1]
        let natRules = natSection.split(separator: "\n").filter { $0.hasPrefix("-A ") }.count
        XCTAssertEqual(rs[.nat]!.ruleCount, natRules)
    }

    func testWithoutNfacctTheInvalidDropHasNoCounter() {
        let (services, slices) = Self.overallCluster()
        let text = TextRenderer.render(Fixture.compile(services, slices, settings: Fixture.settings(nfacct: false)))
        XCTAssertTrue(text.contains("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"))
        XCTAssertFalse(text.contains("nfacct"))
    }

    func testTCPBeLiberalRemovesTheInvalidDrop() {
        var s = Fixture.settings()
        s.conntrackTCPBeLiberal = true
        let (services, slices) = Self.overallCluster()
        XCTAssertFalse(TextRenderer.render(Fixture.compile(services, slices, settings: s)).contains("INVALID"))
    }

    func testRandomFullyIsAppendedWhenSupported() {
        var s = Fixture.settings()
        s.features.randomFully = true
        let text = TextRenderer.render(Fixture.compile([], [], settings: s))
        XCTAssertTrue(text.contains(
            "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n"))
    }
}

final class ChainNamingTests: XCTestCase {
    func testServiceChainHashesMatchUpstreamExamples() {
        XCTAssertEqual(ChainNaming.portProtoHash("ns1/svc1:p80", "tcp"), "XPGD46QRK7WJZT7O")
        XCTAssertEqual(ChainNaming.portProtoHash("ns2/svc2:p80", "tcp"), "GNZBNJ2PO5MGZ6GT")
        XCTAssertEqual(ChainNaming.portProtoHash("ns3/svc3:p80", "tcp"), "X27LE4BHSL4DOUIK")
        XCTAssertEqual(ChainNaming.portProtoHash("ns4/svc4:p80", "tcp"), "4SW47YFZTEDKD3PK")
        XCTAssertEqual(ChainNaming.portProtoHash("ns5/svc5:p80", "tcp"), "NUKIZ6OKUXPJNT4C")
        XCTAssertEqual(ChainNaming.portProtoHash("ns4/svc4:p8082", "tcp"), "EBDQOQU5SJFXRIL3")
    }

    func testEndpointChainHashesMatchUpstreamExamples() {
        XCTAssertEqual(ChainNaming.endpointChain("ns1/svc1:p80", "tcp", "10.180.0.1:80"), "KUBE-SEP-SXIVWICOYRO3J4NJ")
        XCTAssertEqual(ChainNaming.endpointChain("ns2/svc2:p80", "tcp", "10.180.0.2:80"), "KUBE-SEP-RS4RBKLTHTF2IUXJ")
        XCTAssertEqual(ChainNaming.endpointChain("ns3/svc3:p80", "tcp", "10.180.0.3:80"), "KUBE-SEP-OYPFS5VJICHGATKP")
        XCTAssertEqual(ChainNaming.endpointChain("ns4/svc4:p80", "tcp", "10.180.0.4:80"), "KUBE-SEP-UKSFD7AGPMPPLUHC")
        XCTAssertEqual(ChainNaming.endpointChain("ns4/svc4:p80", "tcp", "10.180.0.5:80"), "KUBE-SEP-C6EBXVWJJZMIWKLZ")
        XCTAssertEqual(ChainNaming.endpointChain("ns5/svc5:p80", "tcp", "10.180.0.3:80"), "KUBE-SEP-I77PXRDZVX7PMWMN")
        XCTAssertEqual(ChainNaming.endpointChain("ns1/svc1:p80", "tcp", "10.0.0.0:80"), "KUBE-SEP-DKGQUZGBKLTPAR56")
        XCTAssertEqual(ChainNaming.endpointChain("ns3/svc3:p8081", "tcp", "203.0.113.4:8081"), "KUBE-SEP-RUVVH7YV3PHQBDOS")
        XCTAssertEqual(ChainNaming.endpointChain("ns4/svc4:p8082", "tcp", "10.4.0.1:8082"), "KUBE-SEP-SU5STNODRYEWJAUF")
    }

    func testProbabilityTextMatchesUpstream() {
        let expected = [1: "1.0000000000", 2: "0.5000000000", 3: "0.3333333333", 10: "0.1000000000",
                        100: "0.0100000000", 1000: "0.0010000000", 10000: "0.0001000000",
                        100000: "0.0000100000", 100001: "0.0000099999"]
        for (n, text) in expected { XCTAssertEqual(ChainNaming.probability(n), text, "n=\(n)") }
    }
}
