import XCTest

@testable import ProxyConfig

final class ValidationTests: XCTestCase {
    /// The problem lines for a minimal file plus `extra`, or [] when it loads.
    private func problems(_ extra: String) -> [String] {
        do {
            _ = try KubeProxyConfiguration.parse(Fixtures.minimal(extra))
            return []
        } catch {
            return ((error as Error) as? ConfigurationError)?.problems.map(\.description) ?? ["\(error)"]
        }
    }

    private func assertProblem(_ extra: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line)
    {
        XCTAssertEqual(problems(extra), [expected], file: file, line: line)
    }

    func testUnknownFieldsWarnWithTheirPathAndAreIgnored() throws {
        let loaded = try KubeProxyConfiguration.parse(
            Fixtures.minimal(
                "iptables:\n  foo: 1\n  syncPeriod: 10s\nbar: true\nconntrack:\n  min: 5\n  maxPerCoreX: 3"))
        XCTAssertEqual(
            loaded.warnings.map(\.description),
            ["unknown field \"iptables.foo\"", "unknown field \"conntrack.maxPerCoreX\"", "unknown field \"bar\""])
        XCTAssertEqual(loaded.configuration.iptables.syncPeriod, .seconds(10))
        XCTAssertEqual(loaded.configuration.conntrack.min, 5)
    }

    func testDuplicateFieldsAreASyntaxError() {
        XCTAssertThrowsError(
            try KubeProxyConfiguration.parse(Fixtures.minimal("iptables:\n  syncPeriod: 10s\n  syncPeriod: 20s"))
        ) {
            guard case .syntax(let text)? = ($0 as? ConfigurationError)?.problems.first else { return XCTFail("\($0)") }
            XCTAssertTrue(text.contains("syncPeriod"), text)
        }
    }

    func testFieldNamesAreCaseSensitive() throws {
        let loaded = try KubeProxyConfiguration.parse(Fixtures.minimal("ClusterCIDR: 10.0.0.0/8"))
        XCTAssertEqual(loaded.warnings, [.unknownField(path: "ClusterCIDR")])
        XCTAssertEqual(loaded.configuration.clusterCIDR, "")
    }

    func testWrongAPIVersionOrKindIsAnError() {
        XCTAssertThrowsError(
            try KubeProxyConfiguration.parse("apiVersion: kubeproxy.config.k8s.io/v1beta1\nkind: KubeletConfiguration")
        ) {
            XCTAssertEqual(
                ($0 as? ConfigurationError)?.problems.map(\.description),
                [
                    "apiVersion: must be kubeproxy.config.k8s.io/v1alpha1, got \"kubeproxy.config.k8s.io/v1beta1\"",
                    "kind: must be KubeProxyConfiguration, got \"KubeletConfiguration\"",
                ])
        }
    }

    func testSyntaxErrorIsReported() {
        XCTAssertThrowsError(try KubeProxyConfiguration.parse("apiVersion: [unclosed")) {
            guard case .syntax? = ($0 as? ConfigurationError)?.problems.first else { return XCTFail("\($0)") }
        }
    }

    func testMasqueradeBitRange() {
        assertProblem("iptables:\n  masqueradeBit: 40", "iptables.masqueradeBit: must be 0..31, got 40")
        assertProblem("iptables:\n  masqueradeBit: -1", "iptables.masqueradeBit: must be 0..31, got -1")
        XCTAssertEqual(problems("iptables:\n  masqueradeBit: 31"), [])
    }

    func testWrongTypesNameTheFieldAndValue() {
        assertProblem("iptables:\n  syncPeriod: abc", "iptables.syncPeriod: expected a duration, got \"abc\"")
        assertProblem("iptables:\n  syncPeriod: 30", "iptables.syncPeriod: expected a duration, got 30")
        assertProblem(
            "iptables:\n  masqueradeBit: \"14\"", "iptables.masqueradeBit: expected a 32-bit integer, got \"14\"")
        assertProblem(
            "iptables:\n  masqueradeAll: maybe", "iptables.masqueradeAll: expected true or false, got \"maybe\"")
        assertProblem("hostnameOverride: 12", "hostnameOverride: expected a string, got 12")
        assertProblem("conntrack: 5", "conntrack: expected an object, got 5")
        assertProblem(
            "nodePortAddresses: 10.0.0.0/8", "nodePortAddresses: expected a list of strings, got \"10.0.0.0/8\"")
        assertProblem("featureGates:\n  Foo: 1", "featureGates.Foo: expected true or false, got 1")
        assertProblem("oomScoreAdj: 99999999999", "oomScoreAdj: expected a 32-bit integer, got 99999999999")
    }

    func testNegativeAndInconsistentSyncPeriods() {
        assertProblem("iptables:\n  syncPeriod: -5s", "iptables.syncPeriod: must be greater than 0, got -5s")
        assertProblem(
            "iptables:\n  minSyncPeriod: -1s",
            "iptables.minSyncPeriod: must be greater than or equal to 0, got -1s")
        assertProblem(
            "iptables:\n  syncPeriod: 1s\n  minSyncPeriod: 5s",
            "iptables.syncPeriod: must be greater than or equal to iptables.minSyncPeriod (5s), got 1s")
        assertProblem("configSyncPeriod: -1m", "configSyncPeriod: must be greater than 0, got -1m0s")
    }

    func testBindAddresses() {
        assertProblem("bindAddress: not-an-ip", "bindAddress: must be an IP address, got \"not-an-ip\"")
        assertProblem("metricsBindAddress: localhost", "metricsBindAddress: must be IP:port, got \"localhost\"")
        assertProblem(
            "healthzBindAddress: foo:10256", "healthzBindAddress: must be IP:port with a valid IP, got \"foo:10256\"")
        assertProblem(
            "metricsBindAddress: 127.0.0.1:70000",
            "metricsBindAddress: must be IP:port with a port in 1..65535, got \"127.0.0.1:70000\"")
        XCTAssertEqual(problems("metricsBindAddress: \"[::1]:10249\"\nhealthzBindAddress: 0.0.0.0:1"), [])
    }

