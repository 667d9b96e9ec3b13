import CRuleProgram
import KubeModel
import Ruleset

#if canImport(Glibc)
    import Glibc
#endif

/// Pure conversions from IR values to the numbers iptables itself stores in the kernel.
public enum RuleEncoding {
    /// `xt_statistic_info.u.random.probability` for upstream's `%0.10f` text: `lround(2^31 * p)`,
    /// as `libxt_statistic` computes it. Returns nil for text that is not a number in [0, 1].
    public static func probability(_ text: String) -> UInt32? {
        guard let p = Double(text), p >= 0, p <= 1 else { return nil }
        return UInt32(clamping: lround(2_147_483_648.0 * p))
    }

    /// `-i NAME` as `xtables_parse_interface` stores it: the name, NUL-padded to IFNAMSIZ bytes, and a mask of
    /// 0xFF over the compared bytes: the name plus its NUL, or only the part before a trailing `+`.
    public static func interface(_ name: String) -> (name: [UInt8], mask: [UInt8])? {
        let size = Int(KNAT_IFNAMSIZ)
        let bytes = Array(name.utf8)
        guard bytes.count < size else { return nil }
        var padded = bytes + [UInt8](repeating: 0, count: size - bytes.count)
        var mask = [UInt8](repeating: 0, count: size)
        if bytes.isEmpty { return (padded, mask) }
        let compared = bytes.last == UInt8(ascii: "+") ? bytes.count - 1 : bytes.count + 1
        for i in 0..<min(compared, size) { mask[i] = 0xFF }
        padded[size - 1] = 0
        return (padded, mask)
    }

    /// Network-order netmask bytes for a prefix length.
    public static func prefixMask(_ prefix: Int, byteCount: Int) -> [UInt8] {
        (0..<byteCount).map { i in
            let bits = max(0, min(8, prefix - i * 8))
            return bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
        }
    }

    /// `xt_conntrack_mtinfo3.state_mask` for a `--ctstate` list (the kernel's bits, from knat_xtinfo.h).
    public static func conntrackMask(_ states: [ConntrackState]) -> UInt16 {
        states.reduce(0) { mask, s in
            switch s {
            case .invalid: mask | UInt16(KNAT_CT_STATE_INVALID)
            case .established: mask | UInt16(KNAT_CT_STATE_ESTABLISHED)
            case .related: mask | UInt16(KNAT_CT_STATE_RELATED)
            case .new: mask | UInt16(KNAT_CT_STATE_NEW)
            case .dnat: mask | UInt16(KNAT_CT_STATE_DNAT)
            }
        }
    }

    /// `xt_recent` check_set flags: `--rcheck --reap` and `--set`.
    public static let recentCheckAndReap = UInt8(KNAT_RECENT_CHECK_AND_REAP)
    public static let recentSet = UInt8(KNAT_RECENT_SET)

    static func protocolNumber(_ p: TransportProtocol) -> UInt8 {
        switch p {
        case .tcp: UInt8(KNAT_PROTO_TCP)
        case .udp: UInt8(KNAT_PROTO_UDP)
        case .sctp: UInt8(KNAT_PROTO_SCTP)
        }
    }
}

/// Why a rule could not be encoded; names the table, chain and 1-based rule index.
public struct EncodingError: Error, CustomStringConvertible, Sendable {
    public var table: Table
    public var chain: String
    public var ruleIndex: Int
    public var reason: String
    public var description: String { "\(table.rawValue): chain \(chain) rule \(ruleIndex): \(reason)" }
}

/// Builds the flat program `knat_apply_table` replays (records of kind, length, payload; see knat_program.h).
///
/// One growing byte buffer per table, reused across syncs by the backend: no per-rule allocation.
struct TableProgram {
    var bytes: [UInt8] = []
    let family: IPFamily
    /// When not nil, every rule written is appended here too, in program order: index = the planner's rule id
    /// (`knat_plan_rule.id`). The text and restore backends compare and write rules as text.
    var recorded: [Rule]?

    init(family: IPFamily, capacity: Int = 1 << 16) {
        self.family = family
        self.bytes.reserveCapacity(capacity)
    }

