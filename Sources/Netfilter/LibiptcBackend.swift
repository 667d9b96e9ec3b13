import CNetfilter
import Dispatch
import Foundation
import KubeModel
import Logging
import Ruleset

/// Writes each table with libiptc (libip4tc / libip6tc) in one locked read..commit.
///
/// For each table the shim compares what the kernel holds with the table's program once and writes only the
/// difference: declared chains are created, or flushed and refilled when their rules differ (a chain that already
/// holds exactly its rules is left alone, and a table that already holds its whole wanted state is not committed
/// at all), stale KUBE-SVC/SVL/EXT/FW/XLB/SEP-* chains and `deletedChains` are deleted, the base-chain jumps are
/// kept once each at the top of their base chain (upstream prepends them), foreign rules after them untouched, and
/// ensured rules are added where missing (right after the jumps in a base chain).
///
/// How the shim reads the table is only a cost choice, the decision is the same: a table whose program is the one
/// this backend last wrote there (or that it has not written yet, or that was read ahead) is read from its raw
/// entries, so a steady state costs neither iptc_init nor a commit; a changed program is read through iptc_init,
/// which the write needs anyway.
///
/// Each table's program is kept between applies, chain by chain (`EncodedTable`, as the nf_tables backend keeps
/// it): an apply told what changed (`RulesetChange`) re-encodes only the chains the change names, and knows
/// without reading the bytes whether the program is the one it wrote last. The table is still replaced whole
/// by `iptc_commit`: x_tables has no other way to change it.
public final class LibiptcBackend {
    /// Longest wait for /run/xtables.lock, in milliseconds (negative: forever).
    public var lockTimeoutMilliseconds: Int32
    /// init..commit rounds when commit returns EAGAIN because another writer replaced the table.
    public var maxAttempts: Int32
    /// One line per table written (debug), warnings (e.g. a stale chain kept) at warning level.
    public var logger: Logger
    /// Read from the raw entries when no change is expected (see above). Off: always through iptc_init.
    public var checkFirst = true
    /// Keep each table's encoding and re-encode only the chains a change names (see above). Off: every apply
    /// encodes every table whole (what every sync did before; for measurements and tests).
    public var keepsEncodings = true
    /// Test hook: declared chains the last apply encoded anew, and those it copied from the apply before.
    public private(set) var lastChainsEncoded = 0
    public private(set) var lastChainsReused = 0
    /// Each (family, table)'s last program, chain by chain, and the tables whose last apply of it succeeded.
    private var encoded: [String: EncodedTable] = [:]
    var applied: Set<String> = []
    /// Snapshots taken ahead (`usePrefetched`), each used by the next apply of its table.
    private var prefetched: [String: TableSnapshot] = [:]
    /// A read ahead started by `prefetch(families:)`, handed over at the next apply.
    var pendingPrefetch: TablePrefetch?

    public init(
        lockTimeoutMilliseconds: Int32 = 5000, maxAttempts: Int32 = 5,
        logger: Logger = Logger(label: "kube-natd.netfilter")
    ) {
        self.lockTimeoutMilliseconds = lockTimeoutMilliseconds
        self.maxAttempts = maxAttempts
        self.logger = logger
    }

    /// Applies one family's ruleset, one commit per table (every table encoded whole).
    public func apply(_ ruleset: Ruleset) throws -> ApplyReport {
        try self.apply(ruleset, change: nil)
    }

