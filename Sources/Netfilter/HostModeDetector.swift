import Foundation

/// Which x_tables front end the host's other agents (kubelet, CNI) use.
public enum HostMode: String, Sendable {
    case legacy
    case nft
}

/// Decides legacy vs nft as kube-proxy's `iptables-wrapper` script does.
///
/// Order, as in kubernetes-sigs/iptables-wrappers: kubelet's `KUBE-IPTABLES-HINT` / `KUBE-KUBELET-CANARY`
/// chain in mangle (nft checked first), then whichever save has more rules (`^-` lines; ties go to nft
/// only when both are empty... see `decide`), then the `iptables --version` suffix.
public enum HostModeDetector {
    /// The decision and the evidence for it.
    public struct Decision: Sendable, Equatable {
        public var mode: HostMode
        public var reason: String
        /// True when rules or kubelet's chains were seen (not just the `iptables --version` fallback):
        /// then the other backend must not be used, or kube-natd's rules would live beside the host's.
        public var fromExistingRules: Bool = false
    }

    /// What the save tools printed; empty strings for tools that are missing or failed.
    public struct Evidence: Sendable {
        public var legacyMangle: String
        public var nftMangle: String
        public var legacySave: String
        public var nftSave: String
        public var version: String
        public init(
            legacyMangle: String = "", nftMangle: String = "", legacySave: String = "", nftSave: String = "",
            version: String = ""
        ) {
            self.legacyMangle = legacyMangle
            self.nftMangle = nftMangle
            self.legacySave = legacySave
            self.nftSave = nftSave
            self.version = version
        }
    }

    static func kubeletChains(_ save: String) -> Int {
        save.split(separator: "\n").filter {
            $0.hasPrefix(":KUBE-IPTABLES-HINT") || $0.hasPrefix(":KUBE-KUBELET-CANARY")
        }
        .count
    }

    static func ruleLines(_ save: String) -> Int { save.split(separator: "\n").filter { $0.hasPrefix("-") }.count }

    /// The pure decision from collected tool output.
    public static func decide(_ e: Evidence) -> Decision {
        if kubeletChains(e.nftMangle) > 0 {
            return Decision(mode: .nft, reason: "kubelet's hint/canary chain exists in the nft mangle table", fromExistingRules: true)
        }
        if kubeletChains(e.legacyMangle) > 0 {
            return Decision(mode: .legacy, reason: "kubelet's hint/canary chain exists in the legacy mangle table", fromExistingRules: true)
        }
        let legacy = ruleLines(e.legacySave)
        let nft = ruleLines(e.nftSave)
        if legacy > 0 || nft > 0 {
            // The wrapper script picks legacy only with strictly more legacy rules.
            return legacy > nft
                ? Decision(mode: .legacy, reason: "\(legacy) legacy rules vs \(nft) nft rules", fromExistingRules: true)
                : Decision(mode: .nft, reason: "\(nft) nft rules vs \(legacy) legacy rules", fromExistingRules: true)
        }
        if e.version.contains("(nf_tables)") {
            return Decision(mode: .nft, reason: "no rules anywhere; `iptables --version` says nf_tables")
        }
        if e.version.contains("(legacy)") {
            return Decision(mode: .legacy, reason: "no rules anywhere; `iptables --version` says legacy")
        }
        return Decision(mode: .legacy, reason: "no rules anywhere and no iptables version; libiptc speaks legacy")
    }

    /// Runs the save tools (IPv4 and IPv6) and decides.
    public static func detect() -> Decision {
        func out(_ argv: [String]) -> String {
            guard let o = try? Command.run(argv), o.status == 0 else { return "" }
            return o.stdout
        }
        // `iptables-legacy-save -t mangle` would instantiate an empty mangle table where none exists: only read
        // legacy tables the kernel already lists, so detection leaves no trace.
        func legacyMangle(_ tool: String, _ names: String) -> String {
            let existing = (try? String(contentsOfFile: names, encoding: .utf8)) ?? ""
            return existing.split(separator: "\n").contains("mangle") ? out([tool, "-t", "mangle"]) : ""
        }
        let e = Evidence(
            legacyMangle: legacyMangle("iptables-legacy-save", "/proc/net/ip_tables_names")
                + legacyMangle("ip6tables-legacy-save", "/proc/net/ip6_tables_names"),
            nftMangle: out(["timeout", "5", "iptables-nft-save", "-t", "mangle"])
                + out(["timeout", "5", "ip6tables-nft-save", "-t", "mangle"]),
            legacySave: out(["iptables-legacy-save"]) + out(["ip6tables-legacy-save"]),
            nftSave: out(["timeout", "5", "iptables-nft-save"]) + out(["timeout", "5", "ip6tables-nft-save"]),
            version: out(["iptables", "--version"]))
        return decide(e)
    }
}
