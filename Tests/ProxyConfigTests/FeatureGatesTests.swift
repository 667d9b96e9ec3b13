import XCTest

@testable import ProxyConfig

/// `--feature-gates` / `featureGates` checked against the generated table of upstream's gates, as component-base's
/// `SetFromMap` checks them at the table's Kubernetes version.
final class FeatureGatesTests: XCTestCase {
    /// Problems and warnings of `--feature-gates=<gates>`, as the operator reads them.
    private func outcome(_ gates: String) -> (problems: [String], warnings: [String]) {
        do {
            let line = try KubeProxyCommandLine.parse(["--feature-gates=\(gates)"])
            let loaded = try KubeProxyConfiguration.load(configText: nil, overrides: line.overrides)
            return ([], loaded.warnings.map(\.description))
        } catch let e as ConfigurationError {
            return (e.problems.map(\.description), [])
        } catch {
            return (["\(error)"], [])
        }
    }

    func testTableIsTheSnapshotsVersionSortedAndUnique() {
        XCTAssertEqual(FeatureGates.kubernetesVersion, "1.36")
        let names = FeatureGates.specs.map(\.name)
        XCTAssertEqual(names, names.sorted())
        XCTAssertEqual(Set(names).count, names.count)
        XCTAssertGreaterThan(names.count, 200, "kube-proxy registers every Kubernetes gate")
    }

    func testGALockedGateRefusesFalse() {
        XCTAssertEqual(
            outcome("NFTablesProxyMode=false").problems,
            [
                "--feature-gates: featureGates.NFTablesProxyMode: cannot set feature gate NFTablesProxyMode to false, feature is locked to true, got false"
            ])
        // GA and locked since 1.35.
        XCTAssertEqual(
            outcome("PreferSameTrafficDistribution=false").problems,
            [
                "--feature-gates: featureGates.PreferSameTrafficDistribution: cannot set feature gate PreferSameTrafficDistribution to false, feature is locked to true, got false"
            ])
    }

    func testGAGateSetToItsLockIsAcceptedWithUpstreamsWarning() {
        let r = outcome("PreferSameTrafficDistribution=true")
        XCTAssertEqual(r.problems, [])
        XCTAssertEqual(
            r.warnings,
            ["Setting GA feature gate PreferSameTrafficDistribution=true. It will be removed in a future release."])
    }

    func testSpecIsTheNewestNotAfterTheTablesVersion() {
        // VolumeAttributesClass: GA in 1.34, locked only from 1.36 on.
        XCTAssertEqual(
            outcome("VolumeAttributesClass=false").problems,
            [
                "--feature-gates: featureGates.VolumeAttributesClass: cannot set feature gate VolumeAttributesClass to false, feature is locked to true, got false"
            ])
        // WatchList: beta, off in 1.33, back on in 1.34.
        let watchList = FeatureGates.byName["WatchList"]
        XCTAssertEqual(watchList?.defaultValue, true)
        XCTAssertEqual(watchList?.stage, .beta)
        // DisableNodeKubeProxyVersion: alpha 1.29, deprecated off 1.31, deprecated on 1.33.
        XCTAssertEqual(FeatureGates.byName["DisableNodeKubeProxyVersion"]?.defaultValue, true)
        XCTAssertEqual(FeatureGates.byName["DisableNodeKubeProxyVersion"]?.stage, .deprecated)
    }

    func testBetaGateAcceptsBothValuesQuietly() {
        XCTAssertEqual(FeatureGates.byName["ContextualLogging"]?.stage, .beta)
        for value in ["true", "false"] {
            let r = outcome("ContextualLogging=\(value)")
            XCTAssertEqual(r.problems, [], value)
            XCTAssertEqual(r.warnings, [], value)
        }
    }

    func testGateLockedToFalseRefusesTrue() {
        XCTAssertEqual(
            outcome("WatchFromStorageWithoutResourceVersion=true").problems,
            [
                "--feature-gates: featureGates.WatchFromStorageWithoutResourceVersion: cannot set feature gate WatchFromStorageWithoutResourceVersion to true, feature is locked to false, got true"
            ])
        let r = outcome("AllowOverwriteTerminationGracePeriodSeconds=false")
        XCTAssertEqual(r.problems, [])
        XCTAssertEqual(
            r.warnings,
            [
                "Setting deprecated feature gate AllowOverwriteTerminationGracePeriodSeconds=false. It will be removed in a future release."
            ])
    }

    func testDeprecatedGateIsAcceptedWithUpstreamsWarning() {
        let r = outcome("KMSv1=true")
        XCTAssertEqual(r.problems, [])
        XCTAssertEqual(r.warnings, ["Setting deprecated feature gate KMSv1=true. It will be removed in a future release."])
    }

    func testGatesRemovedUpstreamAreRefused() {
        XCTAssertEqual(
            outcome("IPv6DualStack=true").problems,
            ["--feature-gates: featureGates.IPv6DualStack: unrecognized feature gate, got \"IPv6DualStack\""])
        // Removed after its GA: in the old hand-made list, gone from upstream's specs.
        XCTAssertEqual(
            outcome("KubeProxyDrainingTerminatingNodes=true").problems,
            [
                "--feature-gates: featureGates.KubeProxyDrainingTerminatingNodes: unrecognized feature gate, got \"KubeProxyDrainingTerminatingNodes\""
            ])
    }

    func testGatesNewInRecentVersionsAreAccepted() {
        // NativeHistograms: alpha in 1.36 (component-base metrics); GangScheduling: alpha in 1.35.
        for gate in ["NativeHistograms", "GangScheduling"] {
            XCTAssertEqual(FeatureGates.byName[gate]?.stage, .alpha, gate)
            XCTAssertEqual(outcome("\(gate)=true").problems, [], gate)
        }
    }

    func testPseudoGatesAreAccepted() {
        let r = outcome("AllAlpha=true,AllBeta=false")
        XCTAssertEqual(r.problems, [])
        XCTAssertEqual(r.warnings, [])
    }

    func testEveryProblemIsListed() {
        XCTAssertEqual(
            outcome("Bogus=true,NFTablesProxyMode=false,ContextualLogging=true").problems,
            [
                "--feature-gates: featureGates.Bogus: unrecognized feature gate, got \"Bogus\"",
                "--feature-gates: featureGates.NFTablesProxyMode: cannot set feature gate NFTablesProxyMode to false, feature is locked to true, got false",
            ])
    }

    func testConfigFileGatesWarnToo() throws {
        let loaded = try KubeProxyConfiguration.parse(Fixtures.minimal("featureGates: {KMSv1: false}"))
        XCTAssertEqual(
            loaded.warnings.map(\.description),
            ["Setting deprecated feature gate KMSv1=false. It will be removed in a future release."])
    }

    func testUsageListsAlphaAndBetaGatesAsKubeProxyDoes() {
        let lines = FeatureGates.usage.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains("AllAlpha=true|false (ALPHA - default=false)"))
        XCTAssertTrue(lines.contains("AllBeta=true|false (BETA - default=false)"))
        XCTAssertTrue(lines.contains("ContextualLogging=true|false (BETA - default=true)"))
        XCTAssertTrue(lines.contains("NativeHistograms=true|false (ALPHA - default=false)"))
        XCTAssertFalse(lines.contains { $0.hasPrefix("NFTablesProxyMode=") }, "GA gates are not listed")
        XCTAssertFalse(lines.contains { $0.hasPrefix("KMSv1=") }, "deprecated gates are not listed")
    }
}
