import CNftables
import Foundation
import KubeModel
import Logging
import Ruleset

#if canImport(Glibc)
    import Glibc
#endif

/// What kube-proxy's other modes leave in the kernel, and how kube-natd removes it, as upstream's
/// `platformCleanup` does (cmd/kube-proxy/app/server_linux.go): on every start the iptables mode deletes the
/// nftables mode's tables; `--cleanup` also removes the IPVS mode's chains, virtual servers, ipsets and dummy
/// device (pkg/proxy/ipvs/cleanup.go). Names are upstream's, listed once here.
public enum ProxyModeLeftovers {
    /// The nftables mode's table, one per family (`kubeProxyTable`, pkg/proxy/nftables). Only this exact name in
    /// the `ip` and `ip6` families goes; `inet` tables and tables with similar names stay.
    public static let nftablesTable = "kube-proxy"

    /// The IPVS mode's dummy device, where it binds Service addresses (`defaultDummyDevice`).
    public static let ipvsDevice = "kube-ipvs0"

    /// The IPVS mode's chains (`iptablesCleanupChains`). Those the iptables mode shares (KUBE-SERVICES,
    /// KUBE-POSTROUTING, KUBE-MARK-MASQ, KUBE-FORWARD, KUBE-PROXY-FIREWALL) are kube-natd's own already.
    public static let ipvsChains: [Table: [String]] = [
        .nat: ["KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER", "KUBE-MARK-MASQ"],
        .filter: [
            "KUBE-FORWARD", "KUBE-NODE-PORT", "KUBE-PROXY-FIREWALL", "KUBE-SOURCE-RANGES-FIREWALL",
            "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER",
        ],
    ]

    /// The IPVS mode's base-chain jumps (`iptablesJumpChain`): a comment and the jump, no conntrack match, prepended.
    public static func ipvsJumps(_ table: Table) -> [BaseChainJump] {
        func jump(_ base: String, _ to: String, _ comment: String) -> BaseChainJump {
            BaseChainJump(baseChain: base, rule: Rule([.comment(comment)], .jump(to)))
        }
        switch table {
        case .nat:
            return [
                jump("OUTPUT", "KUBE-SERVICES", "kubernetes service portals"),
                jump("PREROUTING", "KUBE-SERVICES", "kubernetes service portals"),
                jump("POSTROUTING", "KUBE-POSTROUTING", "kubernetes postrouting rules"),
            ]
        case .filter:
            return [
                jump("FORWARD", "KUBE-FORWARD", "kubernetes forwarding rules"),
                jump("INPUT", "KUBE-NODE-PORT", "kubernetes health check rules"),
                jump("INPUT", "KUBE-PROXY-FIREWALL", "kube-proxy firewall rules"),
                jump("FORWARD", "KUBE-PROXY-FIREWALL", "kube-proxy firewall rules"),
                jump("INPUT", "KUBE-IPVS-FILTER", "kubernetes ipvs access filter"),
                jump("OUTPUT", "KUBE-IPVS-OUT-FILTER", "kubernetes ipvs access filter"),
            ]
        case .mangle:
            return []
        }
    }

    /// The IPVS mode's ipsets (`ipsetInfo`), IPv4 names. Its IPv6 instance names each `KUBE-6-...` (`NewIPSet`).
    public static let ipvsSetsIPv4 = [
        "KUBE-LOOP-BACK", "KUBE-CLUSTER-IP", "KUBE-EXTERNAL-IP", "KUBE-EXTERNAL-IP-LOCAL", "KUBE-LOAD-BALANCER",
        "KUBE-LOAD-BALANCER-FW", "KUBE-LOAD-BALANCER-LOCAL", "KUBE-LOAD-BALANCER-SOURCE-IP",
        "KUBE-LOAD-BALANCER-SOURCE-CIDR", "KUBE-NODE-PORT-TCP", "KUBE-NODE-PORT-LOCAL-TCP", "KUBE-NODE-PORT-UDP",
        "KUBE-NODE-PORT-LOCAL-UDP", "KUBE-NODE-PORT-SCTP-HASH", "KUBE-NODE-PORT-LOCAL-SCTP-HASH",
        "KUBE-HEALTH-CHECK-NODE-PORT", "KUBE-IPVS-IPS",
    ]

