import KubeModel
import Ruleset

/// Feeds the rendered text to `iptables-restore --noflush` (legacy or nft), as upstream kube-proxy does: the
/// fallback where neither kernel-API backend applies.
///
/// What to write is the one planner's decision (`KernelPlan`) over `iptables-save -t TABLE`: stale service chains
/// are deleted with `-X` in the same payload; base-chain jumps and ensured rules are placed afterwards with
/// `iptables -I` / `-A` where the plan says, as upstream's `EnsureRule(Prepend)` leaves them. The kernel's own encoding of a ruleset is only known by reading it back, so after each apply the
/// owned chains are saved once more and kept as what the next drift check expects.
public final class RestoreBackend: KernelBackend {
    public let mode: HostMode
    /// Per family: the ruleset last applied and what the kernel showed of its chains right after.
    private var written: [IPFamily: (ruleset: Ruleset, state: OwnedState)] = [:]

    public init(mode: HostMode) { self.mode = mode }

    public var name: String { "iptables-\(self.mode.rawValue)-restore" }

    func tool(_ family: IPFamily, _ suffix: String) -> String {
        (family == .ipv4 ? "iptables" : "ip6tables") + "-" + self.mode.rawValue + suffix
    }

    public func apply(_ rulesets: [Ruleset]) throws -> ApplyReport {
        var report = ApplyReport()
        for ruleset in rulesets {
            let before = self.written.removeValue(forKey: ruleset.family)
            report.merge(try self.apply(ruleset, lastWritten: before?.state, lastRuleset: before?.ruleset))
            self.written[ruleset.family] = (ruleset, try self.read(family: ruleset.family, tables: ruleset.tables.map(\.table)))
        }
        return report
    }

    /// `lastWritten`: what the kernel showed after this backend's previous apply (and the ruleset it applied), so
    /// the report can tell chains rewritten because they differed (changed, or drifted) from chains restored
    /// unchanged.
    ///
    /// What to write is the one planner's decision (`KernelPlan`, `knat_plan.h`) over `iptables-save`'s lines:
    /// rules of base chains and ensured chains are compared in iptables-save's own form (`SaveForm`), declared
    /// chains by the digest this backend read back after writing them. Executed as upstream does: rule deletions
    /// (`-D CHAIN N`) first, then one `--noflush` restore of every declared chain, the stale chains (`-X`) and the
    /// kept ones (flushed), then the jumps and ensured rules (`-I CHAIN N` / `-A`).
    func apply(_ ruleset: Ruleset, lastWritten: OwnedState? = nil, lastRuleset: Ruleset? = nil) throws -> ApplyReport {
        var payload = ruleset
        var report = ApplyReport()
        var edits: [(table: Table, steps: [KernelPlan.Step], rules: [Rule])] = []
        for i in payload.tables.indices {
            let table = payload.tables[i]
            let saved = try self.save(ruleset.family, table.table)
            var program = TableProgram(family: ruleset.family, capacity: 1 << 16)
            program.recorded = []
            do {
                try program.encode(table)
            } catch {
                throw NetfilterError.encoding(error)
            }
            let known = lastWritten?.tables[table.table] ?? [:]
            let before = lastRuleset?[table.table]
            let rules = program.recorded ?? []
            let plan = try Self.plan(program, rules: rules, table: table.table, saved: saved) { name in
                guard let digest = known[name], let was = before?.chain(named: name),
                      let now = table.chain(named: name), was.rules == now.rules,
                      let lines = saved.chains[name]
                else { return 0 }
                return ChainDigest(lines: lines) == digest ? 1 : 0
            }
            var r = ApplyReport.TableReport(family: ruleset.family, table: table.table)
            r.rulesAppended = table.ruleCount
            var deleted: [String] = []
            for step in plan.steps {
                switch step {
                case .create(let name, let jumps, let ensured, _):
                    if !jumps && !ensured { r.chainsCreated += 1 }
                    // a chain for ensured rules is declared (created) by the restore, before rules jump to it
                    if ensured && !jumps && !Self.isBaseChain(name) && table.chain(named: name) == nil {
                        payload.tables[i].chains.append(Chain(name, []))
                    }
                case .unchanged(let name): if known[name] != nil { r.chainsUnchanged += 1 }
                case .rewrite(let name, _, _): if known[name] != nil { r.chainsFlushed += 1 }
                case .deleteChain(let name):
                    deleted.append(name)
                    r.chainsDeleted += 1
                case .keepChain(let name, let warning):
                    payload.tables[i].chains.append(Chain(name, []))  // a chain line flushes it
                    r.warnings.append("\(ruleset.family.flagName) \(table.table.rawValue): \(warning)")
                case .fill, .deleteRule, .insert: break
                }
            }
            payload.tables[i].deletedChains = deleted
            payload.tables[i].baseJumps = []
            payload.tables[i].ensured = []
            report.tables.append(r)
            edits.append((table.table, plan.steps, rules))
        }
        let binary = self.tool(ruleset.family, "")
        // Before the restore: rule deletions (kube-proxy's jumps into chains about to be deleted among them).
        for (i, e) in edits.enumerated() {
            for case .deleteRule(let chain, let index) in e.steps {
                try self.run([binary, "-w", "-t", e.table.rawValue, "-D", chain, String(index + 1)])
                report.tables[i].rulesDeleted += 1
            }
        }
        let text = TextRenderer.renderBytes(payload)
        let restore = self.tool(ruleset.family, "-restore")
        // Like upstream, wait for /run/xtables.lock (`-w 5 -W 100000`) rather than fail when another agent holds it.
        let out = try Command.run([restore, "-w", "5", "-W", "100000", "--noflush"], input: text)
        guard out.status == 0 else {
            throw NetfilterError.command("\(restore) --noflush", status: out.status, stderr: out.stderr)
        }
        // After it: the jumps (their targets exist now) and ensured rules, at the planned positions.
        for (i, e) in edits.enumerated() {
            for case .insert(let chain, let rule, let at, _, let jump) in e.steps {
                let place = at.map { ["-I", chain, String($0 + 1)] } ?? ["-A", chain]
                try self.run([binary, "-w", "-t", e.table.rawValue] + place + Self.arguments(e.rules[rule]))
                if jump { report.tables[i].jumpsInserted += 1 } else { report.tables[i].rulesAppended += 1 }
            }
        }
        report.text = String(decoding: text, as: UTF8.self)
        return report
    }

