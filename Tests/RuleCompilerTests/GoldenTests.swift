import Foundation
import KubeModel
import KubeSource
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// Whole dry-run outputs, one case per feature, both families. Each case directory under
/// `Golden/cases/` holds `config.yaml` (a KubeProxyConfiguration) and `cluster.yaml` (manifests) and the
/// expected `expected-ipv4.txt` / `expected-ipv6.txt`. The kernel tests load the same cases through
/// `kube-natd --once` and `iptables-legacy-restore`. Run with UPDATE_GOLDEN=1 to rewrite the expectations.
final class GoldenTests: XCTestCase {
    static let casesInSource = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Golden/cases")

    var casesDirectory: URL { Bundle.module.url(forResource: "Golden", withExtension: nil)!.appendingPathComponent("cases") }

    static func render(caseDirectory dir: URL, family: IPFamily) throws -> String {
        let text = try String(contentsOf: dir.appendingPathComponent("config.yaml"), encoding: .utf8)
        let config = try KubeProxyConfiguration.load(configText: text, overrides: ConfigOverrides()).configuration
        let nodeName = KubeProxyConfiguration.nodeName(flag: nil, config: config.hostnameOverride, hostname: { "unused" })
        let settings = config.nodeSettings(family: family, nodeName: nodeName, nodeIPs: [IPAddress(config.bindAddress)!],
                                           podCIDR: nil, features: KernelFeatures())
        let load = try ManifestSource(path: dir.appendingPathComponent("cluster.yaml").path).load()
        XCTAssertEqual(load.issues.map(\.description), [], "case \(dir.lastPathComponent) should load cleanly")
        return TextRenderer.render(RuleCompiler(settings: settings).compile(load.clusterState))
    }

    func testEveryCaseMatchesItsGoldenOutput() throws {
        let cases = try FileManager.default.contentsOfDirectory(atPath: casesDirectory.path).sorted()
        XCTAssertGreaterThanOrEqual(cases.count, 20)
        let update = ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1"
        for name in cases {
            for family in IPFamily.allCases {
                let actual = try Self.render(caseDirectory: casesDirectory.appendingPathComponent(name), family: family)
                let file = "expected-\(family.flagName).txt"
                if update {
                    try actual.write(to: Self.casesInSource.appendingPathComponent(name).appendingPathComponent(file),
                                     atomically: true, encoding: .utf8)
                    continue
                }
                let expected = try String(contentsOf: casesDirectory.appendingPathComponent(name).appendingPathComponent(file), encoding: .utf8)
                if actual != expected {
                    XCTFail("golden case \(name) (\(family.rawValue)) differs")
                    assertSameLines(actual, expected)
                }
            }
        }
    }
}