    /// Every ipset name `--cleanup` destroys: the IPv4 names and their IPv6 forms. Upstream's cleanup passes only
    /// the IPv4 names, which leaves a dual-stack node's `KUBE-6-*` sets behind; kube-natd removes both.
    public static var ipvsSets: [String] {
        ipvsSetsIPv4 + ipvsSetsIPv4.map { name in
            // kube-proxy replaces the first "KUBE-" and cuts the name to ipset's 31 characters.
            String(("KUBE-6-" + name.dropFirst("KUBE-".count)).prefix(31))
        }
    }

    /// Chains `--cleanup` deletes from a table, every backend alike: kube-natd's own and the IPVS mode's.
    public static func cleanupChains(_ table: Table) -> [String] {
        let own = Ownership.cleanupChains(table)
        return own + (ipvsChains[table] ?? []).filter { !own.contains($0) }
    }

    /// Base-chain jumps `--cleanup` deletes from a table (each exact rule, wherever it is): the iptables mode's
    /// and the IPVS mode's.
    public static func cleanupJumps(_ table: Table) -> [BaseChainJump] {
        let own = Ownership.upstreamJumps(table)
        return own + ipvsJumps(table).filter { !own.contains($0) }
    }
}

/// One thing a leftovers pass did, for the operator: one line each.
public struct LeftoverEvent: Equatable, Sendable, CustomStringConvertible {
    public enum Outcome: Equatable, Sendable {
        case removed
        /// Not looked at, and why (the kernel or the host lacks what it would need).
        case skipped(String)
        /// Found and not removed, and why.
        case failed(String)
    }
    /// What: "nftables table ip kube-proxy", "ipset KUBE-CLUSTER-IP", "IPVS virtual server TCP 10.96.0.1:443".
    public var what: String
    public var outcome: Outcome

    public init(_ what: String, _ outcome: Outcome) {
        self.what = what
        self.outcome = outcome
    }

    public var description: String {
        switch self.outcome {
        case .removed: "removed \(self.what)"
        case .skipped(let why): "skipped \(self.what): \(why)"
        case .failed(let why): "could not remove \(self.what): \(why)"
        }
    }
}

/// A tool's exit status and output (127: not installed, as `env` reports it).
public struct ToolOutput: Equatable, Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public init(status: Int32, stdout: String = "", stderr: String = "") {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// What deleting one nf_tables table found.
public enum NftablesTableRemoval: Equatable, Sendable {
    case removed, absent
    /// This kernel has no nf_tables, so no such table.
    case unsupported(String)
}

/// The host operations a leftovers pass needs, behind one small protocol: the real one reaches the kernel (netlink
/// for nf_tables, /proc, `ipvsadm`, `ipset`, `ip`), tests put a fake in its place for what their kernel lacks.
public protocol LeftoverHost {
    /// Deletes an nf_tables table (`ip` or `ip6` family) with everything in it.
    func deleteNftablesTable(family: IPFamily, name: String) throws -> NftablesTableRemoval
    /// The kernel's IPVS table (`/proc/net/ip_vs`), nil when the kernel has no IPVS.
    func ipvsTable() -> String?
    /// Whether this network namespace has a link of this name.
    func linkExists(_ name: String) -> Bool
    /// Runs a tool found on PATH.
    func run(_ argv: [String]) throws -> ToolOutput
    /// The user chains of one x_tables table as a world holds it: `legacy` (x_tables, read only where the kernel
    /// lists the table, since opening one creates it) or `nft` (iptables-nft's table in nf_tables). Empty when
    /// the table is not there or cannot be read.
    func userChains(_ world: HostMode, family: IPFamily, table: Table) -> [String]
}

/// The real host: nf_tables through the libnftnl shim (no `nft` binary needed), the rest as upstream's
/// libraries see it, through the tools every IPVS node has.
public struct SystemLeftoverHost: LeftoverHost {
    public init() {}

    public func deleteNftablesTable(family: IPFamily, name: String) throws -> NftablesTableRemoval {
        var result = knft_result()
        guard let context = knft_open(&result) else {
            // No nfnetlink at all: no nf_tables, so nothing of the nftables mode.
            if [EPROTONOSUPPORT, EAFNOSUPPORT].contains(result.error) {
                return .unsupported(knftString(result.message))
            }
            throw NftablesError(result)
        }
        defer { knft_close(context) }
        var deleted: Int32 = 0
        let rc = knft_delete_table(context, family.cValue, name, 5, &deleted, &result)
        if rc == EOPNOTSUPP || rc == EPROTONOSUPPORT { return .unsupported(knftString(result.message)) }
        guard rc == 0 else { throw NftablesError(result) }
        return deleted != 0 ? .removed : .absent
    }

