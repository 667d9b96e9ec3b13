import KubeModel

/// The longest strings the kernel and iptables take in a rule, checked once on the compiled rules, before any
/// backend runs, so that every backend meets the same limits (the libiptc and nf_tables shims used to check
/// their own: 28 bytes for a chain name in one, 255 in the other) and a violation names the Service whose rules
/// carry it instead of a table, chain and rule index.
///
/// The x_tables limits hold for nf_tables hosts too: kube-natd writes what iptables-nft would write, and
/// iptables-nft refuses longer chain names (reference nftables.md: "Names ≤ 28 chars for iptables"), keeps its
/// xt extensions' fixed-size blobs (comment, recent, nfacct) and stores `-i` in an IFNAMSIZ buffer. Lengths are
/// UTF-8 bytes, without the NUL the kernel's buffers also hold. Each number is checked against the kernel's uapi
/// headers by `_Static_assert` in CRuleProgram (`knat_xtinfo.h`), and against those constants by NetfilterTests.
public enum KernelLimits {
    /// `XT_EXTENSION_MAXNAMELEN` (29, NUL included): the name of a user chain, and of a jump's target.
    public static let chainName = 28
    /// `XT_MAX_COMMENT_LEN` (256, NUL included): `xt_comment_info.comment`. iptables 1.8.9 (legacy and nft,
    /// `-A` and `-restore` alike) silently cuts a longer `--comment` to 255 bytes, and kube-proxy does not
    /// shorten its comments either. A Service the apiserver accepts cannot reach the limit (namespace and name
    /// at most 63 bytes each, a port name 15: the longest comment upstream writes is about 200 bytes), so a
    /// longer one comes from an object the apiserver would refuse (a manifest file): kube-natd treats it as bad
    /// input, names it and leaves it out, rather than program rules whose comments no longer say whose they are.
    public static let comment = 255
    /// `XT_RECENT_NAME_LEN` (200, NUL included): `xt_recent_mtinfo_v1.name` (kube-proxy's affinity lists).
    public static let recentName = 199
    /// `NFACCT_NAME_MAX` (32, NUL included): an nfacct object's name.
    public static let nfacctName = 31
    /// `IFNAMSIZ` (16, NUL included): `-i NAME`, its trailing `+` counted, as iptables counts it.
    public static let interfaceName = 15

    /// The part of a rule or chain a limit applies to.
    public enum Field: String, Hashable, Sendable {
        case chainName = "chain name"
        case jumpTarget = "jump target"
        case comment
        case recentName = "recent name"
        case nfacctName = "nfacct name"
        case interfaceName = "interface name"

        /// The longest value the kernel takes, in bytes.
        public var limit: Int {
            switch self {
            case .chainName, .jumpTarget: KernelLimits.chainName
            case .comment: KernelLimits.comment
            case .recentName: KernelLimits.recentName
            case .nfacctName: KernelLimits.nfacctName
            case .interfaceName: KernelLimits.interfaceName
            }
        }

        /// The kernel constant behind the limit (the buffer size, NUL included).
        public var kernelConstant: String {
            switch self {
            case .chainName, .jumpTarget: "XT_EXTENSION_MAXNAMELEN"
            case .comment: "XT_MAX_COMMENT_LEN"
            case .recentName: "XT_RECENT_NAME_LEN"
            case .nfacctName: "NFACCT_NAME_MAX"
            case .interfaceName: "IFNAMSIZ"
            }
        }
    }

    /// One value over its limit, and where it is.
    public struct Violation: Hashable, Sendable, CustomStringConvertible {
        public var field: Field
        public var table: Table
        public var chain: String
        /// 1-based position of the rule in its chain; 0: the chain's own name, or a rule of a shared chain whose
        /// position is not known where it was checked (a Service's share of KUBE-SERVICES).
        public var ruleIndex: Int
        /// The value's length in bytes.
        public var length: Int

        public init(field: Field, table: Table, chain: String, ruleIndex: Int, length: Int) {
            self.field = field
            self.table = table
            self.chain = chain
            self.ruleIndex = ruleIndex
            self.length = length
        }

        public var description: String {
            let place = self.field == .chainName
                ? "\(self.table.rawValue) chain \(self.chain)"
                : "\(self.ruleIndex > 0 ? "rule \(self.ruleIndex)" : "a rule") of \(self.table.rawValue) chain \(self.chain)"
            return "\(self.field.rawValue) of \(place) is \(self.length) bytes, the kernel takes at most \(self.field.limit) (\(self.field.kernelConstant) \(self.field.limit + 1) with its NUL)"
        }
    }

    /// Whether every value of the rule is within its limit: the common path, one pass, nothing allocated.
    public static func fits(_ rule: Rule) -> Bool {
        for m in rule.matches {
            switch m {
            case .comment(let c): if c.utf8.count > comment { return false }
            case .inInterface(let name, _): if name.utf8.count > interfaceName { return false }
            case .recentCheck(let name, _), .recentSet(let name): if name.utf8.count > recentName { return false }
            case .nfacct(let name): if name.utf8.count > nfacctName { return false }
            case .proto, .source, .destination, .destinationPort, .addrTypeLocal, .conntrackState, .mark,
                 .statisticRandom:
                continue
            }
        }
        if case .jump(let to) = rule.target, to.utf8.count > chainName { return false }
        return true
    }

