import CNftables
import CRuleProgram
import Dispatch
import Foundation
import KubeModel
import Logging
import Ruleset

/// Writes kube-proxy's rules natively into nf_tables through libnftnl, exactly as iptables-nft encodes them, so
/// the host's `iptables-nft-save`, `-C` and `-D` see them as their own (reference nftables.md).
///
/// Every apply is one netlink batch for all tables and families, begun with the generation id read before the
/// decision: another writer committing in between makes the kernel refuse it whole (ERESTART), and the apply
/// reads again, decides again and retries. Only what differs is sent (new and deleted chains, the changed rules
/// of changed chains, missing or misplaced jumps); when nothing differs nothing is sent.
///
/// The object keeps what it last read or wrote (chains, rule handles and tags): while the kernel's generation id
/// is still the one its last commit produced, nothing changed in the netns and it decides without a dump.
public final class NftablesBackend: KernelBackend {
    public var name: String { "libnftnl" }
    /// The expression form written (the host's iptables release, see `NftablesForm`).
    public let form: NftablesForm
    /// Batches refused with ERESTART are retried this many times in all.
    public var maxAttempts: Int32 = 5
    /// Dump the kernel on every call instead of trusting what this object wrote (the stateless path, for tests).
    public var alwaysRead = false
    public var logger: Logger
    /// Whether the last apply, read-back or cleanup dumped the kernel (false: the generation id showed that
    /// nothing changed since this object last read or wrote, so it decided from what it knew).
    public private(set) var lastCallReadKernel = false
    /// Whether the last apply found the stamp current: nothing had changed in the netns since a batch of these
    /// same rulesets (by this or another kube-natd process), so it sent nothing and read nothing else.
    public private(set) var lastCallStampCurrent = false
    /// Test hook: declared chains the last apply encoded anew, and those it copied from the apply before.
    public private(set) var lastChainsEncoded = 0
    public private(set) var lastChainsReused = 0
    /// Test hook: declared chains the shim parsed and hashed in the last apply, those it compared with the kernel
    /// model, and whether every table was planned from its change alone (summed over tables).
    public private(set) var lastChainsIndexed = 0
    public private(set) var lastChainsPlanned = 0
    public private(set) var lastPlanIncremental = false
    /// Each (family, table)'s last program, chain by chain (see `EncodedTable`).
    private var encodedTables: [EncodedKey: EncodedTable] = [:]
    private struct EncodedKey: Hashable {
        var family: IPFamily
        var table: Table
    }
    private var context: OpaquePointer?
    /// A read ahead started by `prefetch(families:)`, taken over at the next call.
    private var pending: NftablesPrefetch?

    /// `form` nil: `KNAT_NFT_FORM` if set, else from the host's `iptables --version`.
    public init(form: NftablesForm? = nil, logger: Logger = Logger(label: "kube-natd.nftables")) {
        if let form {
            self.form = form
        } else {
            self.form = NftablesForm.detect(environment: ProcessInfo.processInfo.environment).form
        }
        self.logger = logger
    }

    deinit {
        if let p = self.pending { knft_close(p.wait()) }
        knft_close(self.context)
    }

    private func open() throws -> OpaquePointer {
        self.adoptPrefetch()
        if let c = self.context { return c }
        var result = knft_result()
        guard let c = knft_open(&result) else { throw NftablesError(result) }
        self.context = c
        return c
    }

    // MARK: - KernelBackend

    /// Reads the tables on another thread while the caller compiles (a new process: `--once`, a daemon's
    /// first sync), unless the stamp shows the kernel as a batch of kube-natd left it. The next call takes the
    /// model over when this object has none of its own; a long-lived object's current model needs no read.
    public func prefetch(families: [IPFamily]) {
        guard self.pending == nil, !families.isEmpty else { return }
        if let c = self.context, knft_has_model(c) != 0 { return }
        self.pending = NftablesPrefetch(families: families)
    }

    /// Waits for a read ahead and keeps its model when this object has none.
    private func adoptPrefetch() {
        guard let p = self.pending else { return }
        self.pending = nil
        guard let read = p.wait() else { return }
        let mine = self.context.map { knft_has_model($0) != 0 } ?? false
        if mine || knft_has_model(read) == 0 {
            knft_close(read)
            return
        }
        knft_close(self.context)
        self.context = read
    }

