import Foundation
import KubeModel
import Ruleset

/// The backend of `--dry-run`, and the daemon tests' kernel: it applies rulesets to an in-memory copy of the
/// tables kept as the rule lines the real renderer prints (`TextRenderer`), with the same ownership rules as the
/// kernel backends (declared chains replaced only when they differ, stale service chains and listed chains
/// deleted, kube-natd's jumps kept once at the top of their base chain, ensured rules added only when absent,
/// foreign chains and rules untouched). Because its state is the renderer's own output, it cannot drift from
/// what `--dry-run` prints, and tests can change it behind the daemon's back (`edit`) as another tool would.
///
/// Each apply's report carries the `iptables-restore --noflush` text that takes an empty namespace to the
/// applied state (`report.text`) when `rendersText` is set. Thread-safe, so a test may edit the tables while a
/// daemon applies to them, as another tool would.
public final class TextBackend: KernelBackend, @unchecked Sendable {
    /// One table: chains in creation order, each with its rule lines (the text after `-A CHAIN `).
    public struct TableState: Equatable, Sendable {
        public var order: [String] = []
        public var rules: [String: [String]] = [:]
        public init() {}

        public func has(_ chain: String) -> Bool { self.rules[chain] != nil }

        public mutating func create(_ chain: String) {
            guard self.rules[chain] == nil else { return }
            self.order.append(chain)
            self.rules[chain] = []
        }

        public mutating func delete(_ chain: String) {
            self.rules[chain] = nil
            self.order.removeAll { $0 == chain }
        }
    }

    private let lock = NSLock()
    private var state: [IPFamily: [Table: TableState]] = [:]
    private var changes = 0
    public let rendersText: Bool

    /// The tables as they are now.
    public var tables: [IPFamily: [Table: TableState]] { self.lock.withLock { self.state } }
    /// How many applies changed something (a test's view of "commits").
    public var commits: Int { self.lock.withLock { self.changes } }

    public init(rendersText: Bool = false) { self.rendersText = rendersText }

    public var name: String { "text" }

    /// Changes the in-memory tables as another tool would (tests: flush a chain, delete one, add a rule).
    public func edit(_ family: IPFamily, _ table: Table, _ body: (inout TableState) -> Void) {
        self.lock.withLock {
            var t = self.state[family]?[table] ?? Self.fresh()
            body(&t)
            self.state[family, default: [:]][table] = t
        }
    }

    static func fresh() -> TableState {
        var t = TableState()
        for base in ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"] { t.create(base) }  // as iptables lists them
        return t
    }

    static func line(_ rule: Rule) -> String { String(TextRenderer.line(chain: "X", rule: rule).dropFirst(5)) }

    public func apply(_ rulesets: [Ruleset]) throws -> ApplyReport {
        var report = ApplyReport()
        self.lock.withLock {
            var changed = false
            for ruleset in rulesets {
                for table in ruleset.tables {
                    var t = self.state[ruleset.family]?[table.table] ?? Self.fresh()
                    let r = Self.apply(table, family: ruleset.family, to: &t)
                    changed = changed || r.committed
                    report.tables.append(r)
                    self.state[ruleset.family, default: [:]][table.table] = t
                }
            }
            if changed { self.changes += 1 }
        }
        if self.rendersText {
            for ruleset in rulesets {
                let prefix = rulesets.count > 1 ? "# \(ruleset.family.rawValue)\n" : ""
                report.text = (report.text ?? "") + prefix + TextRenderer.render(ruleset)
            }
        }
        return report
    }