    /// The values of one rule over their limits.
    public static func violations(of rule: Rule, table: Table, chain: String, index: Int) -> [Violation] {
        if fits(rule) { return [] }
        var out: [Violation] = []
        func check(_ field: Field, _ value: String) {
            let n = value.utf8.count
            if n > field.limit {
                out.append(Violation(field: field, table: table, chain: chain, ruleIndex: index, length: n))
            }
        }
        for m in rule.matches {
            switch m {
            case .comment(let c): check(.comment, c)
            case .inInterface(let name, _): check(.interfaceName, name)
            case .recentCheck(let name, _), .recentSet(let name): check(.recentName, name)
            case .nfacct(let name): check(.nfacctName, name)
            case .proto, .source, .destination, .destinationPort, .addrTypeLocal, .conntrackState, .mark,
                 .statisticRandom:
                break
            }
        }
        if case .jump(let to) = rule.target { check(.jumpTarget, to) }
        return out
    }

    /// A chain's name and every rule's values.
    public static func violations(in chain: Chain, table: Table) -> [Violation] {
        var out: [Violation] = []
        let n = chain.name.utf8.count
        if n > chainName {
            out.append(Violation(field: .chainName, table: table, chain: chain.name, ruleIndex: 0, length: n))
        }
        for (i, rule) in chain.rules.enumerated() {
            out += violations(of: rule, table: table, chain: chain.name, index: i + 1)
        }
        return out
    }

    /// Everything a table's program carries: declared chains and their rules, deleted chains' names, base-chain
    /// jumps and ensured rules (each numbered by its position among the jumps or ensured rules of its chain).
    public static func violations(in table: TableRuleset) -> [Violation] {
        var out: [Violation] = []
        for chain in table.chains { out += violations(in: chain, table: table.table) }
        for name in table.deletedChains where name.utf8.count > chainName {
            out.append(Violation(field: .chainName, table: table.table, chain: name, ruleIndex: 0, length: name.utf8.count))
        }
        var position: [String: Int] = [:]
        for j in table.baseJumps {
            position[j.baseChain, default: 0] += 1
            out += violations(of: j.rule, table: table.table, chain: j.baseChain, index: position[j.baseChain]!)
        }
        for e in table.ensured {
            position[e.chain, default: 0] += 1
            if e.chain.utf8.count > chainName {
                out.append(Violation(field: .chainName, table: table.table, chain: e.chain, ruleIndex: 0, length: e.chain.utf8.count))
            }
            out += violations(of: e.rule, table: table.table, chain: e.chain, index: position[e.chain]!)
        }
        return out
    }

    /// Every table of a ruleset.
    public static func violations(in ruleset: Ruleset) -> [Violation] {
        ruleset.tables.flatMap { violations(in: $0) }
    }
}

/// A Service port whose compiled rules break a kernel limit. The compiler leaves the whole Service out (every
/// other Service is programmed) until a version of it compiles within the limits, or it is deleted.
public struct ServiceLimitViolation: Hashable, Sendable, CustomStringConvertible {
    public var family: IPFamily
    public var service: ObjectName
    /// `spec.ports[].name` ("" for an unnamed port), its number and protocol.
    public var portName: String
    public var port: Int
    public var proto: TransportProtocol
    public var violation: KernelLimits.Violation

    public init(family: IPFamily, service: ObjectName, portName: String, port: Int, proto: TransportProtocol,
                violation: KernelLimits.Violation) {
        self.family = family
        self.service = service
        self.portName = portName
        self.port = port
        self.proto = proto
        self.violation = violation
    }

    public var description: String {
        let port = self.portName.isEmpty ? "\(self.port)/\(self.proto.rawValue)" : "\(self.portName) (\(self.port)/\(self.proto.rawValue))"
        return "Service \(self.service) port \(port), \(self.family.rawValue): \(self.violation); the Service's rules are left out until it is fixed or deleted"
    }
}

/// Values over a kernel limit in rules that no Service owns (fixed chains, base-chain jumps, ensured rules: what
/// the node's configuration makes). Nothing can be left out of those, so the sync stops before any backend runs
/// and the kernel keeps its rules, as it would after a refused commit, but with the value named.
public struct KernelLimitError: Error, CustomStringConvertible, Sendable {
    public var family: IPFamily
    public var violations: [KernelLimits.Violation]

    public init(family: IPFamily, violations: [KernelLimits.Violation]) {
        self.family = family
        self.violations = violations
    }

    public var description: String {
        "\(self.family.rawValue) rules break kernel limits (not a Service's rules: check the configuration): "
            + self.violations.map(\.description).joined(separator: "; ")
    }
}

extension KernelLimits {
    /// Throws when any value of the ruleset is over its limit (see `KernelLimitError`).
    public static func check(_ ruleset: Ruleset) throws(KernelLimitError) {
        let found = violations(in: ruleset)
        if !found.isEmpty { throw KernelLimitError(family: ruleset.family, violations: found) }
    }
}