    public func ipvsTable() -> String? {
        try? String(contentsOfFile: "/proc/net/ip_vs", encoding: .utf8)
    }

    public func linkExists(_ name: String) -> Bool { if_nametoindex(name) != 0 }

    public func run(_ argv: [String]) throws -> ToolOutput {
        let o = try Command.run(argv)
        return ToolOutput(status: o.status, stdout: o.stdout, stderr: o.stderr)
    }

    public func userChains(_ world: HostMode, family: IPFamily, table: Table) -> [String] {
        switch world {
        case .legacy:
            guard HostModeDetector.listedTables(family).contains(Substring(table.rawValue)) else { return [] }
            let chains = (try? TableReader.chains(family: family, table: table)) ?? []
            return chains.map(\.name).filter { !Ownership.baseChains.contains($0) }
        case .nft:
            var result = knft_result()
            guard let context = knft_open(&result) else { return [] }
            defer { knft_close(context) }
            var out: UnsafeMutablePointer<CChar>?
            let n = knft_dump_table(context, family.cValue, table.rawValue, &out, &result)
            defer { free(out) }
            guard n >= 0, let out else { return [] }
            // "chain<TAB>user" introduces a user chain; "chain<TAB>base ..." a base chain; rules have three fields.
            return String(cString: out).split(separator: "\n").compactMap { line in
                let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
                return fields.count == 2 && fields[1] == "user" ? String(fields[0]) : nil
            }
        }
    }
}

/// Removes other proxy modes' leftovers through a `LeftoverHost`, each step as upstream orders it.
public struct LeftoverCleaner {
    public var host: LeftoverHost

    public init(host: LeftoverHost = SystemLeftoverHost()) {
        self.host = host
    }

    /// The nftables mode's `table ip kube-proxy` and `table ip6 kube-proxy`, and nothing else. What kube-proxy's
    /// iptables mode does on every start; a kernel without nf_tables has none (one `skipped` event says so).
    public func removeNftablesMode() -> [LeftoverEvent] {
        var events: [LeftoverEvent] = []
        for family in [IPFamily.ipv4, .ipv6] {
            let what = "nftables table \(family == .ipv4 ? "ip" : "ip6") \(ProxyModeLeftovers.nftablesTable)"
            do {
                switch try self.host.deleteNftablesTable(family: family, name: ProxyModeLeftovers.nftablesTable) {
                case .removed: events.append(LeftoverEvent(what, .removed))
                case .absent: break
                case .unsupported(let why):
                    return [LeftoverEvent("nftables tables", .skipped("the kernel has no nf_tables (\(why))"))]
                }
            } catch {
                events.append(LeftoverEvent(what, .failed("\(error)")))
            }
        }
        return events
    }

    /// The IPVS mode's virtual servers and its dummy device: the first steps of upstream's IPVS cleanup, before
    /// its chains (which `KernelBackend.cleanup` removes) and its ipsets (`removeIPVSSets`, after the chains: a
    /// set a rule still uses cannot be destroyed).
    public func removeIPVSServersAndDevice() -> [LeftoverEvent] {
        self.removeVirtualServers() + self.removeDevice()
    }

    /// Upstream flushes the whole IPVS table (`ipvs.Flush()`), as `ipvsadm --clear` does: on a node that ran
    /// kube-proxy's IPVS mode, every virtual server is one it made.
    func removeVirtualServers() -> [LeftoverEvent] {
        guard let table = self.host.ipvsTable() else {
            return [LeftoverEvent("IPVS virtual servers", .skipped("the kernel has no IPVS (/proc/net/ip_vs absent)"))]
        }
        let servers = Self.virtualServers(table)
        if servers.isEmpty { return [] }
        let output: ToolOutput
        do { output = try self.host.run(["ipvsadm", "--clear"]) } catch {
            return servers.map { LeftoverEvent("IPVS virtual server \($0)", .failed("\(error)")) }
        }
        let why: String
        switch output.status {
        case 0: return servers.map { LeftoverEvent("IPVS virtual server \($0)", .removed) }
        case 127: why = "ipvsadm is not installed"
        default: why = "ipvsadm --clear: \(Self.firstLine(output.stderr, or: "exit \(output.status)"))"
        }
        return servers.map { LeftoverEvent("IPVS virtual server \($0)", .failed(why)) }
    }