    public func apply(_ rulesets: [Ruleset]) throws -> ApplyReport {
        try self.apply(rulesets, changes: [])
    }

    /// Encodes only the chains `changes` names when this object's last encoding of a table is the change's
    /// base; everything else (and every table without such a change) is encoded anew. A full sync's change
    /// (`RulesetChange.full`) is encoded the same way, and the shim then compares every chain with the kernel.
    public func apply(_ rulesets: [Ruleset], changes: [RulesetChange]) throws -> ApplyReport {
        let started = DispatchTime.now().uptimeNanoseconds
        let programs = try self.encodePrograms(rulesets, changes: changes)
        let encoded = DispatchTime.now().uptimeNanoseconds
        var report = try self.run(programs, stamp: Self.stampChain(rulesets))
        if !report.tables.isEmpty { report.tables[0].encodeSeconds = Double(encoded - started) / 1e9 }
        self.log(report)
        return report
    }

    public func readOwned(family: IPFamily) throws -> OwnedState {
        let context = try self.open()
        let tables = Ownership.canaryTables.map(\.rawValue)
        let names = Set(Ownership.fixedChains.values.joined()).sorted()
            + [Ownership.canary, Ownership.kubeletFirewall, Ownership.kubeletMarkDrop]
        var result = knft_result()
        var out: UnsafeMutablePointer<knft_chain_digest>?
        let n = withKnftStrings(tables) { t in
            withKnftStrings(Ownership.servicePrefixes) { p in
                withKnftStrings(names) { s in
                    var selection = knft_selection(
                        prefixes: p.baseAddress, nprefixes: p.count, names: s.baseAddress, nnames: s.count)
                    return knft_read_owned(
                        context, family.cValue, t.baseAddress, t.count, &selection,
                        self.alwaysRead ? Int32(KNFT_APPLY_READ) : 0, &out, &result)
                }
            }
        }
        defer { free(out) }
        self.lastCallReadKernel = result.read_kernel != 0
        guard n >= 0 else { throw NftablesError(result) }
        var state = OwnedState(family: family)
        for table in Ownership.canaryTables { state.tables[table] = [:] }
        for d in UnsafeBufferPointer(start: out, count: n) {
            guard let table = Table(rawValue: knftString(d.table)) else { continue }
            state.tables[table, default: [:]][knftString(d.name)] = ChainDigest(
                ruleCount: Int(d.rules), digest: d.digest)
        }
        return state
    }

    public func expectedOwned(_ ruleset: Ruleset) throws -> OwnedState {
        let programs = try ruleset.tables.map { table in
            try NftablesProgram(ruleset.family, table.table) { try Self.encode(table, into: &$0) }
        }
        var result = knft_result()
        var out: UnsafeMutablePointer<knft_chain_digest>?
        let n = NftablesProgram.withDescriptors(programs) { knft_expected_owned($0, $1, self.form.cValue, &out, &result) }
        defer { free(out) }
        guard n >= 0 else { throw NftablesError(result) }
        var state = OwnedState(family: ruleset.family)
        for table in ruleset.tables { state.tables[table.table] = [:] }
        for d in UnsafeBufferPointer(start: out, count: n) {
            guard let table = Table(rawValue: knftString(d.table)) else { continue }
            state.tables[table, default: [:]][knftString(d.name)] = ChainDigest(
                ruleCount: Int(d.rules), digest: d.digest)
        }
        return state
    }

    public func ensureCanaries(family: IPFamily) throws {
        let programs = try Ownership.canaryTables.map { table in
            try NftablesProgram(family, table) { $0.ensureChain(Ownership.canary) }
        }
        self.log(try self.run(programs))
    }

    public func cleanup(families: [IPFamily]) throws -> ApplyReport {
        var programs: [NftablesProgram] = []
        for family in families {
            for table in [Table.nat, .filter, .mangle] {
                programs.append(try NftablesProgram(family, table) { try Self.encodeCleanup(table, into: &$0) })
            }
        }
        let report = try self.run(programs)
        self.log(report)
        return report
    }

    // MARK: - Diagnostics

