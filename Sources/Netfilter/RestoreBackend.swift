import KubeModel
import Ruleset

/// Feeds the rendered text to `iptables-restore --noflush` (legacy or nft), as upstream kube-proxy does: the
/// fallback where neither kernel-API backend applies.
///
/// Stale service chains are found with `iptables-save -t TABLE` and deleted with `-X` in the same payload;
/// base-chain jumps and ensured rules are made sure of afterwards with `iptables -C` / `-I` / `-A`, as upstream's
/// `EnsureRule`. The kernel's own encoding of a ruleset is only known by reading it back, so after each apply the
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
            report.merge(try self.apply(ruleset, lastWritten: before?.state))
            self.written[ruleset.family] = (ruleset, try self.read(family: ruleset.family, tables: ruleset.tables.map(\.table)))
        }
        return report
    }

    /// `lastWritten`: what the kernel showed after this backend's previous apply, so the report can tell chains
    /// rewritten because they differed (changed, or drifted) from chains restored unchanged.
    func apply(_ ruleset: Ruleset, lastWritten: OwnedState? = nil) throws -> ApplyReport {
        var payload = ruleset
        var report = ApplyReport()
        for i in payload.tables.indices {
            let table = payload.tables[i]
            let saved = try self.save(ruleset.family, table.table)
            let declared = Set(table.chains.map(\.name))
            var deleted = table.deletedChains.filter { saved.chains[$0] != nil }
            for name in saved.order where Ownership.isServiceChain(name) && !declared.contains(name) {
                if !deleted.contains(name) { deleted.append(name) }
            }
            payload.tables[i].deletedChains = deleted
            payload.tables[i].baseJumps = []
            payload.tables[i].ensured = []
            var r = ApplyReport.TableReport(family: ruleset.family, table: table.table)
            r.rulesAppended = table.ruleCount
            r.chainsDeleted = deleted.count
            r.chainsCreated = table.chains.filter { saved.chains[$0.name] == nil }.count
            let known = lastWritten?.tables[table.table] ?? [:]
            for chain in table.chains {
                guard let lines = saved.chains[chain.name], let last = known[chain.name] else { continue }
                if ChainDigest(lines: lines) == last { r.chainsUnchanged += 1 } else { r.chainsFlushed += 1 }
            }
            report.tables.append(r)
        }
        // Before the restore: chains the rules jump to but kube-natd only ensures (kubelet's KUBE-MARK-DROP in the
        // v1.23 layout) must exist, and kube-natd's jumps into chains about to be deleted (a layout switch) must go.
        let binary = self.tool(ruleset.family, "")
        for (i, table) in ruleset.tables.enumerated() {
            for chain in Set(table.ensured.map(\.chain)) where !Ownership.baseChains.contains(chain) {
                _ = try Command.run([binary, "-w", "-t", table.table.rawValue, "-N", chain])  // fails when it exists
            }
            let doomed = Set(payload.tables[i].deletedChains)
            for jump in Ownership.upstreamJumps(table.table) where !table.baseJumps.contains(jump) {
                guard case .jump(let to) = jump.rule.target, doomed.contains(to) else { continue }
                let args = Self.arguments(jump.rule)
                for _ in 0..<8 {  // bounded: a jump is normally there once
                    let out = try Command.run([binary, "-w", "-t", table.table.rawValue, "-D", jump.baseChain] + args)
                    if out.status != 0 { break }
                    report.tables[i].rulesDeleted += 1
                }
            }
        }
        let text = TextRenderer.renderBytes(payload)
        let restore = self.tool(ruleset.family, "-restore")
        // Like upstream, wait for /run/xtables.lock (`-w 5 -W 100000`) rather than fail when another agent holds it.
        let out = try Command.run([restore, "-w", "5", "-W", "100000", "--noflush"], input: text)
        guard out.status == 0 else {
            throw NetfilterError.command("\(restore) --noflush", status: out.status, stderr: out.stderr)
        }
        for (i, table) in ruleset.tables.enumerated() {
            // Prepending each missing jump in reverse leaves them first, in the given order, on a fresh chain.
            for jump in table.baseJumps.reversed() where try self.ensure(ruleset.family, table.table, jump.baseChain, jump.rule, at: 1) {
                report.tables[i].jumpsInserted += 1
            }
            for e in table.ensured {
                let position = Self.isBaseChain(e.chain) ? table.baseJumps.filter { $0.baseChain == e.chain }.count + 1 : nil
                if try self.ensure(ruleset.family, table.table, e.chain, e.rule, at: position, createChain: true) {
                    report.tables[i].rulesAppended += 1
                }
            }
        }
        report.text = String(decoding: text, as: UTF8.self)
        return report
    }

    /// Adds the rule (inserted at `position`, or appended) unless an identical one is in the chain; true if added.
    private func ensure(_ family: IPFamily, _ table: Table, _ chain: String, _ rule: Rule, at position: Int?,
                        createChain: Bool = false) throws -> Bool {
        let binary = self.tool(family, "")
        let args = Self.arguments(rule)
        if createChain {
            _ = try Command.run([binary, "-w", "-t", table.rawValue, "-N", chain])  // fails harmlessly when it exists
        }
        let check = try Command.run([binary, "-w", "-t", table.rawValue, "-C", chain] + args)
        if check.status == 0 { return false }
        let place = position.map { ["-I", chain, String($0)] } ?? ["-A", chain]
        let add = try Command.run([binary, "-w", "-t", table.rawValue] + place + args)
        guard add.status == 0 else {
            throw NetfilterError.command("\(binary) -t \(table.rawValue) \(place.joined(separator: " "))",
                                         status: add.status, stderr: add.stderr)
        }
        return true
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

    /// Deletes kube-natd's jumps (each exact rule, wherever it is), then flushes and deletes every owned chain the
    /// table holds, in one restore per table. A chain a foreign rule still jumps to makes that restore fail; the
    /// error names it.
    public func cleanup(families: [IPFamily]) throws -> ApplyReport {
        var report = ApplyReport()
        for family in families {
            let binary = self.tool(family, "")
            for table in Ownership.canaryTables where self.exists(table, family) {
                var r = ApplyReport.TableReport(family: family, table: table)
                for jump in ProxyModeLeftovers.cleanupJumps(table) {
                    let args = Self.arguments(jump.rule)
                    // Bounded: a jump is normally there once; a few copies left by older agents go too.
                    for _ in 0..<8 {
                        let out = try Command.run([binary, "-w", "-t", table.rawValue, "-D", jump.baseChain] + args)
                        if out.status != 0 { break }
                        r.rulesDeleted += 1
                    }
                }
                let saved = try self.save(family, table)
                let owned = saved.order.filter {
                    Ownership.isServiceChain($0) || ProxyModeLeftovers.cleanupChains(table).contains($0)
                }
                r.chainsDeleted = owned.count
                report.tables.append(r)
                if owned.isEmpty { continue }
                var text = "*\(table.rawValue)\n"
                for name in owned { text += ":\(name) - [0:0]\n" }
                for name in owned { text += "-X \(name)\n" }
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
        let line = TextRenderer.line(chain: "X", rule: rule)
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
        return Array(args.dropFirst(2))  // "-A X"
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