    /// As upstream's `DeleteDummyDevice`: only a dummy link of that name goes; another kind of link is reported.
    func removeDevice() -> [LeftoverEvent] {
        let name = ProxyModeLeftovers.ipvsDevice
        guard self.host.linkExists(name) else { return [] }
        let what = "device \(name)"
        do {
            let show = try self.host.run(["ip", "-j", "-details", "link", "show", "dev", name])
            guard show.status == 0 else {
                return [LeftoverEvent(what, .failed(show.status == 127 ? "ip (iproute2) is not installed" : "ip link show: \(Self.firstLine(show.stderr, or: "exit \(show.status)"))"))]
            }
            let kind = Self.linkKind(show.stdout)
            guard kind == "dummy" else {
                return [LeftoverEvent(what, .failed("a \(kind ?? "plain") link, not the dummy device kube-proxy's IPVS mode creates: left as it is"))]
            }
            let delete = try self.host.run(["ip", "link", "delete", "dev", name])
            guard delete.status == 0 else {
                return [LeftoverEvent(what, .failed("ip link delete: \(Self.firstLine(delete.stderr, or: "exit \(delete.status)"))"))]
            }
            return [LeftoverEvent(what, .removed)]
        } catch {
            return [LeftoverEvent(what, .failed("\(error)"))]
        }
    }

    /// The IPVS mode's ipsets (IPv4 and IPv6 names) that exist; other sets stay. Like upstream, nothing when
    /// the ipset tool does not answer (no tool, or no ip_set in the kernel).
    public func removeIPVSSets() -> [LeftoverEvent] {
        let list: ToolOutput
        do { list = try self.host.run(["ipset", "list", "-n"]) } catch {
            return [LeftoverEvent("ipsets", .skipped("\(error)"))]
        }
        switch list.status {
        case 0: break
        case 127: return [LeftoverEvent("ipsets", .skipped("the ipset tool is not installed"))]
        default:
            return [LeftoverEvent("ipsets", .skipped("ipset list: \(Self.firstLine(list.stderr, or: "exit \(list.status)")) (no ip_set in the kernel?)"))]
        }
        let present = Set(list.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        var events: [LeftoverEvent] = []
        for name in ProxyModeLeftovers.ipvsSets where present.contains(name) {
            do {
                let out = try self.host.run(["ipset", "destroy", name])
                events.append(LeftoverEvent("ipset \(name)", out.status == 0 ? .removed : .failed("ipset destroy: \(Self.firstLine(out.stderr, or: "exit \(out.status)"))")))
            } catch {
                events.append(LeftoverEvent("ipset \(name)", .failed("\(error)")))
            }
        }
        return events
    }

    // MARK: - Reading what the tools print

    /// The virtual servers of `/proc/net/ip_vs` ("TCP 10.96.0.1:443", "FWM 7"); real-server lines ("  -> ...")
    /// and the headers are not virtual servers.
    static func virtualServers(_ table: String) -> [String] {
        table.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, ["TCP", "UDP", "SCTP", "FWM"].contains(fields[0]) else { return nil }
            return "\(fields[0]) \(Self.address(String(fields[1]), mark: fields[0] == "FWM"))"
        }
    }

    /// `0A600001:01BB` → `10.96.0.1:443`; `[fd00::1]:01BB` → `[fd00::1]:443`; a firewall mark in hex → decimal.
    static func address(_ hex: String, mark: Bool) -> String {
        if mark { return UInt32(hex, radix: 16).map(String.init) ?? hex }
        guard let colon = hex.lastIndex(of: ":"), let port = UInt16(hex[hex.index(after: colon)...], radix: 16) else {
            return hex
        }
        let host = hex[..<colon]
        if host.hasPrefix("[") { return "\(host):\(port)" }
        guard host.count == 8, let v = UInt32(host, radix: 16) else { return hex }
        return "\(v >> 24).\((v >> 16) & 0xFF).\((v >> 8) & 0xFF).\(v & 0xFF):\(port)"
    }

