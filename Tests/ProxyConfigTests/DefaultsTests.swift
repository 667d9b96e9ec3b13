import KubeModel
import XCTest

@testable import ProxyConfig

final class DefaultsTests: XCTestCase {
    private func load(_ text: String) throws -> LoadedConfiguration {
        try KubeProxyConfiguration.parse(text)
    }

    func testKubeadmConfigFullOfZeroValuesGivesKubeProxyDefaults() throws {
        let loaded = try load(Fixtures.kubeadm)
        XCTAssertEqual(loaded.warnings, [])
        let c = loaded.configuration
        XCTAssertEqual(c.mode, "iptables")
        XCTAssertEqual(c.bindAddress, "0.0.0.0")
        XCTAssertEqual(c.healthzBindAddress, "0.0.0.0:10256")
        XCTAssertEqual(c.metricsBindAddress, "127.0.0.1:10249")
        XCTAssertEqual(c.configSyncPeriod.description, "15m0s")
        XCTAssertEqual(c.clientConnection.qps, 5)
        XCTAssertEqual(c.clientConnection.burst, 10)
        XCTAssertEqual(c.clientConnection.contentType, "application/vnd.kubernetes.protobuf")
        XCTAssertEqual(c.clientConnection.kubeconfig, "/var/lib/kube-proxy/kubeconfig.conf")
        XCTAssertEqual(c.iptables.masqueradeBit, 14)
        XCTAssertEqual(c.iptables.localhostNodePorts, true)
        XCTAssertEqual(c.iptables.syncPeriod.description, "30s")
        XCTAssertEqual(c.iptables.minSyncPeriod.description, "1s")
        XCTAssertEqual(c.nftables.masqueradeBit, 14)
        XCTAssertEqual(c.nftables.syncPeriod.description, "30s")
        XCTAssertEqual(c.ipvs.syncPeriod.description, "30s")
        XCTAssertEqual(c.conntrack.maxPerCore, 32768)
        XCTAssertEqual(c.conntrack.min, 131072)
        XCTAssertEqual(c.conntrack.tcpEstablishedTimeout.description, "24h0m0s")
        XCTAssertEqual(c.conntrack.tcpCloseWaitTimeout.description, "1h0m0s")
        XCTAssertEqual(c.conntrack.udpTimeout, .zero)
        XCTAssertEqual(c.detectLocalMode, .clusterCIDR)
        XCTAssertEqual(c.oomScoreAdj, -999)
        XCTAssertEqual(c.clusterCIDRs, [CIDR("10.244.0.0/16")!])
        XCTAssertEqual(c.nodePortAddresses, [])
        XCTAssertEqual(c.logging.format, "text")
        XCTAssertEqual(c.logging.flushFrequency.description, "5s")
    }

    func testMinimalFileEqualsDefaults() throws {
        XCTAssertEqual(try load(Fixtures.minimal).configuration, KubeProxyConfiguration.defaults)
    }

    func testEveryDefault() {
        let c = KubeProxyConfiguration.defaults
        XCTAssertEqual(c.featureGates, [:])
        XCTAssertEqual(c.hostnameOverride, "")
        XCTAssertEqual(c.bindAddress, "0.0.0.0")
        XCTAssertEqual(c.healthzBindAddress, "0.0.0.0:10256")
        XCTAssertEqual(c.metricsBindAddress, "127.0.0.1:10249")
        XCTAssertFalse(c.bindAddressHardFail)
        XCTAssertFalse(c.enableProfiling)
        XCTAssertEqual(c.showHiddenMetricsForVersion, "")
        XCTAssertEqual(c.mode, "iptables")
        XCTAssertEqual(c.iptables.masqueradeBit, 14)
        XCTAssertFalse(c.iptables.masqueradeAll)
        XCTAssertTrue(c.iptables.localhostNodePorts)
        XCTAssertEqual(c.iptables.syncPeriod, .seconds(30))
        XCTAssertEqual(c.iptables.minSyncPeriod, .seconds(1))
        XCTAssertEqual(c.ipvs.minSyncPeriod, .zero)
        XCTAssertEqual(c.ipvs.excludeCIDRs, [])
        XCTAssertEqual(c.detectLocalMode, .clusterCIDR)
        XCTAssertEqual(c.detectLocal, .init())
        XCTAssertEqual(c.clusterCIDR, "")
        XCTAssertEqual(c.oomScoreAdj, -999)
        XCTAssertEqual(c.conntrack.maxPerCore, 32768)
        XCTAssertEqual(c.conntrack.min, 131072)
        XCTAssertEqual(c.conntrack.tcpEstablishedTimeout, .hours(24))
        XCTAssertEqual(c.conntrack.tcpCloseWaitTimeout, .hours(1))
        XCTAssertFalse(c.conntrack.tcpBeLiberal)
        XCTAssertEqual(c.conntrack.udpStreamTimeout, .zero)
        XCTAssertEqual(c.configSyncPeriod, .minutes(15))
        XCTAssertEqual(c.portRange, "")
        XCTAssertEqual(c.clientConnection.qps, 5)
        XCTAssertEqual(c.clientConnection.burst, 10)
        XCTAssertEqual(c.clientConnection.contentType, "application/vnd.kubernetes.protobuf")
        XCTAssertEqual(c.logging.verbosity, 0)
        XCTAssertEqual(c.winkernel, .init())
    }