    /// Applies one family's ruleset, one commit per table, re-encoding only the chains `change` names when this
    /// object's kept encoding of a table is the change's base (a full sync's change too: the shim compares every
    /// table with the kernel on every apply, so `RulesetChange.full` changes nothing here).
    public func apply(_ ruleset: Ruleset, change: RulesetChange?) throws -> ApplyReport {
        var report = ApplyReport()
        if let p = self.pendingPrefetch {
            self.pendingPrefetch = nil
            for (family, snapshots) in p.wait() { self.usePrefetched(snapshots, family: family) }
        }
        self.lastChainsEncoded = 0
        self.lastChainsReused = 0
        for table in ruleset.tables {
            let key = Self.key(ruleset.family, table.table)
            let started = DispatchTime.now().uptimeNanoseconds
            let same = try self.encode(table, family: ruleset.family, key: key, change: change)
            let snapshot = self.prefetched.removeValue(forKey: key)
            // a program unlike the one written last goes straight to iptc_init (unless the table was read ahead)
            let check = self.checkFirst && (snapshot != nil || same != false)
            let encoded = DispatchTime.now().uptimeNanoseconds
            self.applied.remove(key)
            var r = try self.encoded[key]!.bytes.withUnsafeBufferPointer { bytes in
                try Self.run(
                    bytes, family: ruleset.family, table: table.table,
                    lockTimeout: self.lockTimeoutMilliseconds, attempts: self.maxAttempts, check: check,
                    snapshot: snapshot)
            }
            self.applied.insert(key)
            r.encodeSeconds = Double(encoded - started) / 1e9
            self.log(r, family: ruleset.family)
            report.tables.append(r)
        }
        return report
    }

    /// Makes `encoded[key]` the program of `table`: patched when `change` starts from the kept encoding, else
    /// encoded whole. Returns whether it is the program this object last applied to that table: true or false
    /// when known, nil when nothing was applied there yet (or the last apply failed).
    func encode(_ table: TableRuleset, family: IPFamily, key: String, change: RulesetChange?) throws -> Bool? {
        // taken out of the dictionary so that its bytes are not shared and are patched in place
        var entry = self.encoded.removeValue(forKey: key)
        let wasApplied = entry != nil && self.applied.contains(key)
        do {
            if self.keepsEncodings, var kept = entry, let change, change.family == family, !change.isEverything,
               kept.id != nil, kept.id == change.base
            {
                entry = nil
                let touched = change.touched[table.table] ?? []
                // a copy of the (small) tail, not a slice: a slice would share the buffer the patch then copies
                let oldTail = touched.isEmpty ? Array(kept.bytes[kept.chainsEnd...]) : []
                try kept.patch(family, table, id: change.id, touched: touched,
                               encodedCount: &self.lastChainsEncoded, reusedCount: &self.lastChainsReused)
                self.encoded[key] = kept
                guard wasApplied else { return nil }
                // no chain touched: only the tail (jumps, ensured rules, deleted chains) can differ
                return touched.isEmpty && kept.bytes[kept.chainsEnd...].elementsEqual(oldTail)
            }
            let fresh = try EncodedTable(
                family, table, id: self.keepsEncodings ? change?.id : nil, encodedCount: &self.lastChainsEncoded)
            self.encoded[key] = fresh
            guard wasApplied, let entry else { return nil }
            return fresh.bytes == entry.bytes
        } catch {
            throw NetfilterError.encoding(error)
        }
    }

    /// The program kept for a table (what its last apply handed the shim).
    func program(_ family: IPFamily, _ table: Table) -> [UInt8]? {
        self.encoded[Self.key(family, table)]?.bytes
    }

    static func key(_ family: IPFamily, _ table: Table) -> String { "\(family.rawValue)/\(table.rawValue)" }

    /// Reads the tables' entries now (e.g. on another thread while the cluster state is still being decoded), for
    /// the next apply's check. The apply reads again when a table's size or entry count changed in between; a
    /// same-size replacement in that window is not seen (as a change just after the apply would not be).
    public static func takeSnapshots(family: IPFamily, tables: [Table], lockTimeoutMilliseconds: Int32 = 5000)
        -> [Table: TableSnapshot]
    {
        var out: [Table: TableSnapshot] = [:]
        for table in tables {
            var result = knat_result()
            var snapshot: OpaquePointer?
            if knat_snapshot_take(family == .ipv4 ? 4 : 6, table.rawValue, lockTimeoutMilliseconds, &snapshot, &result)
                == 0, let snapshot
            {
                out[table] = TableSnapshot(snapshot)
            }
        }
        return out
    }