    /// Every chain and rule of one table in a canonical text form (expressions with their attributes, xt blobs in
    /// hex; handles, counters and kube-natd's tag left out): equal text means equal kernel rules.
    public func dump(family: IPFamily, table: String) throws -> String {
        let context = try self.open()
        var result = knft_result()
        var out: UnsafeMutablePointer<CChar>?
        let n = knft_dump_table(context, family.cValue, table, &out, &result)
        defer { free(out) }
        guard n >= 0, let out else { throw NftablesError(result) }
        return String(cString: out)
    }

    /// The kernel's ruleset generation id (bumped by every commit in the netns).
    public func generation() throws -> UInt32 {
        let context = try self.open()
        var result = knft_result()
        var genid: UInt32 = 0
        guard knft_generation(context, &genid, &result) == 0 else { throw NftablesError(result) }
        return genid
    }

    // MARK: - Encoding

    /// The programs of `rulesets`, reusing the last apply's encoding of every chain a ruleset's change does not
    /// name (when that encoding is of the change's base ruleset). Keeps the new encodings for the next apply;
    /// a table that fails to encode keeps none.
    func encodePrograms(_ rulesets: [Ruleset], changes: [RulesetChange]) throws -> [NftablesProgram] {
        var programs: [NftablesProgram] = []
        var encodedCount = 0
        var reusedCount = 0
        defer {
            self.lastChainsEncoded = encodedCount
            self.lastChainsReused = reusedCount
        }
        for ruleset in rulesets {
            let change = changes.first { $0.family == ruleset.family }
            for table in ruleset.tables {
                let key = EncodedKey(family: ruleset.family, table: table.table)
                // taken out of the dictionary so that its bytes are not shared and are patched in place
                var entry = self.encodedTables.removeValue(forKey: key)
                do {
                    if var previous = entry, let change, !change.isEverything, previous.id != nil,
                       previous.id == change.base {
                        entry = nil
                        try previous.patch(
                            ruleset.family, table, id: change.id, touched: change.touched[table.table] ?? [],
                            encodedCount: &encodedCount, reusedCount: &reusedCount)
                        entry = previous
                    } else {
                        entry = nil
                        entry = try EncodedTable(ruleset.family, table, id: change?.id, encodedCount: &encodedCount)
                    }
                } catch {
                    throw NetfilterError.encoding(error)
                }
                guard let entry else { continue }
                var program = NftablesProgram(ruleset.family, table.table, bytes: entry.bytes)
                program.id = entry.id ?? 0
                program.delta = entry.delta
                program.compareAll = change?.comparesAll ?? true
                if entry.delta != nil, table.table == .nat { program.stampRange = entry.range(of: Ownership.markMasq) }
                programs.append(program)
                self.encodedTables[key] = entry
            }
        }
        return programs
    }

    /// A declared table: stale service chains, declared chains and rules, deleted chains (and kube-proxy's own
    /// jumps into them, written before kube-natd took over), kube-natd's jumps, ensured rules.
    static func encode(_ table: TableRuleset, into program: inout TableProgram) throws(EncodingError) {
        try program.encode(table)
    }

    /// `--cleanup`: kube-proxy's jumps wherever they are (whoever wrote them), every jump kube-natd wrote itself
    /// (so kubelet's KUBE-FIREWALL jumps go only where kube-natd's layout wrote them), every service chain, the
    /// fixed chains and the canary, and the IPVS mode's chains and jumps (`ProxyModeLeftovers`). KUBE-FIREWALL, KUBE-MARK-DROP and ensured rules stay.
    static func encodeCleanup(_ table: Table, into program: inout TableProgram) throws(EncodingError) {
        for jump in ProxyModeLeftovers.cleanupJumps(table) {
            try program.deleteRule(in: jump.baseChain, jump.rule, table: table)
        }
        program.record(Int32(KNAT_OP_DELETE_OWN_JUMPS)) { _ in }
        for prefix in Ownership.servicePrefixes { program.stalePrefix(prefix) }
        for name in ProxyModeLeftovers.cleanupChains(table) { program.deleteChain(name) }
    }

    // MARK: - The call into the shim

    /// Where batches leave their stamp for stateless callers (`knft_stamp`): the one rule of nat KUBE-MARK-MASQ,
    /// which every layout declares in every family.
    static func stampChain(_ rulesets: [Ruleset]) -> knft_stamp? {
        for ruleset in rulesets {
            guard let chain = ruleset[.nat]?.chain(named: Ownership.markMasq), !chain.rules.isEmpty else { continue }
            return Self.stamp(ruleset.family)
        }
        return nil
    }

