import Foundation
import KubeModel
import KubeSource
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// kube-natd's own snapshots: whole dry-run outputs, one case per feature, both families. They are change
/// detectors, not an oracle: each expectation is kube-natd's earlier output (written by UPDATE_GOLDEN=1), so they
/// catch a change of behaviour, never a mistake that was there when the snapshot was taken. Upstream's own
/// expectations live in `Golden/upstream-iptables/` (`UpstreamIptablesOracleTests`); see `Golden/README.md`.
///
/// Each case directory holds `config.yaml` (a KubeProxyConfiguration), `cluster.yaml` (manifests) and the snapshots
/// `expected-ipv4.txt` and, when the case has IPv6 objects, `expected-ipv6.txt`, and nothing else. A case without
/// IPv6 objects has no IPv6 snapshot: its IPv6 output must be the empty cluster's (the fixed chains only).
/// `Golden/cases/` is compiled in today's layout, `Golden/cases-v1.23/` in v1.23's (`--rule-layout v1.23`). The
/// kernel tests load the same cases through `kube-natd --once` and `iptables-legacy-restore`. UPDATE_GOLDEN=1
/// rewrites the snapshots and then fails, so that the diff is reviewed before it is committed.
final class GoldenTests: XCTestCase {
    /// Each set of cases and the layout it is compiled in.
    static let caseSets: [(directory: String, layout: RuleLayout)] = [("cases", .current), ("cases-v1.23", .v1_23)]
    static let caseFiles: Set<String> = ["config.yaml", "cluster.yaml", "expected-ipv4.txt", "expected-ipv6.txt"]

    /// Whether a case has anything of the IPv6 family (a Service address or an IPv6 EndpointSlice).
    static func hasIPv6Objects(_ state: ClusterState) -> Bool {
        state.services.values.contains { svc in
            (svc.clusterIPs + svc.externalIPs + svc.loadBalancerIngressIPs).contains(where: \.isIPv6)
        } || state.slices.values.contains { $0.addressType == .ipv6 }
    }

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

    func testEveryCaseMatchesItsSnapshot() throws {
        XCTAssertGreaterThanOrEqual(try Self.cases("cases").count, 20)
        XCTAssertGreaterThanOrEqual(try Self.cases("cases-v1.23").count, 15)
        let update = ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1"
        var written: [String] = []
        for (set, layout) in Self.caseSets {
            for name in try Self.cases(set) {
                let dir = Self.goldenDirectory.appendingPathComponent(set).appendingPathComponent(name)
                let files = Set(try FileManager.default.contentsOfDirectory(atPath: dir.path))
                let ipv6 = Self.hasIPv6Objects(try Self.clusterState(caseDirectory: dir))
                let wanted = ipv6 ? Self.caseFiles : Self.caseFiles.subtracting(["expected-ipv6.txt"])
                let missing = wanted.subtracting(files).filter { !(update && $0.hasPrefix("expected-")) }
                XCTAssertEqual(missing, [], "\(set)/\(name): missing files")
                XCTAssertEqual(files.subtracting(wanted), [], "\(set)/\(name): unexpected files (an IPv6 snapshot of a "
                               + "case without IPv6 objects is an empty skeleton: remove it)")
                for family in IPFamily.allCases {
                    let actual = try Self.render(caseDirectory: dir, family: family, layout: layout)
                    let file = "expected-\(family.flagName).txt"
                    guard wanted.contains(file) else {
                        // No IPv6 object: the IPv6 output is the fixed chains an empty cluster gets, nothing more.
                        let settings = try Self.settings(caseDirectory: dir, family: family, layout: layout)
                        let empty = TextRenderer.render(RuleCompiler(settings: settings).compile(ClusterState()))
                        if actual != empty {
                            XCTFail("case \(set)/\(name) has no IPv6 object but its IPv6 output is not the empty cluster's")
                            assertSameLines(actual, empty)
                        }
                        continue
                    }
                    if update {
                        let target = goldenInSource.appendingPathComponent(set).appendingPathComponent(name)
                            .appendingPathComponent(file)
                        let old = try? String(contentsOf: target, encoding: .utf8)
                        if old != actual {
                            try actual.write(to: target, atomically: true, encoding: .utf8)
                            written.append("\(set)/\(name)/\(file)")
                        }
                        continue
                    }
                    let expected = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
                    if actual != expected {
                        XCTFail("snapshot \(set)/\(name) (\(family.rawValue)) differs from kube-natd's earlier output")
                        assertSameLines(actual, expected)
                    }
                }
            }
        }
        if update {
            // A run that rewrites its own expectations must not pass: the new snapshots are only right once a
            // person has read the diff.
            XCTFail("UPDATE_GOLDEN=1 rewrote \(written.count) snapshot(s) in \(goldenInSource.path)"
                    + (written.isEmpty ? "" : ": " + written.joined(separator: ", "))
                    + ". Review `git diff` there, commit what is right, and run again without UPDATE_GOLDEN.")
        }
    }
}