    /// Hands snapshots from `takeSnapshots` to the next apply of each table.
    public func usePrefetched(_ snapshots: [Table: TableSnapshot], family: IPFamily) {
        for (table, s) in snapshots { self.prefetched[Self.key(family, table)] = s }
    }

    /// Creates the empty `KUBE-PROXY-CANARY` chain in each table if it is missing (the monitor's canary).
    public func createCanaries(family: IPFamily, tables: [Table] = Ownership.canaryTables) throws -> ApplyReport {
        var report = ApplyReport()
        for table in tables {
            var program = TableProgram(family: family, capacity: 64)
            program.ensureChain(Ownership.canary)
            report.tables.append(
                try Self.run(
                    program, family: family, table: table,
                    lockTimeout: self.lockTimeoutMilliseconds, attempts: self.maxAttempts))
        }
        return report
    }

    private func log(_ r: ApplyReport.TableReport, family: IPFamily) {
        self.logger.debug(
            "wrote table",
            metadata: [
                "family": "\(family.flagName)", "table": "\(r.table.rawValue)", "rules": "\(r.rulesAppended)", "chainsFlushed": "\(r.chainsFlushed)", "chainsUnchanged": "\(r.chainsUnchanged)",
                "chainsDeleted": "\(r.chainsDeleted)", "attempts": "\(r.attempts)",
                "lockWait": "\(r.lockWaitSeconds)", "init": "\(r.initSeconds)", "build": "\(r.buildSeconds)",
                "commit": "\(r.committed ? "\(r.commitSeconds)" : "skipped")",
                "check": "\(r.check == .none ? "none" : "\(r.check == .unchanged ? "unchanged" : "differed") \(r.checkSeconds)")",
            ])
        for w in r.warnings {
            self.logger.warning("\(w)", metadata: ["family": "\(family.flagName)", "table": "\(r.table.rawValue)"])
        }
    }

    static func encode(_ table: TableRuleset, into program: inout TableProgram) throws(EncodingError) {
        try program.encode(table)
    }

    static func run(
        _ program: TableProgram, family: IPFamily, table: Table, lockTimeout: Int32, attempts: Int32,
        check: Bool = false, snapshot: TableSnapshot? = nil
    ) throws -> ApplyReport.TableReport {
        try program.bytes.withUnsafeBufferPointer { bytes in
            try Self.run(bytes, family: family, table: table, lockTimeout: lockTimeout, attempts: attempts,
                         check: check, snapshot: snapshot)
        }
    }

    static func run(
        _ program: UnsafeBufferPointer<UInt8>, family: IPFamily, table: Table, lockTimeout: Int32, attempts: Int32,
        check: Bool = false, snapshot: TableSnapshot? = nil
    ) throws -> ApplyReport.TableReport {
        var result = knat_result()
        let rc = knat_apply_table(
            family == .ipv4 ? 4 : 6, table.rawValue, program.baseAddress, program.count,
            lockTimeout, attempts, check ? Int32(KNAT_APPLY_CHECK_FIRST) : 0, snapshot?.pointer, &result)
        withExtendedLifetime(snapshot) {}
        let message = result.text
        if rc != 0 {
            throw NetfilterError.libiptc(family: family, table: table, errno: rc, message: message)
        }
        var r = ApplyReport.TableReport(family: family, table: table)
        r.attempts = Int(result.attempts)
        r.lockWaitSeconds = result.lock_wait_seconds
        r.initSeconds = result.init_seconds
        r.buildSeconds = result.build_seconds
        r.commitSeconds = result.commit_seconds
        r.chainsCreated = Int(result.chains_created)
        r.chainsFlushed = Int(result.chains_flushed)
        r.chainsUnchanged = Int(result.chains_unchanged)
        r.committed = result.committed != 0
        r.check = ApplyReport.Check(rawValue: Int(result.checked)) ?? .none
        r.checkSeconds = result.check_seconds
        r.chainsDeleted = Int(result.chains_deleted)
        r.rulesAppended = Int(result.rules_appended)
        r.jumpsInserted = Int(result.jumps_inserted)
        r.rulesDeleted = Int(result.rules_deleted)
        if result.warnings > 0 { r.warnings.append("\(result.warnings) warning(s), last: \(message)") }
        return r
    }
}

