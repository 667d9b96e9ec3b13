import CNetfilter
import CNftables
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
        /// When set, the nft side's rule count (counted by the nf_tables shim, up to what the decision needs)
        /// instead of counting `nftSave`'s rule lines.
        public var nftRules: Int?
        public init(
            legacyMangle: String = "", nftMangle: String = "", legacySave: String = "", nftSave: String = "",
            version: String = "", legacyEntries: Int? = nil, nftRules: Int? = nil
        ) {
            self.legacyMangle = legacyMangle
            self.nftMangle = nftMangle
            self.legacySave = legacySave
            self.nftSave = nftSave
            self.version = version
            self.legacyEntries = legacyEntries
            self.nftRules = nftRules
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
        let nft = e.nftRules ?? ruleLines(e.nftSave)
        // With nft empty, the legacy entry count stands in for the legacy save (detect() does not run it then).
        if nft == 0, let entries = e.legacyEntries {
            if entries > 0 {
                return Decision(
                    mode: .legacy, reason: "legacy tables hold \(entries) entries (rules or chains), nft holds no rules",
                    fromExistingRules: true)
            }
        }
        if nft > 0, e.legacyEntries == 0 {
            return Decision(mode: .nft, reason: "nf_tables holds rules, the legacy tables hold none", fromExistingRules: true)
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

    /// Collects the evidence and decides, reading no more than the decision needs: kubelet's chains from the
    /// mangle tables only (`*-nft-save -t mangle`; libiptc's chain names for legacy), the legacy tables' entry
    /// counts from IPT_SO_GET_INFO, and the nft side's rule count from the nf_tables shim, stopping at the first
    /// rule unless legacy holds rules too. Only then are the legacy tables saved in full and the nft rules counted
    /// up to that number, to compare as the wrapper does. (Full saves of large rulesets take seconds, and one cut
    /// short by a time limit would have decided wrongly.)
    public static func detect() -> Decision {
        func out(_ argv: [String]) -> String {
            guard let o = try? Command.run(argv), o.status == 0 else { return "" }
            return o.stdout
        }
        let nftMangle = out(["iptables-nft-save", "-t", "mangle"]) + out(["ip6tables-nft-save", "-t", "mangle"])
        let version = out(["iptables", "--version"])
        var e = Evidence(legacyMangle: legacyMangleChains(), nftMangle: nftMangle, version: version)
        if kubeletChains(e.nftMangle) == 0, kubeletChains(e.legacyMangle) == 0 {
            let nftAny = nftRuleCount(limit: 1)
            if nftAny == 0 {
                e.nftRules = 0
                e.legacyEntries = legacyEntries()
            } else if legacyEntries() == 0 {
                e.nftRules = nftAny
                e.legacyEntries = 0
            } else {
                e.legacySave = out(["iptables-legacy-save"]) + out(["ip6tables-legacy-save"])
                e.nftRules = nftRuleCount(limit: ruleLines(e.legacySave) + 1)
            }
        }
        return decide(e)
    }

    /// Rules in the nf_tables tables of both families, counted up to `limit` (0 when nf_tables cannot be read).
    static func nftRuleCount(limit: Int) -> Int {
        var result = knft_result()
        guard let ctx = knft_open(&result) else { return 0 }
        defer { knft_close(ctx) }
        var total = 0
        for family: Int32 in [4, 6] where total < limit {
            var n: UInt32 = 0
            if knft_count_rules(ctx, family, UInt32(limit - total), &n, &result) == 0 { total += Int(n) }
        }
        return total
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