    mutating func reset() {
        self.bytes.removeAll(keepingCapacity: true)
        if self.recorded != nil { self.recorded = [] }
    }

    mutating func record(_ kind: Int32, _ payload: (inout [UInt8]) -> Void) {
        let start = self.bytes.count
        self.bytes.append(0)
        self.bytes.append(0)
        self.bytes.append(0)
        self.bytes.append(0)
        payload(&self.bytes)
        let length = self.bytes.count - start - 4
        precondition(length <= 0xFFFF, "record too long")
        self.bytes[start] = UInt8(truncatingIfNeeded: kind)
        self.bytes[start + 1] = UInt8(truncatingIfNeeded: kind >> 8)
        self.bytes[start + 2] = UInt8(truncatingIfNeeded: length)
        self.bytes[start + 3] = UInt8(truncatingIfNeeded: length >> 8)
    }

    mutating func string(_ kind: Int32, _ s: String) {
        self.record(kind) { b in
            var s = s
            s.withUTF8 { b.append(contentsOf: $0) }
        }
    }

    mutating func chain(_ name: String) { self.string(Int32(KNAT_OP_CHAIN), name) }
    mutating func ensureChain(_ name: String) { self.string(Int32(KNAT_OP_ENSURE_CHAIN), name) }
    mutating func deleteChain(_ name: String) { self.string(Int32(KNAT_OP_DELETE_CHAIN), name) }
    mutating func stalePrefix(_ p: String) { self.string(Int32(KNAT_OP_STALE_PREFIX), p) }

    mutating func jump(_ j: BaseChainJump, table: Table, index: Int) throws(EncodingError) {
        self.string(Int32(KNAT_OP_JUMP), j.baseChain)
        try self.rule(j.rule, table: table, chain: j.baseChain, index: index)
    }

    mutating func deleteRule(in base: String, _ rule: Rule, table: Table) throws(EncodingError) {
        self.string(Int32(KNAT_OP_DELETE_RULE), base)
        try self.rule(rule, table: table, chain: base, index: 0)
    }

    /// A declared table, as every backend's plan reads it (`knat_plan.h`): stale service prefixes, declared chains
    /// and rules, deleted chains and kube-proxy's own jumps into them (as DELETE_RULE records: the planner deletes
    /// only rules it can tell are kube-natd's, so a deleted chain's upstream jumps are named), kube-natd's jumps,
    /// ensured rules.
    mutating func encode(_ table: TableRuleset) throws(EncodingError) {
        self.encodeHead()
        for chain in table.chains { try self.encodeChain(chain, table: table.table) }
        try self.encodeTail(table)
    }

    /// The part of `encode` before the chains: the stale service prefixes.
    mutating func encodeHead() {
        for prefix in Ownership.servicePrefixes { self.stalePrefix(prefix) }
    }

    /// One declared chain and its rules, as `encode` writes it (records that depend on nothing else: a backend
    /// may keep them and reuse them while the chain is unchanged).
    mutating func encodeChain(_ chain: Chain, table: Table) throws(EncodingError) {
        guard chain.name.utf8.count <= KNAT_CHAIN_NAME_MAX else {
            throw EncodingError(table: table, chain: chain.name, ruleIndex: 0,
                                reason: "chain name longer than \(KNAT_CHAIN_NAME_MAX) bytes")
        }
        self.chain(chain.name)
        for (i, rule) in chain.rules.enumerated() {
            try self.rule(rule, table: table, chain: chain.name, index: i + 1)
        }
    }

    /// The part of `encode` after the chains: deleted chains, kube-proxy's jumps into them, kube-natd's jumps,
    /// ensured rules.
    mutating func encodeTail(_ table: TableRuleset) throws(EncodingError) {
        for name in table.deletedChains { self.deleteChain(name) }
        let deleted = Set(table.deletedChains)
        for jump in Ownership.upstreamJumps(table.table) where !table.baseJumps.contains(jump) {
            if case .jump(let to) = jump.rule.target, deleted.contains(to) {
                try self.deleteRule(in: jump.baseChain, jump.rule, table: table.table)
            }
        }
        for (i, jump) in table.baseJumps.enumerated() { try self.jump(jump, table: table.table, index: i + 1) }
        for (i, e) in table.ensured.enumerated() { try self.ensureRule(e, table: table.table, index: i + 1) }
    }

