import KubeModel
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// kube-proxy 1.23's own expectations (legacy-layout §7.1, §7.2, §7.5, verbatim in
/// `Golden/upstream-v1.23/<test>/upstream-expected.txt`), compared as upstream compared them: chain by chain, with
/// only the order of Services in KUBE-SERVICES / KUBE-NODEPORTS taken out (`legacySorted`). The whole dry-run
/// output of each (base jumps, kubelet's ensured rules, the deleted KUBE-PROXY-FIREWALL) is golden-filed beside it.
final class V123UpstreamFixtureTests: XCTestCase {
    typealias F = Fixture

    /// 1.23's `NewFakeProxier`: test-hostname, cluster CIDR 10.0.0.0/24, mark 0x4000, nodePortAddresses unset,
    /// no node IP, no `--random-fully`.
    static func settings() -> NodeSettings {
        NodeSettings(
            family: .ipv4, nodeName: "test-hostname", localDetector: .cidr(CIDR("10.0.0.0/24")!),
            ruleLayout: .v1_23)
    }

    /// §7.1 `TestOverallIPTablesRulesWithMultipleServices` inputs (the shared ClusterIP and NodePort are upstream's).
    static func overallCluster() -> ([Service], [EndpointSlice]) {
        let lb = [ServicePort(name: "p80", port: 80, nodePort: 3001)]
        let services = [
            F.service("ns1", "svc1", clusterIP: "10.20.30.41"),
            F.service(
                "ns2", "svc2", type: .loadBalancer, clusterIP: "10.20.30.42", ports: lb, externalIPs: ["1.2.3.4"],
                lbIPs: ["1.2.3.4"], sourceRanges: [" 1.2.3.4/28"], etp: .local, hcnp: 30000),
            F.service(
                "ns2b", "svc2b", type: .loadBalancer, clusterIP: "10.20.30.43", ports: lb, lbIPs: ["1.2.3.5"],
                hcnp: 30000),
            F.service("ns3", "svc3", type: .nodePort, clusterIP: "10.20.30.43", ports: lb),
            F.service(
                "ns4", "svc4", type: .nodePort, clusterIP: "10.20.30.44",
                ports: [ServicePort(name: "p80", port: 80, targetPort: .int(80))], externalIPs: ["50.60.70.81"]),
        ]
        let slices = [
            F.slice("ns1", "svc1", [F.ep("10.180.0.1")]),
            F.slice("ns2", "svc2", [F.ep("10.180.0.2")]),
            F.slice("ns2b", "svc2b", [F.ep("10.180.0.3")]),
            F.slice("ns3", "svc3", [F.ep("10.180.0.3")]),
            F.slice("ns4", "svc4", [F.ep("10.180.0.4"), F.ep("10.180.0.5", node: "test-hostname")]),
        ]
        return (services, slices)
    }

    /// Upstream's payload against its verbatim expectation, and the whole output against its golden file.
    /// iptables stores a CIDR's network address (`-s 1.2.3.4/28` reads back as `1.2.3.0/28`), and kube-natd writes
    /// that form, so the expectation's CIDRs are compared by their network address.
    func assertMatchesUpstream(_ rs: Ruleset, _ test: String, file: StaticString = #filePath, line: UInt = #line) throws
    {
        let expected = try golden("upstream-v1.23/\(test)/upstream-expected.txt")
        let payload = TextRenderer.render(restorePayload(rs))
        assertSameLines(legacySorted(payload), legacySorted(Self.networkAddresses(expected)), file: file, line: line)
        try assertGolden(TextRenderer.render(rs), "upstream-v1.23/\(test)/whole-output.txt", file: file, line: line)
    }

    static func networkAddresses(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.split(separator: " ", omittingEmptySubsequences: false).map { word in
                word.contains("/") && !word.contains(":") ? CIDR(word)?.description ?? String(word) : String(word)
            }.joined(separator: " ")
        }.joined(separator: "\n")
    }

    func testOverallIPTablesRulesWithMultipleServicesMatchV123() throws {
        let (services, slices) = Self.overallCluster()
        try assertMatchesUpstream(
            F.compile(services, slices, settings: Self.settings()),
            "overall-iptables-rules-with-multiple-services")
    }

    func testOnlyLocalLoadBalancingMatchesV123() throws {
        let svc = F.service(
            "ns1", "svc1", type: .loadBalancer, clusterIP: "10.20.30.41",
            ports: [ServicePort(name: "p80", port: 80, nodePort: 3001)], lbIPs: ["1.2.3.4"], etp: .local,
            affinity: 10800)
        let slice = F.slice("ns1", "svc1", [F.ep("10.180.0.1"), F.ep("10.180.2.1", node: "test-hostname")])
        try assertMatchesUpstream(F.compile([svc], [slice], settings: Self.settings()), "only-local-load-balancing")
    }

    func testLoadBalancerRejectMatchesV123() throws {
        let svc = F.service(
            "ns1", "svc1", type: .loadBalancer, clusterIP: "10.20.30.41",
            ports: [ServicePort(name: "p80", port: 80, nodePort: 3001)], lbIPs: ["1.2.3.4"], etp: .local,
            affinity: 10800)
        try assertMatchesUpstream(F.compile([svc], [], settings: Self.settings()), "load-balancer-reject")
    }

