import KubeModel

/// Renders a Ruleset as `iptables-restore --noflush` input, in upstream kube-proxy's argument spelling.
///
/// The same text is what `--dry-run` prints and what the restore backend feeds to `iptables-restore`.
public enum TextRenderer {
    /// The whole payload: `*filter ... COMMIT` then `*nat ... COMMIT` (tables in the ruleset's order).
    public static func render(_ ruleset: Ruleset) -> String {
        var out = TextBuffer(capacity: 1 << 16)
        for table in ruleset.tables { write(table, family: ruleset.family, into: &out) }
        return out.string
    }

    /// Renders into raw bytes (no String round trip); used on the hot path.
    public static func renderBytes(_ ruleset: Ruleset) -> [UInt8] {
        var out = TextBuffer(capacity: estimateSize(ruleset))
        for table in ruleset.tables { write(table, family: ruleset.family, into: &out) }
        return out.bytes
    }

    static func estimateSize(_ ruleset: Ruleset) -> Int {
        ruleset.tables.reduce(4096) { $0 + $1.chains.reduce(0) { $0 + 48 + $1.rules.count * 150 } }
    }

    /// One rule as `-A CHAIN ...` (no newline).
    public static func line(chain: String, rule: Rule) -> String {
        var out = TextBuffer(capacity: 256)
        write(chain: chain, rule: rule, into: &out)
        return out.string
    }

    /// One table as the text that takes an empty namespace to the synced state: owned chains declared and
    /// filled, base jumps appended, then the ensured rules where a backend puts them (`EnsuredRule`): in a base
    /// chain right after the jumps, elsewhere in their chain, which is declared unless the table owns it.
    static func write(_ table: TableRuleset, family: IPFamily, into out: inout TextBuffer) {
        out.append("*")
        out.append(table.table.rawValue)
        out.newline()
        for chain in table.chains { declare(chain.name, into: &out) }
        for name in table.deletedChains { declare(name, into: &out) }
        let ensured = table.ensured.isEmpty ? [] : ensuredToAdd(table)
        var ensuredChains: [String] = []
        for e in ensured where !Ownership.baseChains.contains(e.chain) && !ensuredChains.contains(e.chain) {
            ensuredChains.append(e.chain)
            if table.chain(named: e.chain) == nil { declare(e.chain, into: &out) }
        }
        for jump in table.baseJumps {
            write(chain: jump.baseChain, rule: jump.rule, into: &out)
            out.newline()
        }
        for e in ensured where Ownership.baseChains.contains(e.chain) {
            write(chain: e.chain, rule: e.rule, into: &out)
            out.newline()
        }
        for chain in table.chains {
            for rule in chain.rules {
                write(chain: chain.name, rule: rule, into: &out)
                out.newline()
            }
        }
        for e in ensured where !Ownership.baseChains.contains(e.chain) {
            write(chain: e.chain, rule: e.rule, into: &out)
            out.newline()
        }
        for name in table.deletedChains {
            out.append("-X ")
            out.append(name)
            out.newline()
        }
        out.append("COMMIT\n")
    }

    static func declare(_ chain: String, into out: inout TextBuffer) {
        out.append(":")
        out.append(chain)
        out.append(" - [0:0]\n")
    }

    /// The ensured rules a backend adds to a table that holds only this ruleset: each once, and none that is
    /// already one of the table's owned rules or jumps in the same chain ("no identical rule exists").
    static func ensuredToAdd(_ table: TableRuleset) -> [EnsuredRule] {
        var out: [EnsuredRule] = []
        for e in table.ensured where !out.contains(e) {
            if table.chain(named: e.chain)?.rules.contains(e.rule) == true { continue }
            if table.baseJumps.contains(where: { $0.baseChain == e.chain && $0.rule == e.rule }) { continue }
            out.append(e)
        }
        return out
    }

    static func write(chain: String, rule: Rule, into out: inout TextBuffer) {
        out.append("-A ")
        out.append(chain)
        for m in rule.matches { write(m, into: &out) }
        switch rule.target {
        case .none: break
        case .jump(let c):
            out.append(" -j ")
            out.append(c)
        case .accept: out.append(" -j ACCEPT")
        case .drop: out.append(" -j DROP")
        case .reject: out.append(" -j REJECT")
        case .return: out.append(" -j RETURN")
        case .dnat(let ip, let port):
            out.append(" -j DNAT --to-destination ")
            out.append(ip.joined(port: port))
        case .masquerade(let randomFully):
            out.append(randomFully ? " -j MASQUERADE --random-fully" : " -j MASQUERADE")
        case .markOr(let v):
            out.append(" -j MARK --or-mark ")
            out.append(hex(v))
        case .markXor(let v):
            out.append(" -j MARK --xor-mark ")
            out.append(hex(v))
        }
    }

    static func write(_ m: Match, into out: inout TextBuffer) {
        switch m {
        case .comment(let c):
            out.append(" -m comment --comment ")
            out.appendQuotedIfNeeded(c)
        case .proto(let p):
            out.append(" -m ")
            out.append(p.lowercased)
            out.append(" -p ")
            out.append(p.lowercased)
        case .source(let a, let negated):
            out.append(negated ? " ! -s " : " -s ")
            out.append(a.description)
        case .destination(let a, let negated):
            out.append(negated ? " ! -d " : " -d ")
            out.append(a.description)
        case .inInterface(let name, let negated):
            out.append(negated ? " ! -i " : " -i ")
            out.append(name)
        case .destinationPort(let p):
            out.append(" --dport ")
            out.append(String(p))
        case .addrTypeLocal(let dir):
            out.append(dir == .source ? " -m addrtype --src-type LOCAL" : " -m addrtype --dst-type LOCAL")
        case .conntrackState(let states, let negated):
            out.append(negated ? " -m conntrack ! --ctstate " : " -m conntrack --ctstate ")
            out.append(states.map(\.rawValue).joined(separator: ","))
        case .mark(let value, let mask, let negated):
            out.append(negated ? " -m mark ! --mark " : " -m mark --mark ")
            out.append(hex(value))
            out.append("/")
            out.append(hex(mask))
        case .statisticRandom(let p):
            out.append(" -m statistic --mode random --probability ")
            out.append(p)
        case .recentCheck(let name, let seconds):
            out.append(" -m recent --name ")
            out.append(name)
            out.append(" --rcheck --seconds ")
            out.append(String(seconds))
            out.append(" --reap")
        case .recentSet(let name):
            out.append(" -m recent --name ")
            out.append(name)
            out.append(" --set")
        case .nfacct(let name):
            out.append(" -m nfacct --nfacct-name ")
            out.append(name)
        }
    }

    /// `0x4000` style, as kube-proxy's tests and iptables-save print marks.
    public static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
}

/// A growable byte buffer for rendering megabytes of rule text without per-line Strings.
struct TextBuffer {
    var bytes: [UInt8]
    init(capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }
    mutating func append(_ s: String) {
        var s = s
        s.withUTF8 { bytes.append(contentsOf: $0) }
    }
    mutating func newline() { bytes.append(0x0A) }
    mutating func appendQuotedIfNeeded(_ s: String) {
        var needs = false
        for b in s.utf8 where b == 0x20 || b == 0x22 || b == 0x09 || b == 0x27 {
            needs = true
            break
        }
        if !needs {
            append(s)
            return
        }
        bytes.append(0x22)
        for b in s.utf8 {
            if b == 0x22 || b == 0x5C { bytes.append(0x5C) }
            bytes.append(b)
        }
        bytes.append(0x22)
    }
    var string: String { String(decoding: bytes, as: UTF8.self) }
}
