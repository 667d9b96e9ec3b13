import Foundation
import KubeModel
import Ruleset

/// The backend of `--dry-run`, and the daemon tests' kernel: it applies rulesets to an in-memory copy of the
/// tables kept as the rule lines the real renderer prints (`TextRenderer`), planned by the one planner every
/// backend asks (`KernelPlan`, `knat_plan.h`: declared chains replaced only when they differ, stale service chains
/// and listed chains deleted, kube-natd's jumps kept once at the top of their base chain, ensured rules added only
/// when absent, foreign chains and rules untouched). Because its state is the renderer's own output, it cannot drift from
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
        try self.lock.withLock { () throws -> Void in
            var changed = false
            for ruleset in rulesets {
                for table in ruleset.tables {
                    var t = self.state[ruleset.family]?[table.table] ?? Self.fresh()
                    let r = try Self.apply(table, family: ruleset.family, to: &t)
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

    /// One table, as every backend decides it (`KernelPlan`, the one planner), executed on the lines.
    static func apply(_ want: TableRuleset, family: IPFamily, to t: inout TableState) throws -> ApplyReport.TableReport {
        var program = TableProgram(family: family, capacity: 4096)
        program.recorded = []
        do {
            try program.encode(want)
        } catch {
            throw NetfilterError.encoding(error)
        }
        return try Self.run(program, table: want.table, family: family, on: &t)
    }

    /// Plans `program` (written with `recorded` rules) against the lines and executes the steps.
    static func run(_ program: TableProgram, table: Table, family: IPFamily, on t: inout TableState) throws
        -> ApplyReport.TableReport
    {
        let wanted = (program.recorded ?? []).map(line)
        let view = KernelTableLines(order: t.order) { t.rules[$0] ?? [] }
        let plan = try KernelPlan.make(program.bytes, table: table, view: view) { chain, index, id in
            view.lines[chain][index] == wanted[id]
        }
        var r = ApplyReport.TableReport(family: family, table: table)
        for step in plan.steps {
            switch step {
            case .create(let name, let jumps, let ensured, _):
                t.create(name)
                if !jumps && !ensured { r.chainsCreated += 1 }
            case .fill(let name, let rules):
                t.rules[name] = Array(wanted[rules])
                r.rulesAppended += rules.count
            case .unchanged: r.chainsUnchanged += 1
            case .rewrite(let name, let rules, _):
                t.rules[name] = Array(wanted[rules])
                r.chainsFlushed += 1
                r.rulesAppended += rules.count
            case .deleteRule(let name, let index):
                t.rules[name]?.remove(at: index)
                r.rulesDeleted += 1
            case .insert(let name, let rule, let at, _, let jump):
                var lines = t.rules[name] ?? []
                lines.insert(wanted[rule], at: min(at ?? lines.count, lines.count))
                t.rules[name] = lines
                if jump { r.jumpsInserted += 1 } else { r.rulesAppended += 1 }
            case .deleteChain(let name):
                t.delete(name)
                r.chainsDeleted += 1
            case .keepChain(let name, let warning):
                t.rules[name] = []
                r.warnings.append("\(family.flagName) \(table.rawValue): \(warning)")
            }
        }
        r.committed = plan.writes > 0
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

    static func cleanupProgram(_ table: Table, family: IPFamily) throws -> TableProgram {
        var program = TableProgram(family: family, capacity: 4096)
        program.recorded = []
        do {
            try program.encodeCleanup(table)
        } catch {
            throw NetfilterError.encoding(error)
        }
        return program
    }

    /// `--cleanup`: the same program every backend plans (`TableProgram.encodeCleanup`).
    public func cleanup(families: [IPFamily]) throws -> ApplyReport {
        var report = ApplyReport()
        try self.lock.withLock { () throws -> Void in
            for family in families {
                for table in Ownership.canaryTables {
                    guard var t = self.state[family]?[table] else { continue }
                    let program = try Self.cleanupProgram(table, family: family)
                    report.tables.append(try Self.run(program, table: table, family: family, on: &t))
                    self.state[family]![table] = t
                }
            }
        }
        return report
    }
}