    /// The one planner over a saved table. `chainSame(name)`: 1 when the declared chain is known unchanged, 0 else.
    static func plan(_ program: TableProgram, rules: [Rule], table: Table, saved: SavedTable,
                     chainSame: @escaping (String) -> Int32 = { _ in 0 }) throws -> KernelPlan {
        let view = KernelTableLines(order: saved.order) { (saved.chains[$0] ?? []).map(String.init) }
        let forms = SaveForm.Cache(rules: rules, view: view)
        return try KernelPlan.make(program.bytes, table: table, view: view, same: { chain, index, id in
            forms.kernel(chain, index) == forms.program(id)
        }, chainSame: { chain, _, _ in chainSame(view.names[chain]) })
    }

    private func run(_ argv: [String]) throws {
        let out = try Command.run(argv)
        guard out.status == 0 else {
            throw NetfilterError.command(argv.joined(separator: " "), status: out.status, stderr: out.stderr)
        }
    }

    public func readOwned(family: IPFamily) throws -> OwnedState {
        try self.read(family: family, tables: Ownership.canaryTables)
    }

    func read(family: IPFamily, tables: [Table]) throws -> OwnedState {
        var state = OwnedState(family: family)
        for table in tables where self.exists(table, family) {
            let saved = try self.save(family, table)
            var chains: [String: ChainDigest] = [:]
            for name in saved.order where Ownership.isReadBack(name) {
                chains[name] = ChainDigest(lines: saved.chains[name] ?? [])
            }
            state.tables[table] = chains
        }
        return state
    }

    /// What the kernel showed of the ruleset's chains right after this backend applied it.
    public func expectedOwned(_ ruleset: Ruleset) throws -> OwnedState {
        guard let w = self.written[ruleset.family], w.ruleset == ruleset else {
            throw NetfilterError.unsupported(
                "\(self.name) learns how the kernel prints a ruleset only by applying it; this one was not applied")
        }
        var state = OwnedState(family: ruleset.family)
        for table in ruleset.tables {
            let have = w.state.tables[table.table] ?? [:]
            state.tables[table.table] = Dictionary(uniqueKeysWithValues: table.chains.compactMap { c in
                have[c.name].map { (c.name, $0) }
            })
        }
        return state
    }