    func testZeroIsKeptWherePointerFieldsMakeItMeaningful() throws {
        // masqueradeBit 0 is a valid bit; conntrack 0 means "leave the kernel's value" (pointer fields upstream).
        let c = try load(Fixtures.json).configuration
        XCTAssertEqual(c.iptables.masqueradeBit, 0)
        XCTAssertEqual(c.conntrack.maxPerCore, 0)
        XCTAssertEqual(c.conntrack.min, 0)
        XCTAssertEqual(c.conntrack.tcpEstablishedTimeout, .zero)
        XCTAssertEqual(c.conntrack.tcpCloseWaitTimeout, .hours(1))
    }

    func testJSONConfigIsRead() throws {
        let loaded = try load(Fixtures.json)
        XCTAssertEqual(loaded.warnings, [])
        let c = loaded.configuration
        XCTAssertEqual(c.hostnameOverride, "worker-7")
        XCTAssertEqual(c.featureGates, ["PreferSameTrafficDistribution": true, "AllAlpha": false])
        XCTAssertTrue(c.iptables.masqueradeAll)
        XCTAssertFalse(c.iptables.localhostNodePorts)
        XCTAssertEqual(c.iptables.syncPeriod, .minutes(1))
        XCTAssertEqual(c.iptables.minSyncPeriod, .milliseconds(500))
        XCTAssertTrue(c.conntrack.tcpBeLiberal)
        XCTAssertEqual(c.conntrack.udpStreamTimeout, .minutes(2))
        XCTAssertEqual(c.clusterCIDRs.count, 2)
        XCTAssertEqual(c.oomScoreAdj, -500)
        XCTAssertEqual(c.clientConnection.qps, 20.5)
        XCTAssertEqual(c.logging.vmodule, [.init(filePattern: "proxier*", verbosity: 6)])
        XCTAssertEqual(c.logging.flushFrequency, .seconds(10))
    }

    func testBindAddressIPv6MovesDefaultListenersToIPv6() throws {
        let c = try load(Fixtures.json).configuration
        XCTAssertEqual(c.healthzBindAddress, "[::]:10256")
        XCTAssertEqual(c.metricsBindAddress, "[::1]:10249")
    }

    func testBareIPBindAddressesGetTheDefaultPort() throws {
        let c = try load(Fixtures.minimal("healthzBindAddress: 10.0.0.1\nmetricsBindAddress: \"::\"")).configuration
        XCTAssertEqual(c.healthzBindAddress, "10.0.0.1:10256")
        XCTAssertEqual(c.metricsBindAddress, "[::]:10249")
    }

    func testEmptyDocumentIsRejectedForMissingTypeMeta() {
        XCTAssertThrowsError(try load("")) { error in
            XCTAssertEqual((error as? ConfigurationError)?.problems, [.wrongAPIVersion(got: ""), .wrongKind(got: "")])
        }
    }

    func testDemoConfigParsesWithoutWarnings() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Config/kube-proxy-config.yaml")
        let loaded = try load(String(contentsOf: url, encoding: .utf8))
        XCTAssertEqual(loaded.warnings, [])
        let c = loaded.configuration
        XCTAssertEqual(c.mode, "iptables")
        XCTAssertEqual(c.hostnameOverride, "node-1")
        XCTAssertEqual(c.clusterCIDR, "10.244.0.0/16")
        XCTAssertEqual(c.metricsBindAddress, "127.0.0.1:10249")
        XCTAssertEqual(c.healthzBindAddress, "0.0.0.0:10256")
        XCTAssertEqual(c.iptables.syncPeriod, .seconds(30))
        XCTAssertEqual(c.iptables.minSyncPeriod, .seconds(1))
    }
}

final class ListenAddressTests: XCTestCase {
    func testListenAddressesSplitForTheDaemon() throws {
        let c = try KubeProxyConfiguration.parse(Fixtures.minimal("bindAddress: \"::\"")).configuration
        XCTAssertEqual(c.healthzListenAddress?.host, "::")
        XCTAssertEqual(c.healthzListenAddress?.port, 10256)
        XCTAssertEqual(c.metricsListenAddress?.host, "::1")
        XCTAssertEqual(c.metricsListenAddress?.port, 10249)
    }
}