    /// `--cleanup` of one table, the same program for every backend: kube-proxy's (and its IPVS mode's) jumps
    /// wherever they are, the jumps the backend knows kube-natd wrote (`KNAT_OP_DELETE_OWN_JUMPS`), every service
    /// chain, the fixed chains and the canary (`ProxyModeLeftovers`). kubelet's KUBE-FIREWALL and KUBE-MARK-DROP
    /// and ensured rules stay.
    mutating func encodeCleanup(_ table: Table, extraJumps: [BaseChainJump] = []) throws(EncodingError) {
        for jump in ProxyModeLeftovers.cleanupJumps(table) + extraJumps {
            try self.deleteRule(in: jump.baseChain, jump.rule, table: table)
        }
        self.record(Int32(KNAT_OP_DELETE_OWN_JUMPS)) { _ in }
        for prefix in Ownership.servicePrefixes { self.stalePrefix(prefix) }
        for name in ProxyModeLeftovers.cleanupChains(table) { self.deleteChain(name) }
    }

    mutating func ensureRule(_ e: EnsuredRule, table: Table, index: Int) throws(EncodingError) {
        self.string(Int32(KNAT_OP_ENSURE_RULE), e.chain)
        try self.rule(e.rule, table: table, chain: e.chain, index: index)
    }