    /// Reading a legacy table that the kernel does not list yet would create it: a table that is not there holds
    /// nothing of kube-natd's. (iptables-nft-save prints nothing for a missing table.)
    func exists(_ table: Table, _ family: IPFamily) -> Bool {
        self.mode == .nft || Cleanup.tableExists(table, family: family)
    }

    public func ensureCanaries(family: IPFamily) throws {
        for table in Ownership.canaryTables {
            let saved = try self.save(family, table)
            if saved.chains[Ownership.canary] != nil { continue }
            let binary = self.tool(family, "")
            let out = try Command.run([binary, "-w", "-t", table.rawValue, "-N", Ownership.canary])
            guard out.status == 0 else {
                throw NetfilterError.command("\(binary) -t \(table.rawValue) -N \(Ownership.canary)",
                                             status: out.status, stderr: out.stderr)
            }
        }
    }

    /// `--cleanup`: the one program every backend plans (`TableProgram.encodeCleanup`), per table: the rule
    /// deletions by number, then one restore that flushes and deletes the stale chains (and flushes, with a
    /// warning, one a foreign rule still jumps to).
    public func cleanup(families: [IPFamily]) throws -> ApplyReport {
        var report = ApplyReport()
        for family in families {
            let binary = self.tool(family, "")
            for table in Ownership.canaryTables where self.exists(table, family) {
                var r = ApplyReport.TableReport(family: family, table: table)
                var program = TableProgram(family: family, capacity: 4096)
                program.recorded = []
                do {
                    try program.encodeCleanup(table)
                } catch {
                    throw NetfilterError.encoding(error)
                }
                let plan = try Self.plan(program, rules: program.recorded ?? [], table: table,
                                         saved: try self.save(family, table))
                var flushed: [String] = []
                var deleted: [String] = []
                for step in plan.steps {
                    switch step {
                    case .deleteRule(let chain, let index):
                        try self.run([binary, "-w", "-t", table.rawValue, "-D", chain, String(index + 1)])
                        r.rulesDeleted += 1
                    case .deleteChain(let name): deleted.append(name)
                    case .keepChain(let name, let warning):
                        flushed.append(name)
                        r.warnings.append("\(family.flagName) \(table.rawValue): \(warning)")
                    default: break
                    }
                }
                r.chainsDeleted = deleted.count
                report.tables.append(r)
                if deleted.isEmpty && flushed.isEmpty { continue }
                var text = "*\(table.rawValue)\n"
                for name in flushed + deleted { text += ":\(name) - [0:0]\n" }
                for name in deleted { text += "-X \(name)\n" }
                text += "COMMIT\n"
                let restore = self.tool(family, "-restore")
                let out = try Command.run([restore, "-w", "5", "-W", "100000", "--noflush"], input: Array(text.utf8))
                guard out.status == 0 else {
                    throw NetfilterError.command("\(restore) --noflush (cleanup)", status: out.status, stderr: out.stderr)
                }
            }
            self.written[family] = nil
        }
        return report
    }

    private func save(_ family: IPFamily, _ table: Table) throws -> SavedTable {
        let save = try Command.run([self.tool(family, "-save"), "-t", table.rawValue])
        guard save.status == 0 else {
            throw NetfilterError.command(
                "\(self.tool(family, "-save")) -t \(table.rawValue)", status: save.status, stderr: save.stderr)
        }
        return SavedTable(parsing: save.stdout)
    }

    static func isBaseChain(_ name: String) -> Bool { Ownership.baseChains.contains(name) }

    /// A rule as an argv (the rendered `-A CHAIN ...` line, split the way iptables-restore would).
    static func arguments(_ rule: Rule) -> [String] {
        Array(Self.arguments(line: TextRenderer.line(chain: "X", rule: rule)).dropFirst(2))  // "-A X"
    }

    /// A rule line split the way iptables-restore would (quotes, backslash escapes inside them).
    static func arguments(line: String) -> [String] {
        var args: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        var inToken = false
        for ch in line {
            if escaped {
                current.append(ch)
                escaped = false
            } else if ch == "\\" && quoted {
                escaped = true
            } else if ch == "\"" {
                quoted.toggle()
                inToken = true
            } else if ch == " " && !quoted {
                if inToken { args.append(current) }
                current = ""
                inToken = false
            } else {
                current.append(ch)
                inToken = true
            }
        }
        if inToken { args.append(current) }
        return args
    }
}

