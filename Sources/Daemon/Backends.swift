import Logging
import Netfilter

/// `--backend`.
public enum BackendChoice: String, CaseIterable, Sendable {
    case auto, libiptc, restore
}

/// A backend that cannot be used on this host, and why.
public struct BackendError: Error, CustomStringConvertible {
    public var description: String
}

/// Picks the backend as kube-proxy's wrapper scripts pick the iptables mode.
public enum BackendFactory {
    /// `auto`: libiptc on legacy hosts, `iptables-nft-restore` on nft hosts. An explicit `libiptc` is refused
    /// where rules already live in nf_tables: libiptc only speaks legacy x_tables, and rules split between
    /// the two would be silently bypassed.
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
        case .auto:
            let d = decide()
            if d.mode == .legacy { return (LibiptcBackend(logger: logger), "libiptc backend: \(d.reason)") }
            return (RestoreBackend(mode: .nft), "restore backend (iptables-nft-restore): \(d.reason)")
        }
    }

    /// `--cleanup` reaches both worlds, as kube-proxy's does: rules may be left in either by an earlier proxy.
    public static func cleanupBackends(logger: Logger) -> [KernelBackend] {
        [LibiptcBackend(logger: logger), RestoreBackend(mode: .nft)]
    }
}
