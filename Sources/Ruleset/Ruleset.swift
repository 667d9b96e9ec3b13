import KubeModel

/// An iptables table kube-natd writes to.
public enum Table: String, Sendable, Hashable, CaseIterable {
    case filter
    case nat
    case mangle
}

/// `-s`/`-d` operand: a bare address (written without a prefix, as upstream does) or a CIDR.
public enum AddressMatch: Hashable, Sendable, CustomStringConvertible {
    case ip(IPAddress)
    case cidr(CIDR)

    public var description: String {
        switch self {
        case .ip(let ip): ip.description
        case .cidr(let c): c.description
        }
    }

    /// The block this operand covers (an IP is a host route).
    public var block: CIDR {
        switch self {
        case .ip(let ip): CIDR(host: ip)
        case .cidr(let c): c
        }
    }
}

/// `--src-type` or `--dst-type` of the addrtype match; kube-proxy only ever tests `LOCAL`.
public enum AddressTypeDirection: Hashable, Sendable {
    case source
    case destination
}

/// A conntrack state for `-m conntrack --ctstate`.
public enum ConntrackState: String, Hashable, Sendable {
    case invalid = "INVALID"
    case new = "NEW"
    case established = "ESTABLISHED"
    case related = "RELATED"
    case dnat = "DNAT"
}

/// One element of a rule, in the order it is written. Header fields (`-p`, `-s`, `-d`, `-i`) and match
/// extensions share one list so that text and kernel encoding read the same sequence.
public enum Match: Hashable, Sendable {
    /// `-m comment --comment TEXT`
    case comment(String)
    /// `-m P -p P`: loads the protocol match and sets the header protocol.
    case proto(TransportProtocol)
    /// `[!] -s ADDR`
    case source(AddressMatch, negated: Bool)
    /// `[!] -d ADDR`
    case destination(AddressMatch, negated: Bool)
    /// `[!] -i NAME` (a trailing `+` is a prefix match)
    case inInterface(String, negated: Bool)
    /// `--dport N`: an option of the preceding `.proto` match.
    case destinationPort(Int)
    /// `-m addrtype --src-type LOCAL` / `--dst-type LOCAL`
    case addrTypeLocal(AddressTypeDirection)
    /// `-m conntrack [!] --ctstate A,B`
    case conntrackState([ConntrackState], negated: Bool)
    /// `-m mark [!] --mark V/M`
    case mark(value: UInt32, mask: UInt32, negated: Bool)
    /// `-m statistic --mode random --probability P`, with upstream's 10-decimal text.
    case statisticRandom(probability: String)
    /// `-m recent --name N --rcheck --seconds S --reap`
    case recentCheck(name: String, seconds: Int)
    /// `-m recent --name N --set`
    case recentSet(name: String)
    /// `-m nfacct --nfacct-name N`
    case nfacct(name: String)
}

/// What a rule does when it matches.
public enum Target: Hashable, Sendable {
    /// No `-j`: the rule only counts (upstream's last KUBE-FW rule).
    case none
    case jump(String)
    case accept
    case drop
    case reject
    case `return`
    /// `-j DNAT --to-destination ip:port`
    case dnat(IPAddress, port: Int)
    /// `-j MASQUERADE [--random-fully]`
    case masquerade(randomFully: Bool)
    /// `-j MARK --or-mark V`
    case markOr(UInt32)
    /// `-j MARK --xor-mark V`
    case markXor(UInt32)
}

/// One rule: matches in written order, then a target.
public struct Rule: Hashable, Sendable {
    public var matches: [Match]
    public var target: Target
    public init(_ matches: [Match], _ target: Target) {
        self.matches = matches
        self.target = target
    }

    /// The `-m comment` text, if any.
    public var comment: String? {
        for m in matches { if case .comment(let c) = m { return c } }
        return nil
    }
}

/// A user chain and its rules.
public struct Chain: Hashable, Sendable {
    public var name: String
    public var rules: [Rule]
    public init(_ name: String, _ rules: [Rule] = []) {
        self.name = name
        self.rules = rules
    }
}

/// A rule that kube-natd places in a base chain (PREROUTING, INPUT, ...) to jump into its own chains.
public struct BaseChainJump: Hashable, Sendable {
    public var baseChain: String
    public var rule: Rule
    public init(baseChain: String, rule: Rule) {
        self.baseChain = baseChain
        self.rule = rule
    }
}

/// A rule kube-natd makes sure exists without owning it: kubelet's `KUBE-MARK-DROP` and `KUBE-FIREWALL` rules,
/// which the v1.23 layout relies on. The chain is created when missing and the rule added when no identical rule
/// is anywhere in it; neither is ever flushed, replaced or deleted, not even by `--cleanup` (kubelet may own them).
/// Where it is added: in a base chain right after kube-natd's own jumps (where kubelet's `EnsureRule(Prepend)`
/// ends up once kube-proxy has prepended its jumps), in any other chain at the end.
public struct EnsuredRule: Hashable, Sendable {
    public var chain: String
    public var rule: Rule
    public init(chain: String, rule: Rule) {
        self.chain = chain
        self.rule = rule
    }
}

/// The wanted contents of one table: the chains kube-natd owns there, in declaration order,
/// the jumps from base chains (in the final order they must have, first to last), stale chains to delete, and
/// rules it only ensures (see `EnsuredRule`).
public struct TableRuleset: Hashable, Sendable {
    public var table: Table
    public var chains: [Chain]
    public var baseJumps: [BaseChainJump]
    public var deletedChains: [String]
    /// Ensured rules, in the order they are ensured.
    public var ensured: [EnsuredRule]

    public init(table: Table, chains: [Chain] = [], baseJumps: [BaseChainJump] = [], deletedChains: [String] = [],
                ensured: [EnsuredRule] = []) {
        self.table = table
        self.chains = chains
        self.baseJumps = baseJumps
        self.deletedChains = deletedChains
        self.ensured = ensured
    }

    /// Number of rules in owned chains (the `iptables_total` gauge counts these).
    public var ruleCount: Int { chains.reduce(0) { $0 + $1.rules.count } }

    public func chain(named name: String) -> Chain? { chains.first { $0.name == name } }
}

/// The whole transaction for one IP family: filter then nat, as upstream writes them.
public struct Ruleset: Hashable, Sendable {
    public var family: IPFamily
    public var tables: [TableRuleset]
    public init(family: IPFamily, tables: [TableRuleset]) {
        self.family = family
        self.tables = tables
    }

    public subscript(table: Table) -> TableRuleset? { tables.first { $0.table == table } }
}