    static func apply(_ want: TableRuleset, family: IPFamily, to t: inout TableState) -> ApplyReport.TableReport {
        var r = ApplyReport.TableReport(family: family, table: want.table)
        let declared = Set(want.chains.map(\.name))
        for chain in want.chains {
            let lines = chain.rules.map(line)
            if !t.has(chain.name) {
                t.create(chain.name)
                r.chainsCreated += 1
            } else if t.rules[chain.name] == lines {
                r.chainsUnchanged += 1
                continue
            } else {
                r.chainsFlushed += 1
            }
            t.rules[chain.name] = lines
            r.rulesAppended += lines.count
        }
        let stale = t.order.filter {
            !declared.contains($0) && (Ownership.isServiceChain($0) || want.deletedChains.contains($0))
        }
        // kube-natd's jumps: once each at the top of their base chain, in order; its copies elsewhere and jumps
        // into chains about to go are dropped; foreign rules keep their order below.
        var bases: [String] = []
        for j in want.baseJumps where !bases.contains(j.baseChain) { bases.append(j.baseChain) }
        for base in bases {
            let wanted = want.baseJumps.filter { $0.baseChain == base }.map { line($0.rule) }
            let current = t.rules[base] ?? []
            let isOurs = { (l: String) in wanted.contains(l) || stale.contains { l.hasSuffix(" -j \($0)") } }
            if Array(current.prefix(wanted.count)) == wanted && !current.dropFirst(wanted.count).contains(where: isOurs) {
                continue
            }
            let foreign = current.filter { !isOurs($0) }
            r.rulesDeleted += current.count - foreign.count
            r.jumpsInserted += wanted.count
            if !t.has(base) { t.create(base) }
            t.rules[base] = wanted + foreign
        }
        for name in stale {
            t.delete(name)
            r.chainsDeleted += 1
        }
        var ensuredAdded = 0
        for e in want.ensured {
            let l = line(e.rule)
            if !t.has(e.chain) { t.create(e.chain) }
            if t.rules[e.chain]!.contains(l) { continue }
            let isBase = Ownership.baseChains.contains(e.chain)
            let at = isBase ? want.baseJumps.filter { $0.baseChain == e.chain }.count : t.rules[e.chain]!.count
            t.rules[e.chain]!.insert(l, at: min(at, t.rules[e.chain]!.count))
            r.rulesAppended += 1
            ensuredAdded += 1
        }
        r.committed = r.chainsCreated + r.chainsFlushed + r.chainsDeleted + r.jumpsInserted + r.rulesDeleted
            + ensuredAdded > 0
        return r
    }

    public func readOwned(family: IPFamily) throws -> OwnedState {
        var state = OwnedState(family: family)
        let tables = self.tables
        for table in Ownership.canaryTables {
            guard let t = tables[family]?[table] else { continue }
            var chains: [String: ChainDigest] = [:]
            for name in t.order where Ownership.isReadBack(name) {
                chains[name] = ChainDigest(lines: (t.rules[name] ?? []).map { Substring($0) })
            }
            state.tables[table] = chains
        }
        return state
    }

    public func expectedOwned(_ ruleset: Ruleset) throws -> OwnedState {
        var state = OwnedState(family: ruleset.family)
        for table in ruleset.tables {
            state.tables[table.table] = Dictionary(uniqueKeysWithValues: table.chains.map {
                ($0.name, ChainDigest(lines: $0.rules.map { Substring(Self.line($0)) }))
            })
        }
        return state
    }

    public func ensureCanaries(family: IPFamily) throws {
        for table in Ownership.canaryTables { self.edit(family, table) { $0.create(Ownership.canary) } }
    }

    public func cleanup(families: [IPFamily]) throws -> ApplyReport {
        self.lock.lock()
        defer { self.lock.unlock() }
        var report = ApplyReport()
        for family in families {
            for table in Ownership.canaryTables {
                guard var t = self.state[family]?[table] else { continue }
                var r = ApplyReport.TableReport(family: family, table: table)
                let jumps = Set(ProxyModeLeftovers.cleanupJumps(table).map { Self.line($0.rule) })
                for jump in ProxyModeLeftovers.cleanupJumps(table) {
                    let before = t.rules[jump.baseChain]?.count ?? 0
                    t.rules[jump.baseChain]?.removeAll { jumps.contains($0) }
                    r.rulesDeleted += before - (t.rules[jump.baseChain]?.count ?? 0)
                }
                for name in t.order where Ownership.isServiceChain(name) || ProxyModeLeftovers.cleanupChains(table).contains(name) {
                    t.delete(name)
                    r.chainsDeleted += 1
                }
                self.state[family]![table] = t
                report.tables.append(r)
            }
        }
        return report
    }
}