    mutating func rule(_ rule: Rule, table: Table, chain: String, index: Int) throws(EncodingError) {
        func fail(_ reason: String) -> EncodingError {
            EncodingError(table: table, chain: chain, ruleIndex: index, reason: reason)
        }
        let width = self.family == .ipv4 ? 4 : 16
        self.recorded?.append(rule)
        for m in rule.matches {
            switch m {
            case .comment(let c): self.string(Int32(KNAT_E_COMMENT), c)
            case .proto(let p):
                self.record(Int32(KNAT_E_PROTO)) { $0.append(RuleEncoding.protocolNumber(p)) }
            case .source(let a, let negated), .destination(let a, let negated):
                let block = a.block
                guard block.address.isIPv6 == (width == 16) else {
                    throw fail("address \(a) is not \(self.family.rawValue)")
                }
                let kind = if case .source = m { KNAT_E_SRC } else { KNAT_E_DST }
                self.record(Int32(kind)) { b in
                    b.append(negated ? 1 : 0)
                    Self.appendAddress(&b, block.address)
                    Self.appendMask(&b, block.prefixLength, width: width)
                }
            case .inInterface(let name, let negated):
                guard let i = RuleEncoding.interface(name) else {
                    throw fail("interface name \(name) longer than \(KNAT_IFNAMSIZ - 1) bytes")
                }
                self.record(Int32(KNAT_E_IN_IFACE)) { b in
                    b.append(negated ? 1 : 0)
                    b.append(contentsOf: i.name)
                    b.append(contentsOf: i.mask)
                }
            case .destinationPort(let port):
                guard (0...65535).contains(port) else { throw fail("port \(port) out of range") }
                self.record(Int32(KNAT_E_DPORT)) { Self.append16(&$0, UInt16(port)) }
            case .addrTypeLocal(let dir):
                self.record(Int32(KNAT_E_ADDRTYPE)) { $0.append(dir == .source ? 0 : 1) }
            case .conntrackState(let states, let negated):
                self.record(Int32(KNAT_E_CTSTATE)) { b in
                    b.append(negated ? 1 : 0)
                    Self.append16(&b, RuleEncoding.conntrackMask(states))
                }
            case .mark(let value, let mask, let negated):
                self.record(Int32(KNAT_E_MARK)) { b in
                    Self.append32(&b, value)
                    Self.append32(&b, mask)
                    b.append(negated ? 1 : 0)
                }
            case .statisticRandom(let text):
                guard let p = RuleEncoding.probability(text) else { throw fail("bad probability \(text)") }
                self.record(Int32(KNAT_E_STATISTIC)) { Self.append32(&$0, p) }
            case .recentCheck(let name, let seconds):
                guard name.utf8.count <= KNAT_RECENT_NAME_MAX else { throw fail("recent name too long") }
                self.record(Int32(KNAT_E_RECENT)) { b in
                    Self.append32(&b, UInt32(clamping: seconds))
                    b.append(RuleEncoding.recentCheckAndReap)
                    b.append(contentsOf: name.utf8)
                }
            case .recentSet(let name):
                guard name.utf8.count <= KNAT_RECENT_NAME_MAX else { throw fail("recent name too long") }
                self.record(Int32(KNAT_E_RECENT)) { b in
                    Self.append32(&b, 0)
                    b.append(RuleEncoding.recentSet)
                    b.append(contentsOf: name.utf8)
                }
            case .nfacct(let name):
                guard name.utf8.count <= KNAT_NFACCT_NAME_MAX else { throw fail("nfacct name too long") }
                self.string(Int32(KNAT_E_NFACCT), name)
            }
        }
        switch rule.target {
        case .none: self.string(Int32(KNAT_T_STANDARD), "")
        case .jump(let c):
            guard c.utf8.count <= KNAT_CHAIN_NAME_MAX else {
                throw fail("chain name \(c) longer than \(KNAT_CHAIN_NAME_MAX) characters")
            }
            self.string(Int32(KNAT_T_STANDARD), c)
        case .accept: self.string(Int32(KNAT_T_STANDARD), "ACCEPT")
        case .drop: self.string(Int32(KNAT_T_STANDARD), "DROP")
        case .return: self.string(Int32(KNAT_T_STANDARD), "RETURN")
        case .reject: self.record(Int32(KNAT_T_REJECT)) { _ in }
        case .dnat(let ip, let port):
            guard ip.isIPv6 == (width == 16) else { throw fail("DNAT address \(ip) is not \(self.family.rawValue)") }
            guard (0...65535).contains(port) else { throw fail("DNAT port \(port) out of range") }
            self.record(Int32(KNAT_T_DNAT)) { b in
                Self.appendAddress(&b, ip)
                Self.append16(&b, UInt16(port))
            }
        case .masquerade(let randomFully):
            self.record(Int32(KNAT_T_MASQUERADE)) { $0.append(randomFully ? 1 : 0) }
        case .markOr(let v):
            // --or-mark V is --set-xmark V/V in MARK revision 2.
            self.record(Int32(KNAT_T_MARK)) { b in
                Self.append32(&b, v)
                Self.append32(&b, v)
            }
        case .markXor(let v):
            // --xor-mark V is --set-xmark V/0.
            self.record(Int32(KNAT_T_MARK)) { b in
                Self.append32(&b, v)
                Self.append32(&b, 0)
            }
        }
    }

    /// Network-order address bytes (4 or 16), without the intermediate array `IPAddress.bytes` builds: this runs
    /// for most rules of every table on every sync.
    static func appendAddress(_ b: inout [UInt8], _ a: IPAddress) {
        if a.isIPv6 {
            withUnsafeBytes(of: a.high.bigEndian) { b.append(contentsOf: $0) }
            withUnsafeBytes(of: a.low.bigEndian) { b.append(contentsOf: $0) }
        } else {
            withUnsafeBytes(of: UInt32(truncatingIfNeeded: a.low).bigEndian) { b.append(contentsOf: $0) }
        }
    }

    /// The netmask bytes `RuleEncoding.prefixMask` gives, written in place.
    static func appendMask(_ b: inout [UInt8], _ prefix: Int, width: Int) {
        for i in 0..<width {
            let bits = max(0, min(8, prefix - i * 8))
            b.append(bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bits)))
        }
    }

    static func append16(_ b: inout [UInt8], _ v: UInt16) {
        withUnsafeBytes(of: v) { b.append(contentsOf: $0) }
    }

    static func append32(_ b: inout [UInt8], _ v: UInt32) {
        withUnsafeBytes(of: v) { b.append(contentsOf: $0) }
    }
}
