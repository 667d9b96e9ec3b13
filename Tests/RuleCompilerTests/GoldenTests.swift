import Foundation
import KubeModel
import KubeSource
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// Whole dry-run outputs, one case per feature, both families. Each case directory holds `config.yaml` (a
/// KubeProxyConfiguration), `cluster.yaml` (manifests) and the expected `expected-ipv4.txt` / `expected-ipv6.txt`,
/// and nothing else. `Golden/cases/` is compiled in today's layout, `Golden/cases-v1.23/` in v1.23's
/// (`--rule-layout v1.23`). The kernel tests load the same cases through `kube-natd --once` and
/// `iptables-legacy-restore`. Run with UPDATE_GOLDEN=1 to rewrite the expectations.
final class GoldenTests: XCTestCase {
    /// Each set of cases and the layout it is compiled in.
    static let caseSets: [(directory: String, layout: RuleLayout)] = [("cases", .current), ("cases-v1.23", .v1_23)]
    static let caseFiles: Set<String> = ["config.yaml", "cluster.yaml", "expected-ipv4.txt", "expected-ipv6.txt"]

    static var goldenDirectory: URL { Bundle.module.url(forResource: "Golden", withExtension: nil)! }
    var casesDirectory: URL { Self.goldenDirectory.appendingPathComponent("cases") }

    /// The case's settings for one family and layout, as `kube-natd --config` would resolve them.
    static func settings(caseDirectory dir: URL, family: IPFamily, layout: RuleLayout = .current) throws -> NodeSettings {
        let text = try String(contentsOf: dir.appendingPathComponent("config.yaml"), encoding: .utf8)
        let config = try KubeProxyConfiguration.load(configText: text, overrides: ConfigOverrides()).configuration
        let nodeName = KubeProxyConfiguration.nodeName(flag: nil, config: config.hostnameOverride, hostname: { "unused" })
        return config.nodeSettings(family: family, nodeName: nodeName, nodeIPs: [IPAddress(config.bindAddress)!],
                                   podCIDR: nil, features: KernelFeatures(), ruleLayout: layout)
    }

    static func clusterState(caseDirectory dir: URL) throws -> ClusterState {
        let load = try ManifestSource(path: dir.appendingPathComponent("cluster.yaml").path).load()
        XCTAssertEqual(load.issues.map(\.description), [], "case \(dir.lastPathComponent) should load cleanly")
        return load.clusterState
    }

    static func render(caseDirectory dir: URL, family: IPFamily, layout: RuleLayout = .current) throws -> String {
        let settings = try settings(caseDirectory: dir, family: family, layout: layout)
        return TextRenderer.render(RuleCompiler(settings: settings).compile(try clusterState(caseDirectory: dir)))
    }

    /// The case directories of one set, sorted.
    static func cases(_ set: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: goldenDirectory.appendingPathComponent(set).path)
            .filter { !$0.hasPrefix(".") }.sorted()
    }

    func testEveryCaseMatchesItsGoldenOutput() throws {
        XCTAssertGreaterThanOrEqual(try Self.cases("cases").count, 20)
        XCTAssertGreaterThanOrEqual(try Self.cases("cases-v1.23").count, 15)
        let update = ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1"
        for (set, layout) in Self.caseSets {
            for name in try Self.cases(set) {
                let dir = Self.goldenDirectory.appendingPathComponent(set).appendingPathComponent(name)
                let files = Set(try FileManager.default.contentsOfDirectory(atPath: dir.path))
                let missing = Self.caseFiles.subtracting(files).filter { !(update && $0.hasPrefix("expected-")) }
                XCTAssertEqual(missing, [], "\(set)/\(name): missing files")
                XCTAssertEqual(files.subtracting(Self.caseFiles), [], "\(set)/\(name): unexpected files")
                for family in IPFamily.allCases {
                    let actual = try Self.render(caseDirectory: dir, family: family, layout: layout)
                    let file = "expected-\(family.flagName).txt"
                    if update {
                        let target = goldenInSource.appendingPathComponent(set).appendingPathComponent(name)
                        try actual.write(to: target.appendingPathComponent(file), atomically: true, encoding: .utf8)
                        continue
                    }
                    guard files.contains(file) else { continue }
                    let expected = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
                    if actual != expected {
                        XCTFail("golden case \(set)/\(name) (\(family.rawValue)) differs")
                        assertSameLines(actual, expected)
                    }
                }
            }
        }
    }
}