    /// §7.5's note: `TestHealthCheckNodePort` is `TestLoadBalancerReject` with healthCheckNodePort 30000 and
    /// nodePortAddresses ["127.0.0.1/16"]: one more filter rule, and the tail jumps for `-d 127.0.0.1` (v1.23 did not
    /// skip loopback addresses).
    func testHealthCheckNodePortMatchesV123() throws {
        let svc = F.service(
            "ns1", "svc1", type: .loadBalancer, clusterIP: "10.20.30.41",
            ports: [ServicePort(name: "p80", port: 80, nodePort: 3001)], lbIPs: ["1.2.3.4"], etp: .local, hcnp: 30000,
            affinity: 10800)
        var settings = Self.settings()
        settings.nodePortAddresses = .addresses([F.ip("127.0.0.1")])
        let tail =
            "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\""
        let expected = try golden("upstream-v1.23/load-balancer-reject/upstream-expected.txt")
            .replacingOccurrences(
                of: "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n",
                with:
                    "-A KUBE-NODEPORTS -m comment --comment \"ns1/svc1:p80 health check node port\" -m tcp -p tcp --dport 30000 -j ACCEPT\n"
                    + "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"
            )
            .replacingOccurrences(of: tail + " -m addrtype --dst-type LOCAL -j", with: tail + " -d 127.0.0.1 -j")
        let payload = TextRenderer.render(restorePayload(F.compile([svc], [], settings: settings)))
        assertSameLines(legacySorted(payload), legacySorted(expected))
    }

    /// Settings v1.23 did not have leave its rules alone: localhostNodePorts (no loopback exclusion in the tail),
    /// conntrack.tcpBeLiberal and nfacct counters (the INVALID drop is unconditional and uncounted).
    func testSettingsV123DidNotHaveDoNotChangeItsRules() {
        let (services, slices) = Self.overallCluster()
        let plain = TextRenderer.render(F.compile(services, slices, settings: Self.settings()))
        var settings = Self.settings()
        settings.localhostNodePorts = false
        settings.conntrackTCPBeLiberal = true
        settings.features.nfacctCounters = true
        XCTAssertEqual(TextRenderer.render(F.compile(services, slices, settings: settings)), plain)
    }

    /// Upstream also checked `sync_proxy_rules_iptables_total{table="nat"}` against the payload's nat rules.
    func testNatRuleCountEqualsTheNatRulesOfTheExpectedPayload() throws {
        let (services, slices) = Self.overallCluster()
        let rs = F.compile(services, slices, settings: Self.settings())
        let expected = try golden("upstream-v1.23/overall-iptables-rules-with-multiple-services/upstream-expected.txt")
        let natRules = expected.components(separatedBy: "*nat\n")[1].split(separator: "\n").filter {
            $0.hasPrefix("-A ")
        }
        XCTAssertEqual(rs[.nat]!.ruleCount, natRules.count)
    }

    /// The derived example of legacy-layout §7.6 (the 2021 article's `nginx-np-local`, on the node with both
    /// endpoints and on one without), which ties the layout to a real cluster's `iptables -L`. The spec writes Go's
    /// `0x00004000`; kube-natd writes `0x4000`, which iptables reads as the same mark.
    func testArticleNodePortLocalMatchesTheDerivedExample() throws {
        let svc = F.service(
            "default", "nginx-np-local", type: .nodePort, clusterIP: "10.109.138.5",
            ports: [ServicePort(name: "http", port: 80, targetPort: .int(80), nodePort: 30080)], etp: .local)
        let slice = F.slice(
            "default", "nginx-np-local", ports: [EndpointPort(name: "http", port: 80)],
            [F.ep("10.244.1.7", node: "k8s-node01"), F.ep("10.244.1.8", node: "k8s-node01")])
        var settings = Self.settings()
        settings.nodeName = "k8s-node01"
        settings.localDetector = .cidr(CIDR("10.244.0.0/16")!)
        let nat = TextRenderer.render(
            Ruleset(family: .ipv4, tables: [restorePayload(F.compile([svc], [slice], settings: settings))[.nat]!]))
        let expected = try golden("upstream-v1.23/article-nginx-np-local/derived-nat.txt")
            .replacingOccurrences(of: "0x00004000", with: "0x4000")
        assertSameLines(legacySorted(nat), legacySorted(expected))

        settings.nodeName = "k8s-node02"
        let other = TextRenderer.render(
            Ruleset(family: .ipv4, tables: [restorePayload(F.compile([svc], [slice], settings: settings))[.nat]!]))
        let noLocal =
            "-A KUBE-XLB-ZHY4VQWGMMCQVISC -m comment --comment \"default/nginx-np-local:http has no local endpoints\" -j KUBE-MARK-DROP"
        let expectedOther =
            expected.split(separator: "\n").filter {
                !($0.hasPrefix("-A KUBE-XLB-ZHY4VQWGMMCQVISC -m comment --comment default/nginx-np-local:http "))
            }.map(String.init).joined(separator: "\n").replacingOccurrences(of: "COMMIT", with: noLocal + "\nCOMMIT")
            + "\n"
        assertSameLines(legacySorted(other), legacySorted(expectedOther))
    }
}