    /// `linkinfo.info_kind` of `ip -j -details link show`'s one link; nil for a link without a kind (a physical
    /// device, loopback).
    static func linkKind(_ json: String) -> String? {
        guard let data = json.data(using: .utf8),
            let links = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]],
            let info = links.first?["linkinfo"] as? [String: Any]
        else { return nil }
        return info["info_kind"] as? String
    }

    static func firstLine(_ text: String, or fallback: String) -> String {
        let line = text.split(separator: "\n").first.map(String.init) ?? ""
        return line.isEmpty ? fallback : line
    }
}

/// `--cleanup`: everything kube-proxy's three modes and kube-natd leave, in upstream's order (IPVS virtual servers
/// and device, then the iptables and IPVS chains through every backend, then the IPVS ipsets, which rules no
/// longer use by then, then the nftables tables). One line per thing removed or not, and a summary.
public enum EveryModeCleanup {
    public struct Outcome {
        /// One line each, for the operator (without a program prefix).
        public var lines: [String] = []
        public var events: [LeftoverEvent] = []
        /// Chains and base-chain jumps the backends removed.
        public var chains = 0
        public var jumps = 0
        public var failed = false

        /// "cleanup done: 12 chains and jumps, 1 nftables table, ... removed; 2 skipped, 0 not removed".
        public var summary: String {
            func count(_ prefix: String) -> Int {
                self.events.filter { $0.outcome == .removed && $0.what.hasPrefix(prefix) }.count
            }
            let skipped = self.events.filter { if case .skipped = $0.outcome { true } else { false } }.count
            let notRemoved = self.events.filter { if case .failed = $0.outcome { true } else { false } }.count
            return "cleanup \(self.failed ? "incomplete" : "done") (IPv4 and IPv6): \(self.chains) iptables chains, \(self.jumps) jumps, "
                + "\(count("nftables table")) nftables tables, \(count("IPVS virtual server")) IPVS virtual servers, "
                + "\(count("ipset")) ipsets, \(count("device")) devices removed; \(skipped) parts skipped, "
                + "\(notRemoved) not removed"
        }

        mutating func add(_ events: [LeftoverEvent]) {
            for e in events {
                self.events.append(e)
                self.lines.append(e.description)
                if case .failed = e.outcome { self.failed = true }
            }
        }
    }

    public static func run(backends: [KernelBackend], families: [IPFamily], cleaner: LeftoverCleaner) -> Outcome {
        var outcome = Outcome()
        outcome.add(cleaner.removeIPVSServersAndDevice())
        // The chains each world holds before and after, so that each removed chain gets its own line (the
        // backends' reports count, they do not name).
        let before = Self.kubeChains(cleaner.host, families: families)
        for backend in backends {
            do {
                let report = try backend.cleanup(families: families)
                let chains = report.tables.reduce(0) { $0 + $1.chainsDeleted }
                let jumps = report.tables.reduce(0) { $0 + $1.rulesDeleted }
                outcome.chains += chains
                outcome.jumps += jumps
                outcome.lines.append("cleanup through \(backend.name): \(chains) chains and \(jumps) jumps removed")
            } catch {
                outcome.lines.append("cleanup through \(backend.name) failed: \(error)")
                outcome.failed = true
            }
        }
        let after = Self.kubeChains(cleaner.host, families: families)
        for chain in before where !after.contains(chain) { outcome.lines.append("removed chain \(chain)") }
        outcome.add(cleaner.removeIPVSSets())
        outcome.add(cleaner.removeNftablesMode())
        outcome.lines.append(outcome.summary)
        return outcome
    }

    /// "nat KUBE-NODE-PORT (IPv4, legacy x_tables)" for each KUBE-* chain of either world, in a stable order.
    static func kubeChains(_ host: LeftoverHost, families: [IPFamily]) -> [String] {
        var out: [String] = []
        for world in [HostMode.legacy, .nft] {
            for family in families {
                for table in [Table.nat, .filter, .mangle] {
                    for name in host.userChains(world, family: family, table: table).sorted() where name.hasPrefix("KUBE-") {
                        let w = world == .legacy ? "legacy x_tables" : "nf_tables"
                        out.append("\(table.rawValue) \(name) (\(family == .ipv4 ? "IPv4" : "IPv6"), \(w))")
                    }
                }
            }
        }
        return out
    }
}
