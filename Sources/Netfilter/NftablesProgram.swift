import CNftables
import CRuleProgram
import Dispatch
import Foundation
import KubeModel
import Ruleset

// The pieces NftablesBackend hands to the shim: encoded programs, a read ahead, errors, C-string helpers.

/// A read of filter and nat of each family in a context of its own, on its own thread (see `prefetch`).
final class NftablesPrefetch: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var context: OpaquePointer?

    init(families: [IPFamily]) {
        Thread.detachNewThread { [self] in
            var result = knft_result()
            if let c = knft_open(&result) {
                let pairs = families.flatMap { f in [Table.filter, .nat].map { (f, $0) } }
                var fams = pairs.map { $0.0.cValue }
                var stamp = NftablesBackend.stamp(families[0])
                let rc = withKnftStrings(pairs.map { $0.1.rawValue }) { tables in
                    knft_prefetch(c, &fams, tables.baseAddress, tables.count, &stamp, &result)
                }
                // a failed read leaves no model: the apply reads (and reports) itself
                if rc != 0 { knft_forget(c) }
                self.context = c
            }
            self.done.signal()
        }
    }

    /// Blocks until the read is done; the caller owns the context. Call once.
    func wait() -> OpaquePointer? {
        self.done.wait()
        return self.context
    }
}

/// A failure of the nf_tables shim: the errno and where (family, table, chain, rule) and why.
public struct NftablesError: Error, CustomStringConvertible, Sendable {
    public var errno: Int32
    public var message: String

    init(_ result: knft_result) {
        self.errno = result.error
        self.message = knftString(result.message)
    }

    public var description: String { "nf_tables: \(self.message) (errno \(self.errno))" }
}

/// One (family, table) program, encoded.
struct NftablesProgram {
    var family: IPFamily
    var table: Table
    var bytes: [UInt8]
    /// Names these bytes for a later change (0: none).
    var id: UInt64 = 0
    /// How the bytes differ from an earlier program the shim may still hold (`knft_program`'s base and ranges).
    var delta: EncodedTable.Delta?
    /// Where the stamp's chain is in the bytes, when the program is patched (the shim parses nothing else of it).
    var stampRange: Range<Int>?
    /// A full sync: the shim compares every chain with the kernel; `delta` then only spares it re-hashing them.
    var compareAll = false

    init(_ family: IPFamily, _ table: Table, _ fill: (inout TableProgram) throws -> Void) throws {
        var program = TableProgram(family: family, capacity: 4096)
        do {
            try fill(&program)
        } catch let error as EncodingError {
            throw NetfilterError.encoding(error)
        }
        self.family = family
        self.table = table
        self.bytes = program.bytes
    }

    init(_ family: IPFamily, _ table: Table, bytes: [UInt8]) {
        self.family = family
        self.table = table
        self.bytes = bytes
    }

    /// The C descriptors of the programs, valid inside `body`. Each points into its program's own bytes (no
    /// copy of the whole ruleset: unchanged tables are the encodings the backend keeps between applies).
    static func withDescriptors<R>(_ programs: [NftablesProgram], _ body: (UnsafePointer<knft_program>?, Int) -> R) -> R {
        var descriptors: [knft_program] = []
        descriptors.reserveCapacity(programs.count)
        func next(_ i: Int) -> R {
            guard i < programs.count else {
                return descriptors.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
            }
            let p = programs[i]
            return p.bytes.withUnsafeBufferPointer { bytes in
                var d = knft_program()
                d.family = p.family.cValue
                withUnsafeMutableBytes(of: &d.table) { $0.copyBytes(from: p.table.rawValue.utf8.prefix(15)) }
                d.bytes = bytes.baseAddress
                d.length = bytes.count
                d.id = p.id
                d.compare_all = p.compareAll ? 1 : 0
                guard let delta = p.delta else {
                    descriptors.append(d)
                    return next(i + 1)
                }
                d.base = delta.base
                d.chains_start = delta.chainsStart
                d.chains_end = delta.chainsEnd
                if let r = p.stampRange {
                    d.stamp_offset = r.lowerBound
                    d.stamp_length = r.count
                }
                let names = delta.changed.map(\.name) + delta.removed
                return withKnftStrings(names) { cnames in
                    var ranges: [knft_chain_range] = []
                    ranges.reserveCapacity(names.count)
                    for (k, c) in delta.changed.enumerated() {
                        ranges.append(knft_chain_range(name: cnames[k], offset: c.range.lowerBound, length: c.range.count))
                    }
                    for k in delta.changed.count..<names.count {
                        ranges.append(knft_chain_range(name: cnames[k], offset: 0, length: 0))
                    }
                    return ranges.withUnsafeBufferPointer { r in
                        d.changed = r.baseAddress
                        d.nchanged = r.count
                        descriptors.append(d)
                        return next(i + 1)
                    }
                }
            }
        }
        return next(0)
    }
}

extension IPFamily {
    var cValue: Int32 { self == .ipv4 ? 4 : 6 }
}

/// One (family, table)'s last program, with where each declared chain's records are in it, so that the next
/// apply of a ruleset derived from it (`RulesetChange`) patches the bytes in place: only the chains the change
/// names are encoded again, and only the part of the program between the first and the last of them moves.
/// A new buffer for the whole program would cost more than the encoding (every page of it faulted in again).
struct EncodedTable {
    /// The ruleset these bytes encode (`RulesetChange.id`); nil: applied without a change, reused by nothing.
    var id: UInt64?
    var bytes: [UInt8]
    var names: [String]
    /// Each chain's records: `bytes[starts[i]..<ends[i]]`.
    var starts: [Int]
    var ends: [Int]
    /// Where the chains end and the tail (deleted chains, jumps, ensured rules) begins.
    var chainsEnd: Int
    /// How these bytes differ from the program `id` named before the last `patch` (nil: encoded whole).
    var delta: Delta?

