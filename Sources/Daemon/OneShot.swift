import Foundation
import KubeModel
import KubeSource
import Logging
import Netfilter
import ProxyConfig
import RuleCompiler
import Ruleset

/// `--backend`.
public enum BackendChoice: String, CaseIterable, Sendable {
    case auto, libiptc, restore
}

/// Picks the backend as kube-proxy's wrapper scripts pick the iptables mode.
public enum BackendFactory {
    /// `auto`: libiptc on legacy hosts, `iptables-nft-restore` on nft hosts. An explicit `libiptc` is refused
    /// where rules already live in nf_tables: libiptc only speaks legacy x_tables, and rules split between
    /// the two would be silently bypassed.
    public static func make(_ choice: BackendChoice, logger: Logger,
                            decide: () -> HostModeDetector.Decision = HostModeDetector.detect) throws -> (RulesetBackend, String) {
        switch choice {
        case .restore:
            let d = decide()
            return (RestoreBackend(mode: d.mode), "restore backend (iptables-\(d.mode.rawValue)-restore): \(d.reason)")
        case .libiptc:
            let d = decide()
            if d.mode == .nft && d.fromExistingRules {
                throw OneShotError.wrongHostMode("--backend libiptc refused: this host's rules live in nf_tables (\(d.reason)); use --backend restore or auto")
            }
            return (LibiptcBackend(logger: logger), "libiptc backend (requested)")
        case .auto:
            let d = decide()
            if d.mode == .legacy { return (LibiptcBackend(logger: logger), "libiptc backend: \(d.reason)") }
            return (RestoreBackend(mode: .nft), "restore backend (iptables-nft-restore): \(d.reason)")
        }
    }
}

public enum OneShotError: Error, CustomStringConvertible {
    case wrongHostMode(String)
    case apply(IPFamily, String)

    public var description: String {
        switch self {
        case .wrongHostMode(let s): s
        case .apply(let f, let why): "\(f.rawValue): rules not written, the kernel keeps its previous rules: \(why)"
        }
    }
}

/// `--once`: compile from the source and make the kernel match, one commit per table and family.
/// The long-running daemon runs exactly this path on every sync.
public struct OneShot {
    public var setup: NodeSetup
    public var features: KernelFeatures
    public var backend: RulesetBackend
    public var logger: Logger
    /// `--conntrack-cleanup`: after a family's rules are written, delete its stale UDP conntrack entries.
    public var conntrackCleanup: Bool

    public init(setup: NodeSetup, features: KernelFeatures, backend: RulesetBackend, logger: Logger,
                conntrackCleanup: Bool = true) {
        self.setup = setup
        self.features = features
        self.backend = backend
        self.logger = logger
        self.conntrackCleanup = conntrackCleanup
    }

    @discardableResult
    public func run(state: ClusterState, families: [IPFamily]) throws -> [ApplyReport] {
        var reports: [ApplyReport] = []
        for family in families {
            let compiler = RuleCompiler(settings: setup.settings(for: family, features: features))
            let started = DispatchTime.now().uptimeNanoseconds
            let ruleset = compiler.compile(state)
            let compiled = DispatchTime.now().uptimeNanoseconds
            do {
                let report = try backend.apply(ruleset)
                let done = DispatchTime.now().uptimeNanoseconds
                logger.info("synced \(family.rawValue): \(compiler.lastStats.services) Services, \(compiler.lastStats.endpoints) endpoints, filter \(ruleset[.filter]?.ruleCount ?? 0) rules, nat \(ruleset[.nat]?.ruleCount ?? 0) rules; compile \(ms(compiled - started)) ms, commit \(ms(done - compiled)) ms")
                reports.append(report)
            } catch {
                throw OneShotError.apply(family, "\(error)")
            }
            // As upstream: only after the rules are in, so a deleted flow's next packet meets the new DNAT.
            if conntrackCleanup { reconcileConntrack(state, compiler.settings) }
        }
        return reports
    }

    /// Errors are logged, not thrown: the rules are already written, and upstream only logs them too.
    private func reconcileConntrack(_ state: ClusterState, _ settings: NodeSettings) {
        let report = UDPConntrackReconciler().reconcile(RuleCompiler.udpFrontends(state, settings: settings))
        if report.error != nil { logger.error("\(report)") } else { logger.info("\(report)") }
    }

    private func ms(_ ns: UInt64) -> String { String(format: "%.1f", Double(ns) / 1e6) }
}