    func testClusterCIDR() {
        assertProblem(
            "clusterCIDR: 10.0.0.0/33",
            "clusterCIDR: must be a valid CIDR block (e.g. 10.100.0.0/16 or fde4:8dba:82e1::/48), got \"10.0.0.0/33\"")
        assertProblem(
            "clusterCIDR: 10.0.0.0/8,10.1.0.0/16",
            "clusterCIDR: must be a valid dual-stack pair, one CIDR per family (e.g. 10.100.0.0/16,fde4:8dba:82e1::/48), got \"10.0.0.0/8,10.1.0.0/16\""
        )
        assertProblem(
            "clusterCIDR: 10.0.0.0/8,fd00::/48,10.1.0.0/16",
            "clusterCIDR: must be one CIDR or a dual-stack pair (e.g. 10.100.0.0/16,fde4:8dba:82e1::/48), got \"10.0.0.0/8,fd00::/48,10.1.0.0/16\""
        )
        XCTAssertEqual(problems("clusterCIDR: 10.0.0.0/8,fd00::/48"), [])
    }

    func testNodePortAddresses() {
        assertProblem(
            "nodePortAddresses: [10.0.0.0/8, eth0]",
            "nodePortAddresses[1]: must be a CIDR or one of primary, localhost, all, got \"eth0\"")
        XCTAssertEqual(problems("nodePortAddresses: [primary, localhost, all, 10.0.0.0/8, \"fd00::/64\"]"), [])
    }

    func testModeOtherThanIPTablesIsRefused() {
        assertProblem("mode: ipvs", "mode: kube-natd implements iptables mode only, got \"ipvs\"")
        assertProblem("mode: nftables", "mode: kube-natd implements iptables mode only, got \"nftables\"")
        XCTAssertEqual(problems("mode: iptables"), [])
        XCTAssertEqual(problems("mode: \"\""), [])
    }

    func testDetectLocalMode() {
        assertProblem(
            "detectLocalMode: PodCIDR",
            "detectLocalMode: must be one of ClusterCIDR, NodeCIDR, BridgeInterface, InterfaceNamePrefix, got \"PodCIDR\""
        )
        assertProblem(
            "detectLocalMode: BridgeInterface",
            "detectLocal.bridgeInterface: must not be empty when detectLocalMode is BridgeInterface, got \"\"")
        assertProblem(
            "detectLocalMode: InterfaceNamePrefix",
            "detectLocal.interfaceNamePrefix: must not be empty when detectLocalMode is InterfaceNamePrefix, got \"\"")
        XCTAssertEqual(problems("detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: veth"), [])
    }

    func testConntrackNegatives() {
        assertProblem(
            "conntrack:\n  maxPerCore: -1", "conntrack.maxPerCore: must be greater than or equal to 0, got -1")
        assertProblem("conntrack:\n  min: -2", "conntrack.min: must be greater than or equal to 0, got -2")
        assertProblem(
            "conntrack:\n  tcpEstablishedTimeout: -1h",
            "conntrack.tcpEstablishedTimeout: must be greater than or equal to 0, got -1h0m0s")
        assertProblem(
            "conntrack:\n  udpStreamTimeout: -1s",
            "conntrack.udpStreamTimeout: must be greater than or equal to 0, got -1s")
    }

    func testOOMScoreAdjRange() {
        assertProblem("oomScoreAdj: 2000", "oomScoreAdj: must be -1000..1000, got 2000")
        XCTAssertEqual(problems("oomScoreAdj: -1000"), [])
    }

    func testPortRange() {
        assertProblem("portRange: 2000-300", "portRange: must be a valid port range (e.g. 300-2000), got \"2000-300\"")
        assertProblem("portRange: abc", "portRange: must be a valid port range (e.g. 300-2000), got \"abc\"")
        XCTAssertEqual(problems("portRange: 300-2000"), [])
        XCTAssertEqual(problems("portRange: 300+100"), [])
    }

    func testOtherChecks() {
        assertProblem(
            "clientConnection:\n  burst: -1", "clientConnection.burst: must be greater than or equal to 0, got -1")
        assertProblem("logging:\n  format: xml", "logging.format: must be text or json, got \"xml\"")
        assertProblem(
            "showHiddenMetricsForVersion: latest",
            "showHiddenMetricsForVersion: must be a version like 1.30, got \"latest\"")
    }

    func testAllProblemsAreCollected() {
        let found = problems("mode: ipvs\niptables:\n  masqueradeBit: 40\n  syncPeriod: abc\noomScoreAdj: 5000")
        XCTAssertEqual(
            found,
            [
                "iptables.syncPeriod: expected a duration, got \"abc\"",
                "mode: kube-natd implements iptables mode only, got \"ipvs\"",
                "iptables.masqueradeBit: must be 0..31, got 40",
                "oomScoreAdj: must be -1000..1000, got 5000",
            ])
    }

    func testErrorDescriptionListsEveryProblem() {
        XCTAssertThrowsError(try KubeProxyConfiguration.parse(Fixtures.minimal("mode: ipvs\noomScoreAdj: 5000"))) {
            XCTAssertEqual(
                "\($0)",
                """
                invalid KubeProxyConfiguration:
                  mode: kube-natd implements iptables mode only, got "ipvs"
                  oomScoreAdj: must be -1000..1000, got 5000
                """)
        }
    }
}