/// One table as `iptables-save -t TABLE` prints it: chains in order, each with its rule lines (the text after
/// `-A CHAIN `, counters absent).
struct SavedTable {
    var order: [String] = []
    var chains: [String: [Substring]] = [:]

    init(parsing text: String) {
        for line in text.split(separator: "\n") {
            if line.hasPrefix(":") {
                let name = String(line.dropFirst().prefix { $0 != " " })
                self.order.append(name)
                self.chains[name] = []
            } else if line.hasPrefix("-A ") {
                let rest = line.dropFirst(3)
                let name = String(rest.prefix { $0 != " " })
                self.chains[name, default: []].append(rest.dropFirst(name.count + 1))
            }
        }
    }
}

extension ChainDigest {
    /// A chain's digest from its saved rule lines (FNV-1a over each line and a separator).
    init(lines: [Substring]) {
        var h: UInt64 = 14_695_981_039_346_656_037
        for line in lines {
            for b in line.utf8 { h = (h ^ UInt64(b)) &* 1_099_511_628_211 }
            h = (h ^ 0x0A) &* 1_099_511_628_211
        }
        self.init(ruleCount: lines.count, digest: h)
    }
}

/// A rule line in the form `iptables-save` prints it, for comparing this backend's rendering with what the kernel
/// shows: the IP-header options (`-s -d -i -o -p`, which iptables-save prints first) as a set, addresses without a
/// full-length prefix, MARK's `--or-mark`/`--xor-mark` as the `--set-xmark` the kernel stores, REJECT's default
/// reason spelled out; every other option in its written order (iptables-save prints matches as they were given).
enum SaveForm {
    static func canonical(_ line: String) -> String {
        let tokens = RestoreBackend.arguments(line: line)
        var header: [String] = []
        var rest: [String] = []
        var i = 0
        while i < tokens.count {
            var t = tokens[i]
            var negated = false
            if t == "!", i + 1 < tokens.count, ["-s", "-d", "-i", "-o", "-p"].contains(tokens[i + 1]) {
                negated = true
                i += 1
                t = tokens[i]
            }
            if ["-s", "-d", "-i", "-o", "-p"].contains(t), i + 1 < tokens.count {
                var value = tokens[i + 1]
                if t == "-s" || t == "-d" {
                    if value.hasSuffix("/32") && !value.contains(":") { value.removeLast(3) }
                    if value.hasSuffix("/128") { value.removeLast(4) }
                }
                header.append((negated ? "! " : "") + t + " " + value.lowercased())
                i += 2
                continue
            }
            if (t == "--or-mark" || t == "--xor-mark"), i + 1 < tokens.count {
                let v = tokens[i + 1]
                rest += ["--set-xmark", t == "--or-mark" ? "\(v)/\(v)" : "\(v)/0x0"]
                i += 2
                continue
            }
            if t == "--reject-with", i + 1 < tokens.count, tokens[i + 1].hasSuffix("-port-unreachable") {
                i += 2
                continue
            }
            rest.append(t)
            i += 1
        }
        return header.sorted().joined(separator: " ") + " | " + rest.joined(separator: " ")
    }

    /// Canonical forms computed once each, on demand (a plan compares few rules of a large table this way).
    final class Cache {
        let rules: [Rule]
        let view: KernelTableLines
        var programForms: [Int: String] = [:]
        var kernelForms: [Int: [Int: String]] = [:]

        init(rules: [Rule], view: KernelTableLines) {
            self.rules = rules
            self.view = view
        }

        func program(_ id: Int) -> String {
            if let f = self.programForms[id] { return f }
            let f = SaveForm.canonical(TextBackend.line(self.rules[id]))
            self.programForms[id] = f
            return f
        }

        func kernel(_ chain: Int, _ index: Int) -> String {
            if let f = self.kernelForms[chain]?[index] { return f }
            let f = SaveForm.canonical(self.view.lines[chain][index])
            self.kernelForms[chain, default: [:]][index] = f
            return f
        }
    }
}