    static func stamp(_ family: IPFamily) -> knft_stamp {
        var stamp = knft_stamp()
        stamp.family = family.cValue
        withUnsafeMutableBytes(of: &stamp.table) { $0.copyBytes(from: Table.nat.rawValue.utf8) }
        withUnsafeMutableBytes(of: &stamp.chain) { $0.copyBytes(from: Ownership.markMasq.utf8) }
        return stamp
    }

    private func run(_ programs: [NftablesProgram], stamp: knft_stamp? = nil) throws -> ApplyReport {
        let context = try self.open()
        var result = knft_result()
        let flags = self.alwaysRead ? Int32(KNFT_APPLY_READ) : 0
        let rc = NftablesProgram.withDescriptors(programs) { descriptors, count in
            if var stamp {
                return knft_apply(context, descriptors, count, self.form.cValue, &stamp, self.maxAttempts, flags, &result)
            }
            return knft_apply(context, descriptors, count, self.form.cValue, nil, self.maxAttempts, flags, &result)
        }
        self.lastCallReadKernel = result.read_kernel != 0
        self.lastCallStampCurrent = result.stamp_current != 0
        var indexed = 0
        var planned = 0
        var incremental = result.ntables > 0
        withUnsafeBytes(of: result.tables) { raw in
            let reports = raw.bindMemory(to: knft_table_report.self)
            for i in 0..<min(Int(result.ntables), Int(KNFT_MAX_TABLES)) {
                indexed += Int(reports[i].chains_indexed)
                planned += Int(reports[i].chains_planned)
                incremental = incremental && reports[i].incremental != 0
            }
        }
        self.lastChainsIndexed = indexed
        self.lastChainsPlanned = planned
        self.lastPlanIncremental = incremental
        guard rc == 0 else { throw NftablesError(result) }
        return Self.report(result)
    }

    static func report(_ r: knft_result) -> ApplyReport {
        var report = ApplyReport()
        report.messages = Int(r.messages)
        report.batches = Int(r.batches)
        var tables = r.tables
        let count = min(Int(r.ntables), Int(KNFT_MAX_TABLES))
        withUnsafeBytes(of: &tables) { raw in
            let reports = raw.bindMemory(to: knft_table_report.self)
            for i in 0..<count {
                let t = reports[i]
                var table = ApplyReport.TableReport(
                    family: t.family == 6 ? .ipv6 : .ipv4, table: Table(rawValue: knftString(t.table)) ?? .filter)
                table.attempts = Int(r.attempts)
                table.chainsCreated = Int(t.chains_created)
                table.chainsFlushed = Int(t.chains_rewritten)
                table.chainsUnchanged = Int(t.chains_unchanged)
                table.chainsDeleted = Int(t.chains_deleted)
                table.rulesAppended = Int(t.rules_written + t.ensured_added)
                table.jumpsInserted = Int(t.jumps_inserted)
                table.rulesDeleted = Int(t.rules_deleted)
                table.committed = r.batches > 0 && t.messages > 0
                table.check = t.messages > 0 ? .differed : .unchanged
                report.tables.append(table)
            }
        }
        // One read, one decision and one batch serve every table: the times go on the first.
        if !report.tables.isEmpty {
            report.tables[0].initSeconds = r.read_seconds
            report.tables[0].buildSeconds = r.decide_seconds
            report.tables[0].commitSeconds = r.send_seconds
            report.tables[0].checkSeconds = r.read_seconds
        }
        if r.warnings > 0, !report.tables.isEmpty {
            report.tables[0].warnings.append("\(r.warnings) warning(s), last: \(knftString(r.message))")
        }
        return report
    }

    private func log(_ report: ApplyReport) {
        self.logger.debug(
            "nf_tables batch",
            metadata: [
                "messages": "\(report.messages)", "batches": "\(report.batches)",
                "attempts": "\(report.tables.first?.attempts ?? 0)",
                "read": "\(report.tables.first?.initSeconds ?? 0)", "send": "\(report.tables.first?.commitSeconds ?? 0)",
            ])
        for t in report.tables {
            for w in t.warnings {
                self.logger.warning("\(w)", metadata: ["family": "\(t.family.flagName)", "table": "\(t.table.rawValue)"])
            }
        }
    }
}
