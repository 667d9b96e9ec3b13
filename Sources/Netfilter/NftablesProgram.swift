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
                descriptors.append(d)
                return next(i + 1)
            }
        }
        return next(0)
    }
}

extension IPFamily {
    var cValue: Int32 { self == .ipv4 ? 4 : 6 }
}

/// One (family, table)'s last program, with where each declared chain's records are in it, so that the next
/// apply of a ruleset derived from it (`RulesetChange`) copies the records of unchanged chains instead of
/// encoding them again.
struct EncodedTable {
    /// The ruleset these bytes encode (`RulesetChange.id`); nil: applied without a change, reused by nothing.
    var id: UInt64?
    var bytes: [UInt8]
    var names: [String]
    /// Each chain's records: `bytes[starts[i]..<ends[i]]`.
    var starts: [Int]
    var ends: [Int]

    /// Encodes `table` (`TableProgram.encode`'s records, in its order), copying from `previous` each chain
    /// that `touched` does not name and that `previous` holds at the same place in the chain order; the
    /// chains encoded anew are added to `encodedCount`, the copied ones to `reusedCount`.
    init(_ family: IPFamily, _ table: TableRuleset, id: UInt64?, previous: EncodedTable?, touched: Set<String>,
         encodedCount: inout Int, reusedCount: inout Int) throws(EncodingError) {
        var program = TableProgram(family: family, capacity: previous.map { $0.bytes.count + 4096 } ?? 1 << 16)
        var names: [String] = []
        var starts: [Int] = []
        var ends: [Int] = []
        names.reserveCapacity(table.chains.count)
        starts.reserveCapacity(table.chains.count)
        ends.reserveCapacity(table.chains.count)
        program.encodeHead()
        var i = 0
        for chain in table.chains {
            let start = program.bytes.count
            var reused = false
            if let previous, !touched.contains(chain.name) {
                // chains removed or rewritten since: not in the same place any more
                while i < previous.names.count, touched.contains(previous.names[i]) { i += 1 }
                if i < previous.names.count, previous.names[i] == chain.name {
                    program.bytes.append(contentsOf: previous.bytes[previous.starts[i]..<previous.ends[i]])
                    i += 1
                    reused = true
                }
            }
            if reused {
                reusedCount += 1
            } else {
                try program.encodeChain(chain, table: table.table)
                encodedCount += 1
            }
            names.append(chain.name)
            starts.append(start)
            ends.append(program.bytes.count)
        }
        try program.encodeTail(table, dropJumpsIntoDeleted: true)
        self.id = id
        self.bytes = program.bytes
        self.names = names
        self.starts = starts
        self.ends = ends
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