    /// The chains a patch encoded anew (with where they are now) and those it dropped, against program `base`.
    struct Delta {
        var base: UInt64
        var changed: [(name: String, range: Range<Int>)]
        var removed: [String]
        var chainsStart: Int
        var chainsEnd: Int
    }

    /// Where chain `name`'s records are (a linear search: used for the stamp's chain, one of the first).
    func range(of name: String) -> Range<Int>? {
        guard let i = self.names.firstIndex(of: name) else { return nil }
        return self.starts[i]..<self.ends[i]
    }

    /// Encodes `table` whole (`TableProgram.encode`'s records, in its order).
    init(_ family: IPFamily, _ table: TableRuleset, id: UInt64?, encodedCount: inout Int) throws(EncodingError) {
        var program = TableProgram(family: family, capacity: 1 << 16)
        var starts: [Int] = []
        var ends: [Int] = []
        starts.reserveCapacity(table.chains.count)
        ends.reserveCapacity(table.chains.count)
        program.encodeHead()
        for chain in table.chains {
            starts.append(program.bytes.count)
            try program.encodeChain(chain, table: table.table)
            ends.append(program.bytes.count)
        }
        encodedCount += table.chains.count
        self.chainsEnd = program.bytes.count
        try program.encodeTail(table)
        self.id = id
        self.bytes = program.bytes
        self.names = table.chains.map(\.name)
        self.starts = starts
        self.ends = ends
        self.delta = nil
    }

    /// Makes this the encoding of `table`, which differs from the table it encodes only in the chains `touched`
    /// names: the unchanged chains before the first and after the last named one stay where they are, the part
    /// between is encoded again (copying the unchanged chains in it), the tail is encoded again. The bytes
    /// equal a whole encode of `table`; when the chains are not as `touched` says (a chain moved), more of
    /// them are encoded again, never fewer.
    mutating func patch(_ family: IPFamily, _ table: TableRuleset, id: UInt64?, touched: Set<String>,
                        encodedCount: inout Int, reusedCount: inout Int) throws(EncodingError) {
        let new = table.chains
        let n = new.count
        let m = self.names.count
        var p = 0
        while p < n, p < m, new[p].name == self.names[p], !touched.contains(new[p].name) { p += 1 }
        var s = 0
        while s < n - p, s < m - p, new[n - 1 - s].name == self.names[m - 1 - s],
              !touched.contains(new[n - 1 - s].name) { s += 1 }
        func startOf(_ k: Int) -> Int { k < m ? self.starts[k] : self.chainsEnd }
        let oldLo = startOf(p)
        let oldHi = startOf(m - s)
        // the middle: unchanged chains in it are copied from where they are now
        var reusable: [String: Int] = [:]
        for i in p..<(m - s) where !touched.contains(self.names[i]) { reusable[self.names[i]] = i }
        var middle = TableProgram(family: family, capacity: max(256, oldHi - oldLo + 256))
        var names: [String] = []
        var starts: [Int] = []
        var ends: [Int] = []
        var changed: [(name: String, range: Range<Int>)] = []
        for chain in new[p..<(n - s)] {
            starts.append(oldLo + middle.bytes.count)
            if !touched.contains(chain.name), let i = reusable[chain.name] {
                middle.bytes.append(contentsOf: self.bytes[self.starts[i]..<self.ends[i]])
                reusedCount += 1
            } else {
                try middle.encodeChain(chain, table: table.table)
                encodedCount += 1
                changed.append((chain.name, starts[starts.count - 1]..<(oldLo + middle.bytes.count)))
            }
            ends.append(oldLo + middle.bytes.count)
            names.append(chain.name)
        }
        // the chains the middle held before and holds no more (removed, or moved out of it: then encoded anew)
        let kept = Set(names)
        let removed = self.names[p..<(m - s)].filter { !kept.contains($0) }
        reusedCount += p + s
        var tail = TableProgram(family: family, capacity: 4096)
        try tail.encodeTail(table)
        // the tail first: replacing it does not move the middle
        self.bytes.replaceSubrange(self.chainsEnd..<self.bytes.count, with: tail.bytes)
        self.bytes.replaceSubrange(oldLo..<oldHi, with: middle.bytes)
        let delta = middle.bytes.count - (oldHi - oldLo)
        self.names.replaceSubrange(p..<(m - s), with: names)
        self.starts.replaceSubrange(p..<(m - s), with: starts)
        self.ends.replaceSubrange(p..<(m - s), with: ends)
        if delta != 0 {
            for k in (p + names.count)..<self.starts.count {
                self.starts[k] += delta
                self.ends[k] += delta
            }
        }
        self.chainsEnd += delta
        let chainsStart = self.starts.first ?? self.chainsEnd
        // the shim needs a base only when both programs are named
        if let base = self.id, id != nil {
            self.delta = Delta(base: base, changed: changed, removed: removed, chainsStart: chainsStart,
                               chainsEnd: self.chainsEnd)
        } else {
            self.delta = nil
        }
        self.id = id
    }
}

/// A fixed-size C char array as a String.
func knftString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}

/// C string arrays for the duration of `body`.
func withKnftStrings<R>(_ strings: [String], _ body: (UnsafeBufferPointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let pointers = copies.map { UnsafePointer($0) }
    return pointers.withUnsafeBufferPointer { body($0) }
}
