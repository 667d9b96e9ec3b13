import XCTest

@testable import ProxyConfig

final class RenderTests: XCTestCase {
    private func assertRoundTrip(_ c: KubeProxyConfiguration, file: StaticString = #filePath, line: UInt = #line) throws
    {
        let text = c.render()
        let back = try KubeProxyConfiguration.parse(text)
        XCTAssertEqual(back.warnings, [], text, file: file, line: line)
        XCTAssertEqual(back.configuration, c, text, file: file, line: line)
    }

    func testDefaultsRoundTrip() throws {
        try assertRoundTrip(.defaults)
    }

    func testKubeadmAndJSONConfigsRoundTrip() throws {
        try assertRoundTrip(try KubeProxyConfiguration.parse(Fixtures.kubeadm).configuration)
        try assertRoundTrip(try KubeProxyConfiguration.parse(Fixtures.json).configuration)
    }

    func testAwkwardStringsRoundTrip() throws {
        var c = KubeProxyConfiguration.defaults
        c.hostnameOverride = "true"
        c.winkernel.networkName = "a: b # c"
        c.winkernel.sourceVip = "0123"
        c.showHiddenMetricsForVersion = "1.30"
        c.detectLocal.interfaceNamePrefix = "- x\n\"q\""
        c.featureGates = ["PreferSameTrafficDistribution": true, "AllAlpha": false]
        c.ipvs.excludeCIDRs = ["10.0.0.0/8", "fd00::/8"]
        c.logging.vmodule = [.init(filePattern: "*.go", verbosity: 2)]
        c.logging.options = .map([
            ConfigEntry(key: "json", value: .map([ConfigEntry(key: "infoBufferSize", value: .string("0"))]))
        ])
        c.clientConnection.qps = 2.5
        try assertRoundTrip(c)
    }

    func testRenderedDefaultsReadLikeKubeProxyOutput() {
        let text = KubeProxyConfiguration.defaults.render()
        for line in [
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1", "kind: KubeProxyConfiguration", "mode: iptables",
            "configSyncPeriod: 15m0s", "  syncPeriod: 30s", "  minSyncPeriod: 1s", "  masqueradeBit: 14",
            "  tcpEstablishedTimeout: 24h0m0s", "  tcpCloseWaitTimeout: 1h0m0s",
            "healthzBindAddress: \"0.0.0.0:10256\"",
            "nodePortAddresses: []", "detectLocalMode: ClusterCIDR", "oomScoreAdj: -999",
        ] {
            XCTAssertTrue(
                text.contains("\n" + line + "\n") || text.hasPrefix(line + "\n"), "missing \(line) in\n\(text)")
        }
    }
}
