import CNetfilter
import Foundation
import KubeModel

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
        /// When set, the legacy side's size instead of counting `legacySave`'s rule lines: entries beyond empty
        /// tables from IPT_SO_GET_INFO (a rule counts one, a user chain two). `detect` uses it only when the nft
        /// side holds no rules, where "more legacy rules" just means "any".
        public var legacyEntries: Int?
        public init(
            legacyMangle: String = "", nftMangle: String = "", legacySave: String = "", nftSave: String = "",
            version: String = "", legacyEntries: Int? = nil
        ) {
            self.legacyMangle = legacyMangle
            self.nftMangle = nftMangle
            self.legacySave = legacySave
            self.nftSave = nftSave
            self.version = version
            self.legacyEntries = legacyEntries
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
        let nft = ruleLines(e.nftSave)
        // With nft empty, the legacy entry count stands in for the legacy save (detect() does not run it then).
        if nft == 0, let entries = e.legacyEntries {
            if entries > 0 {
                return Decision(
                    mode: .legacy, reason: "legacy tables hold \(entries) entries (rules or chains), nft holds no rules",
                    fromExistingRules: true)
            }
        }
        let legacy = nft == 0 && e.legacyEntries != nil ? 0 : ruleLines(e.legacySave)
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

    /// Collects the evidence and decides. The nft side is two `*-nft-save` runs (their mangle sections carry
    /// kubelet's chains); the legacy side is read without tools: the mangle chain names through libiptc and the
    /// tables' entry counts from IPT_SO_GET_INFO. Only when nft holds rules too are the legacy tables saved in full,
    /// to compare rule counts as the wrapper does (full saves of a large table are slow; Benchmarks/README.md).
    public static func detect() -> Decision {
        func out(_ argv: [String]) -> String {
            guard let o = try? Command.run(argv), o.status == 0 else { return "" }
            return o.stdout
        }
        let nftSave = out(["timeout", "5", "iptables-nft-save"]) + out(["timeout", "5", "ip6tables-nft-save"])
        let version = out(["iptables", "--version"])
        var e = Evidence(
            legacyMangle: legacyMangleChains(), nftMangle: mangleSection(nftSave), nftSave: nftSave, version: version)
        if kubeletChains(e.nftMangle) == 0, kubeletChains(e.legacyMangle) == 0 {
            if ruleLines(nftSave) > 0 {
                e.legacySave = out(["iptables-legacy-save"]) + out(["ip6tables-legacy-save"])
            } else {
                e.legacyEntries = legacyEntries()
            }
        }
        return decide(e)
    }

    /// The `*mangle` sections of a save's output.
    static func mangleSection(_ save: String) -> String {
        var inMangle = false
        var out: [Substring] = []
        for line in save.split(separator: "\n") {
            if line.hasPrefix("*") { inMangle = line == "*mangle" }
            if inMangle { out.append(line) }
        }
        return out.joined(separator: "\n")
    }

    /// Tables the kernel lists for a family; reading any other would instantiate it, leaving a trace.
    static func listedTables(_ family: IPFamily) -> [Substring] {
        let path = family == .ipv4 ? "/proc/net/ip_tables_names" : "/proc/net/ip6_tables_names"
        return ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n")
    }

    /// `:NAME` lines for the chains of each listed legacy mangle table (the save format `kubeletChains` reads).
    static func legacyMangleChains() -> String {
        var lines: [String] = []
        for family in [IPFamily.ipv4, .ipv6] where listedTables(family).contains("mangle") {
            for c in (try? TableReader.chains(family: family, table: .mangle)) ?? [] { lines.append(":\(c.name) - [0:0]") }
        }
        return lines.joined(separator: "\n")
    }

    /// Entries beyond empty, over every listed legacy table of both families.
    static func legacyEntries() -> Int {
        var total = 0
        for family in [IPFamily.ipv4, .ipv6] {
            for table in listedTables(family) {
                var info = knat_table_info()
                var result = knat_result()
                if knat_table_info_read(family == .ipv4 ? 4 : 6, String(table), &info, &result) == 0 {
                    total += Int(info.extra_entries)
                }
            }
        }
        return total
    }
}
