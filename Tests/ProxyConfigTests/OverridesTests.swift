import XCTest

@testable import ProxyConfig

final class OverridesTests: XCTestCase {
    func testFlagsWithoutConfigFileOverrideDefaults() throws {
        var o = ConfigOverrides()
        o.hostnameOverride = " Node-A "
        o.clusterCIDR = "10.244.0.0/16"
        o.masqueradeAll = true
        o.iptablesMasqueradeBit = 15
        o.iptablesSyncPeriod = .seconds(45)
        o.iptablesMinSyncPeriod = .seconds(2)
        o.iptablesLocalhostNodePorts = false
        o.nodePortAddresses = ["10.0.0.0/8,192.168.0.0/16"]
        o.detectLocalMode = "InterfaceNamePrefix"
        o.podInterfaceNamePrefix = "veth"
        o.conntrackMaxPerCore = 0
        o.conntrackTCPBeLiberal = true
        o.conntrackTCPEstablishedTimeout = .hours(2)
        o.kubeconfig = "/etc/kubernetes/proxy.conf"
        o.proxyMode = "iptables"
        o.oomScoreAdj = -100
        o.configSyncPeriod = .minutes(5)
        o.metricsBindAddress = "0.0.0.0:10249"
        o.verbosity = 3
        o.master = "https://10.0.0.1:6443"
        let loaded = try KubeProxyConfiguration.load(configText: nil, overrides: o)
        XCTAssertEqual(loaded.warnings, [])
        let c = loaded.configuration
        XCTAssertEqual(c.hostnameOverride, "node-a")
        XCTAssertEqual(c.clusterCIDR, "10.244.0.0/16")
        XCTAssertTrue(c.iptables.masqueradeAll)
        XCTAssertEqual(c.iptables.masqueradeBit, 15)
        XCTAssertEqual(c.iptables.syncPeriod, .seconds(45))
        XCTAssertEqual(c.iptables.minSyncPeriod, .seconds(2))
        XCTAssertFalse(c.iptables.localhostNodePorts)
        XCTAssertEqual(c.nodePortAddresses, ["10.0.0.0/8", "192.168.0.0/16"])
        XCTAssertEqual(c.detectLocalMode, .interfaceNamePrefix)
        XCTAssertEqual(c.detectLocal.interfaceNamePrefix, "veth")
        XCTAssertEqual(c.conntrack.maxPerCore, 0)
        XCTAssertTrue(c.conntrack.tcpBeLiberal)
        XCTAssertEqual(c.conntrack.tcpEstablishedTimeout, .hours(2))
        XCTAssertEqual(c.clientConnection.kubeconfig, "/etc/kubernetes/proxy.conf")
        XCTAssertEqual(c.oomScoreAdj, -100)
        XCTAssertEqual(c.configSyncPeriod, .minutes(5))
        XCTAssertEqual(c.metricsBindAddress, "0.0.0.0:10249")
        XCTAssertEqual(c.logging.verbosity, 3)
    }

    func testNoFlagsAndNoFileGiveDefaults() throws {
        XCTAssertEqual(
            try KubeProxyConfiguration.load(configText: nil, overrides: .init()).configuration,
            KubeProxyConfiguration.defaults)
    }

    func testWithConfigFileOnlyHostnameOverrideFlagApplies() throws {
        var o = ConfigOverrides()
        o.hostnameOverride = "Flag-Node"
        o.iptablesSyncPeriod = .seconds(5)
        o.clusterCIDR = "10.9.0.0/16"
        o.master = "https://apiserver"
        let loaded = try KubeProxyConfiguration.load(
            configText: Fixtures.minimal("hostnameOverride: file-node\nclusterCIDR: 10.244.0.0/16"), overrides: o)
        XCTAssertEqual(loaded.configuration.hostnameOverride, "flag-node")
        XCTAssertEqual(loaded.configuration.clusterCIDR, "10.244.0.0/16")
        XCTAssertEqual(loaded.configuration.iptables.syncPeriod, .seconds(30))
        XCTAssertEqual(
            loaded.warnings.map(\.description),
            [
                "flag --cluster-cidr is ignored because --config is given",
                "flag --iptables-sync-period is ignored because --config is given",
            ])
    }

    func testFlagValuesAreValidatedAndNameTheFlag() {
        var o = ConfigOverrides()
        o.iptablesMasqueradeBit = 40
        o.proxyMode = "ipvs"
        o.nodePortAddresses = ["10.0.0.0/8", "bogus"]
        o.iptablesSyncPeriod = .seconds(1)
        o.iptablesMinSyncPeriod = .seconds(10)
        XCTAssertThrowsError(try KubeProxyConfiguration.load(configText: nil, overrides: o)) {
            XCTAssertEqual(
                ($0 as? ConfigurationError)?.problems.map(\.description),
                [
                    "--proxy-mode: mode: kube-natd implements iptables mode only, got \"ipvs\"",
                    "--iptables-masquerade-bit: iptables.masqueradeBit: must be 0..31, got 40",
                    "--iptables-sync-period: iptables.syncPeriod: must be greater than or equal to iptables.minSyncPeriod (10s), got 1s",
                    "--nodeport-addresses: nodePortAddresses[1]: must be a CIDR or one of primary, localhost, all, got \"bogus\"",
                ])
        }
    }

    func testNodeNamePrecedence() {
        XCTAssertEqual(KubeProxyConfiguration.nodeName(flag: " Flag ", config: "cfg", hostname: { "host" }), "flag")
        XCTAssertEqual(KubeProxyConfiguration.nodeName(flag: nil, config: "CFG-1", hostname: { "host" }), "cfg-1")
        XCTAssertEqual(
            KubeProxyConfiguration.nodeName(flag: "", config: "  ", hostname: { " Host.Example\n" }), "host.example")
    }
}

final class FlagParsingTests: XCTestCase {
    func testFeatureGatesFlagParses() throws {
        XCTAssertEqual(try ConfigOverrides.parseFeatureGates("A=true, B=False"), ["A": true, "B": false])
        XCTAssertThrowsError(try ConfigOverrides.parseFeatureGates("A=true,B")) {
            XCTAssertEqual(
                ($0 as? ConfigurationError)?.problems.map(\.description),
                ["--feature-gates: featureGates: entries must be Name=true|false, got \"B\""])
        }
    }

    func testEmptyHostnameOverrideFlagDoesNotClearTheFile() throws {
        var o = ConfigOverrides()
        o.hostnameOverride = ""
        let loaded = try KubeProxyConfiguration.load(
            configText: Fixtures.minimal("hostnameOverride: file-node"), overrides: o)
        XCTAssertEqual(loaded.configuration.hostnameOverride, "file-node")
        XCTAssertEqual(loaded.warnings, [])
    }

    func testBlankHostnameOverrideFlagIsAnError() {
        var o = ConfigOverrides()
        o.hostnameOverride = "  "
        XCTAssertThrowsError(try KubeProxyConfiguration.load(configText: Fixtures.minimal, overrides: o)) {
            XCTAssertEqual(
                ($0 as? ConfigurationError)?.problems.map(\.description),
                ["--hostname-override: hostnameOverride: must not be blank, got \"  \""])
        }
    }
}