/// A table's entries read once ahead of an apply (see `LibiptcBackend.takeSnapshots`); freed with the object.
public final class TableSnapshot: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { knat_snapshot_free(self.pointer) }
}

/// One chain as the kernel holds it, for drift detection.
public struct ChainSnapshot: Hashable, Sendable {
    public var name: String
    public var isBuiltin: Bool
    public var ruleCount: Int
    /// FNV-1a over every rule's header, matches and target bytes (not counters).
    public var digest: UInt64
}

/// Reads tables back (raw entries, or libiptc's cache for a layout libiptc would not write).
public enum TableReader {
    /// Every chain of the table with its rule count and digest, in libiptc's order.
    public static func chains(family: IPFamily, table: Table, lockTimeoutMilliseconds: Int32 = 5000) throws
        -> [ChainSnapshot]
    {
        try Self.collect(family: family, table: table) { list, result in
            knat_list_table(family == .ipv4 ? 4 : 6, table.rawValue, lockTimeoutMilliseconds, list, result)
        }
    }

    /// What `chains` will report for each chain the table ruleset declares once it is applied, computed from
    /// the ruleset alone (same encoding, same digest). Differences from `chains` are drift.
    public static func expectedChains(family: IPFamily, table: TableRuleset) throws -> [ChainSnapshot] {
        var program = TableProgram(family: family)
        do {
            try LibiptcBackend.encode(table, into: &program)
        } catch {
            throw NetfilterError.encoding(error)
        }
        return try program.bytes.withUnsafeBufferPointer { bytes in
            try Self.collect(family: family, table: table.table) { list, result in
                knat_digest_program(family == .ipv4 ? 4 : 6, bytes.baseAddress, bytes.count, list, result)
            }
        }
    }

    /// Calls a C lister and copies the chains it returns.
    private static func collect(
        family: IPFamily, table: Table,
        _ body: (UnsafeMutablePointer<knat_chain_list>, UnsafeMutablePointer<knat_result>) -> Int32
    ) throws -> [ChainSnapshot] {
        var result = knat_result()
        var list = knat_chain_list()
        let rc = body(&list, &result)
        defer { knat_chain_list_free(&list) }
        guard rc == 0 else {
            throw NetfilterError.libiptc(family: family, table: table, errno: rc, message: result.text)
        }
        return UnsafeBufferPointer(start: list.chains, count: list.count).map { c in
            var c = c
            let name = withUnsafeBytes(of: &c.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return ChainSnapshot(name: name, isBuiltin: c.builtin != 0, ruleCount: Int(c.rules), digest: c.digest)
        }
    }
}

extension knat_result {
    /// The C message buffer as a String.
    var text: String {
        var message = self.message
        return withUnsafeBytes(of: &message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}

/// `LibiptcBackend.takeSnapshots` for several families on a background thread; `wait` hands them over.
public final class TablePrefetch: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var snapshots: [IPFamily: [Table: TableSnapshot]] = [:]
    /// How long the reads took (valid after `wait`).
    public private(set) var seconds = 0.0

    public init(families: [IPFamily], tables: [Table], lockTimeoutMilliseconds: Int32 = 5000) {
        Thread.detachNewThread { [self] in
            let started = DispatchTime.now().uptimeNanoseconds
            for family in families {
                self.snapshots[family] = LibiptcBackend.takeSnapshots(
                    family: family, tables: tables, lockTimeoutMilliseconds: lockTimeoutMilliseconds)
            }
            self.seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            self.done.signal()
        }
    }

    /// Blocks until the reads are done. Call once.
    public func wait() -> [IPFamily: [Table: TableSnapshot]] {
        self.done.wait()
        return self.snapshots
    }
}
