import Logging
import Netfilter

/// `--backend`.
public enum BackendChoice: String, CaseIterable, Sendable {
    case auto, libiptc, libnftnl, restore
}

/// A backend that cannot be used on this host, and why.
public struct BackendError: Error, CustomStringConvertible {
    public var description: String
}

/// Picks the backend as kube-proxy's wrapper scripts pick the iptables mode.
public enum BackendFactory {
    /// `auto`: libiptc on legacy hosts, libnftnl on nft hosts. An explicit `libiptc` is refused where rules
    /// already live in nf_tables, and an explicit `libnftnl` where they live in legacy x_tables: rules split
    /// between the two would be silently bypassed.
    public static func make(_ choice: BackendChoice, logger: Logger,
                            decide: () -> HostModeDetector.Decision = HostModeDetector.detect) throws -> (KernelBackend, String) {
        switch choice {
        case .restore:
            let d = decide()
            return (RestoreBackend(mode: d.mode), "restore backend (iptables-\(d.mode.rawValue)-restore): \(d.reason)")
        case .libiptc:
            let d = decide()
            if d.mode == .nft && d.fromExistingRules {
                throw BackendError(description: "--backend libiptc refused: this host's rules live in nf_tables (\(d.reason)); use --backend restore or auto")
            }
            return (LibiptcBackend(logger: logger), "libiptc backend (requested)")
        case .libnftnl:
            let d = decide()
            if d.mode == .legacy && d.fromExistingRules {
                throw BackendError(description: "--backend libnftnl refused: this host's rules live in legacy x_tables (\(d.reason)); use --backend libiptc or auto")
            }
            let b = NftablesBackend(logger: logger)
            return (b, "libnftnl backend (requested; \(b.form) expressions)")
        case .auto:
            let d = decide()
            if d.mode == .legacy { return (LibiptcBackend(logger: logger), "libiptc backend: \(d.reason)") }
            let b = NftablesBackend(logger: logger)
            return (b, "libnftnl backend (\(b.form) expressions): \(d.reason)")
        }
    }

    /// `--cleanup` reaches both worlds, as kube-proxy's does: rules may be left in either by an earlier proxy.
    public static func cleanupBackends(logger: Logger) -> [KernelBackend] {
        [LibiptcBackend(logger: logger), NftablesBackend(logger: logger)]
    }
}
