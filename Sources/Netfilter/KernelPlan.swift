import CRuleProgram
import Foundation
import KubeModel
import Ruleset

#if canImport(Glibc)
    import Glibc
#endif

/// One table as a backend that speaks rule text read it (the text backend's in-memory lines, restore's
/// `iptables-save` lines): what the one planner (`knat_plan.h`) is asked about.
struct KernelTableLines {
    var names: [String]
    var builtin: [Bool]
    var lines: [[String]]
    var index: [String: Int]
    /// Rules the backend knows kube-natd wrote as one of its jumps (chain index → rule indices; knat_plan.h D7).
    /// Text cannot tell, so the backends leave it empty; tests set it.
    var ownJumps: [Int: Set<Int>] = [:]

    /// Chains in table order; a chain is a base chain when `Ownership.baseChains` names it.
    init(order: [String], rules: (String) -> [String]) {
        self.names = order
        self.builtin = order.map { Ownership.baseChains.contains($0) }
        self.lines = order.map(rules)
        self.index = Dictionary(order.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// The chain a rule line jumps to (`-j NAME`, the target being the last option group), or nil.
    static func target(_ line: String) -> String? {
        guard let r = line.range(of: "-j ", options: .backwards),
              r.lowerBound == line.startIndex || line[line.index(before: r.lowerBound)] == " "
        else { return nil }
        let name = line[r.upperBound...].prefix { $0 != " " }
        return name.isEmpty ? nil : String(name)
    }
}

/// A planner error: the program is not one the planner takes (the message names the table and what is wrong).
public struct KernelPlanError: Error, CustomStringConvertible, Sendable {
    public var table: Table
    public var errno: Int32
    public var message: String
    public var description: String { "plan: \(self.message) (errno \(self.errno))" }
}

/// A plan of the one planner, its chains named (see `knat_step`).
struct KernelPlan: Equatable {
    enum Step: Equatable {
        /// Create the chain. `jumps`: it receives kube-natd's jumps; `ensured`: ensured rules; `canary`: an
        /// ensure-only chain (no fill follows).
        case create(String, jumps: Bool = false, ensured: Bool = false, canary: Bool = false)
        /// Fill the chain just created with the program rules `rules` (ids).
        case fill(String, rules: Range<Int>)
        case unchanged(String)
        /// The declared chain differs from its rule `from` on: make it hold `rules`.
        case rewrite(String, rules: Range<Int>, from: Int)
        /// Delete rule `index` (as read; a chain's deletions come highest index first).
        case deleteRule(String, index: Int)
        /// Insert program rule `rule` at `at` (nil: append), i.e. right before kernel rule `before` as read (nil:
        /// at the end). `jump`: one of kube-natd's jumps (else an ensured rule).
        case insert(String, rule: Int, at: Int?, before: Int?, jump: Bool)
        case deleteChain(String)
        case keepChain(String, warning: String)
    }

    var steps: [Step] = []
    /// Steps that change the table (0: it already holds the wanted state).
    var writes = 0
    var unchanged = 0

    /// Plans `program` (written with `recorded` rules) against `view`; `same(chain, index, ruleID)` compares kernel
    /// rule `index` of chain `chain` with program rule `ruleID`; `chainSame(chain, firstRuleID, count)` may answer a
    /// declared chain at once (1 same, 0 differs, 2 ask `same` per rule).
    static func make(
        _ program: [UInt8], table: Table, view: KernelTableLines,
        same: @escaping (Int, Int, Int) -> Bool,
        chainSame: ((Int, Int, Int) -> Int32)? = nil
    ) throws -> KernelPlan {
        let box = ViewBox(view: view, same: same, chainSame: chainSame)
        defer { box.release() }
        var v = knat_view()
        v.nchains = UInt32(view.names.count)
        v.chain = { ctx, i in
            let b = Unmanaged<ViewBox>.fromOpaque(ctx!).takeUnretainedValue()
            return knat_view_chain(
                name: UnsafePointer(b.cNames[Int(i)]), rules: UInt32(b.view.lines[Int(i)].count),
                builtin: b.view.builtin[Int(i)] ? 1 : 0)
        }
        v.find = { ctx, name in
            let b = Unmanaged<ViewBox>.fromOpaque(ctx!).takeUnretainedValue()
            return b.view.index[String(cString: name!)].map { Int32($0) } ?? -1
        }
        v.rule = { ctx, chain, index in
            let b = Unmanaged<ViewBox>.fromOpaque(ctx!).takeUnretainedValue()
            let own = b.view.ownJumps[Int(chain)]?.contains(Int(index)) == true
            return knat_view_rule(target: UnsafePointer(b.target(Int(chain), Int(index))), own_jump: own ? 1 : 0)
        }
        v.same = { ctx, chain, index, want in
            let b = Unmanaged<ViewBox>.fromOpaque(ctx!).takeUnretainedValue()
            return b.same(Int(chain), Int(index), Int(want!.pointee.id)) ? 1 : 0
        }
        if chainSame != nil {
            v.chain_same = { ctx, chain, want in
                let b = Unmanaged<ViewBox>.fromOpaque(ctx!).takeUnretainedValue()
                return b.chainSame!(Int(chain), Int(want!.pointee.first), Int(want!.pointee.count))
            }
        }
        var plan = knat_plan()
        var message = [CChar](repeating: 0, count: 512)
        let rc = withExtendedLifetime(box) { () -> Int32 in
            v.ctx = Unmanaged.passUnretained(box).toOpaque()
            return table.rawValue.withCString { name in
                v.table = name
                return program.withUnsafeBufferPointer { bytes in
                    knat_plan_table(bytes.baseAddress, bytes.count, &v, &plan, &message, message.count)
                }
            }
        }
        defer { knat_plan_free(&plan) }
        guard rc == 0 else {
            throw KernelPlanError(table: table, errno: rc, message: String(cString: message))
        }
        var out = KernelPlan()
        out.writes = plan.writes
        out.unchanged = Int(plan.unchanged)
        for s in UnsafeBufferPointer(start: plan.steps, count: plan.nsteps) {
            out.steps.append(Self.step(s, program: program, view: view))
        }
        return out
    }

    private static func step(_ s: knat_step, program: [UInt8], view: KernelTableLines) -> Step {
        let name: String
        if s.at != KNAT_PLAN_NONE {
            var buf = [CChar](repeating: 0, count: Int(KNAT_CHAIN_NAME_MAX) + 1)
            _ = program.withUnsafeBufferPointer { knat_plan_record_name($0.baseAddress, $0.count, s.at, &buf) }
            name = String(cString: buf)
        } else {
            name = view.names[Int(s.chain)]
        }
        let rules = Int(s.rule)..<(Int(s.rule) + Int(s.count))
        switch Int(s.kind) {
        case Int(KNAT_STEP_CREATE):
            return .create(
                name, jumps: s.flags & UInt8(KNAT_STEP_JUMPS) != 0, ensured: s.flags & UInt8(KNAT_STEP_ENSURED) != 0,
                canary: s.flags & UInt8(KNAT_STEP_ENSURE_ONLY) != 0)
        case Int(KNAT_STEP_FILL): return .fill(name, rules: rules)
        case Int(KNAT_STEP_UNCHANGED): return .unchanged(name)
        case Int(KNAT_STEP_REWRITE): return .rewrite(name, rules: rules, from: Int(s.index))
        case Int(KNAT_STEP_DELETE_RULE): return .deleteRule(name, index: Int(s.index))
        case Int(KNAT_STEP_INSERT):
            return .insert(
                name, rule: Int(s.rule), at: s.index == KNAT_PLAN_END ? nil : Int(s.index),
                before: s.before == KNAT_PLAN_END ? nil : Int(s.before), jump: s.flags & UInt8(KNAT_STEP_JUMPS) != 0)
        case Int(KNAT_STEP_DELETE_CHAIN): return .deleteChain(name)
        default: return .keepChain(name, warning: s.warning.map { String(cString: $0) } ?? "")
        }
    }
}

/// The view's state for the C callbacks: the chain names and jump targets as C strings, alive for one plan.
private final class ViewBox {
    let view: KernelTableLines
    let same: (Int, Int, Int) -> Bool
    let chainSame: ((Int, Int, Int) -> Int32)?
    var cNames: [UnsafeMutablePointer<CChar>]
    var targets: [[UnsafeMutablePointer<CChar>?]?]

    init(view: KernelTableLines, same: @escaping (Int, Int, Int) -> Bool, chainSame: ((Int, Int, Int) -> Int32)?) {
        self.view = view
        self.same = same
        self.chainSame = chainSame
        self.cNames = view.names.map { strdup($0)! }
        self.targets = Array(repeating: nil, count: view.names.count)
    }

    func target(_ chain: Int, _ index: Int) -> UnsafeMutablePointer<CChar>? {
        if self.targets[chain] == nil {
            self.targets[chain] = self.view.lines[chain].map { KernelTableLines.target($0).flatMap { strdup($0) } }
        }
        return self.targets[chain]![index]
    }

    func release() {
        for p in self.cNames { free(p) }
        for list in self.targets { for p in list ?? [] { free(p) } }
        self.cNames = []
        self.targets = []
    }
}
