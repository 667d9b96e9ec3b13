import Foundation

/// Parses JSON text into the `JSONValue` tree `ObjectDecoder` reads: `.int` for integers that fit, `.double` for
/// every other number.
///
/// Foundation's `JSONSerialization` builds Foundation objects and bridges them back (about half of a 10k-Service
/// manifest load); this builds typed Swift values directly in one pass over the bytes.
public enum JSONTree {
    /// Why the text is not JSON, with the line and column (1-based) where that became clear.
    public struct SyntaxError: Error, CustomStringConvertible, Equatable {
        public var message: String
        public var line: Int
        public var column: Int
        public var description: String { "\(message) at line \(line), column \(column)" }
    }

    /// Nesting deeper than this is refused rather than risking the stack (Kubernetes objects nest ~10 deep).
    public static let maxDepth = 256

    public static func parse(_ data: Data) throws(SyntaxError) -> JSONValue {
        let result: Result<JSONValue, SyntaxError> = data.withUnsafeBytes { raw in
            var p = Parser(bytes: raw.bindMemory(to: UInt8.self))
            do throws(SyntaxError) {
                p.skipSpace()
                let v = try p.value(depth: 0)
                p.skipSpace()
                if p.i != p.bytes.count { throw p.fail("unexpected data after the JSON value") }
                return .success(v)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    public static func parse(_ bytes: [UInt8]) throws(SyntaxError) -> JSONValue { try parse(Data(bytes)) }

    /// Like `parse`, but when the text is an object with an `items` list (a `List`), each item is handed to
    /// `onItem` as soon as it is parsed, with its index and the object's other keys read so far, instead of being
    /// kept: a 10k-Service list is never held as one tree. The returned object has no `items` key then, and
    /// `streamed` says so.
    public static func parse(
        _ data: Data, streamingItems onItem: (_ item: JSONValue, _ index: Int, _ top: JSONObject) -> Void
    ) throws(SyntaxError) -> (tree: JSONValue, streamed: Bool) {
        // The parser keeps the hook in an optional (hence escaping) closure; it never outlives this call.
        let result: Result<(JSONValue, Bool), SyntaxError> = withoutActuallyEscaping(onItem) { onItem in data.withUnsafeBytes { raw in
            var p = Parser(bytes: raw.bindMemory(to: UInt8.self))
            do throws(SyntaxError) {
                p.skipSpace()
                let v: JSONValue
                var streamed = false
                if p.i < p.bytes.count, p.bytes[p.i] == UInt8(ascii: "{") {
                    v = .object(
                        try p.object(depth: 1) { (parser: inout Parser, top: JSONObject) throws(SyntaxError) in
                            streamed = true
                            try parser.streamArray(depth: 2) { _, item, index in onItem(item, index, top) }
                        })
                } else {
                    v = try p.value(depth: 0)
                }
                p.skipSpace()
                if p.i != p.bytes.count { throw p.fail("unexpected data after the JSON value") }
                return .success((v, streamed))
            } catch {
                return .failure(error)
            }
        } }
        let (tree, streamed) = try result.get()
        return (tree, streamed)
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var i = 0
        /// Members and elements of the objects and lists being parsed, innermost last. Each container collects
        /// here and takes an exactly sized array at its end: no regrowth per container, and the stacks' storage
        /// is reused by every container after the first.
        /// Keys seen before, by a hash of their bytes; the first key to land in a slot keeps it.
        var keyCache = [(bytes: [UInt8], key: String)?](repeating: nil, count: Parser.cachedKeys)
        let members = PendingStack<JSONObject.Member>()
        let elements = PendingStack<JSONValue>()

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        func fail(_ message: String) -> SyntaxError {
            var line = 1, column = 1
            for k in 0..<min(i, bytes.count) {
                if bytes[k] == 0x0A { line += 1; column = 1 } else { column += 1 }
            }
            return SyntaxError(message: message, line: line, column: column)
        }

        mutating func skipSpace() {
            while i < bytes.count {
                switch bytes[i] {
                case 0x20, 0x0A, 0x0D, 0x09: i += 1
                default: return
                }
            }
        }

        mutating func value(depth: Int) throws(SyntaxError) -> JSONValue {
            guard i < bytes.count else { throw fail("unexpected end of text") }
            switch bytes[i] {
            case UInt8(ascii: "{"): return .object(try object(depth: depth + 1))
            case UInt8(ascii: "["): return .array(try array(depth: depth + 1))
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: throw fail("unexpected character '\(Character(Unicode.Scalar(bytes[i])))'")
            }
        }

        mutating func literal(_ word: StaticString) throws(SyntaxError) {
            let n = word.utf8CodeUnitCount
            guard i + n <= bytes.count, memcmp(bytes.baseAddress! + i, word.utf8Start, n) == 0 else {
                throw fail("invalid literal")
            }
            i += n
        }

        /// An object; with `items`, a top-level `items` list is not stored but handed to it (positioned at the
        /// value, which it must consume) when the value is a list. A repeated key is kept as written; lookup
        /// takes its last value (see `JSONObject`).
        mutating func object(
            depth: Int, items: ((_ parser: inout Parser, _ top: JSONObject) throws(SyntaxError) -> Void)? = nil
        ) throws(SyntaxError) -> JSONObject {
            guard depth <= JSONTree.maxDepth else { throw fail("nested deeper than \(JSONTree.maxDepth) levels") }
            i += 1
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return JSONObject() }
            let base = members.count
            while true {
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let key = try self.key()
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':' after a key") }
                i += 1
                skipSpace()
                if let items, key == "items", i < bytes.count, bytes[i] == UInt8(ascii: "[") {
                    try items(&self, JSONObject(members: members.copy(from: base)))
                } else {
                    let v = try value(depth: depth)
                    members.push(JSONObject.Member(key: key, value: v))
                }
                skipSpace()
                guard i < bytes.count else { throw fail("unexpected end of text in an object") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") {
                    i += 1
                    return JSONObject(members: members.pop(from: base))
                }
                throw fail("expected ',' or '}' in an object")
            }
        }

        mutating func array(depth: Int) throws(SyntaxError) -> [JSONValue] {
            let base = elements.count
            try streamArray(depth: depth) { parser, item, _ in parser.elements.push(item) }
            return elements.pop(from: base)
        }

        /// A list whose elements go to `body` one by one (with the parser, to collect them on its stack) instead
        /// of into an array.
        mutating func streamArray(depth: Int, _ body: (inout Parser, JSONValue, Int) -> Void) throws(SyntaxError) {
            guard depth <= JSONTree.maxDepth else { throw fail("nested deeper than \(JSONTree.maxDepth) levels") }
            i += 1
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return }
            var index = 0
            while true {
                skipSpace()
                let v = try value(depth: depth)
                body(&self, v, index)
                index += 1
                skipSpace()
                guard i < bytes.count else { throw fail("unexpected end of text in a list") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return }
                throw fail("expected ',' or ']' in a list")
            }
        }

        /// An object key. Kubernetes objects repeat a few dozen keys thousands of times: a short ASCII key without
        /// escapes is looked up among the keys seen before and that String reused, instead of building it (and,
        /// past 15 bytes, allocating it) again.
        mutating func key() throws(SyntaxError) -> String {
            let start = i + 1
            var k = start
            var hash = 0
            while k < bytes.count, k - start <= Self.cachedKeyLength {
                let c = bytes[k]
                if c == UInt8(ascii: "\"") { break }
                if c == UInt8(ascii: "\\") || c < 0x20 || c >= 0x80 { return try string() }
                hash = hash &* 31 &+ Int(c)
                k += 1
            }
            guard k < bytes.count, bytes[k] == UInt8(ascii: "\""), k - start <= Self.cachedKeyLength else {
                return try string()
            }
            let n = k - start
            let slot = hash & (Self.cachedKeys - 1)
            if let entry = keyCache[slot], entry.bytes.count == n,
                entry.bytes.withUnsafeBufferPointer({ memcmp($0.baseAddress!, bytes.baseAddress! + start, n) }) == 0
            {
                i = k + 1
                return entry.key
            }
            let key = try string()
            if keyCache[slot] == nil, n > 0 { keyCache[slot] = (Array(bytes[start..<k]), key) }
            return key
        }

        static let cachedKeys = 256
        static let cachedKeyLength = 40

        mutating func string() throws(SyntaxError) -> String {
            i += 1
            let start = i
            // Fast path: no escapes; ASCII text (nearly every Kubernetes string) needs no UTF-8 validation.
            var high: UInt8 = 0
            while i < bytes.count, bytes[i] != UInt8(ascii: "\""), bytes[i] != UInt8(ascii: "\\"), bytes[i] >= 0x20 {
                high |= bytes[i]
                i += 1
            }
            guard i < bytes.count else { throw fail("unterminated string") }
            if bytes[i] == UInt8(ascii: "\"") {
                let s: String
                if high < 0x80 {
                    let n = i - start
                    let base = bytes.baseAddress! + start
                    s = String(unsafeUninitializedCapacity: n) { out in
                        _ = out.initialize(from: UnsafeBufferPointer(start: base, count: n))
                        return n
                    }
                } else {
                    s = try utf8(start..<i)
                }
                i += 1
                return s
            }
            var buf = Array(bytes[start..<i])
            while i < bytes.count {
                let c = bytes[i]
                if c == UInt8(ascii: "\"") {
                    i += 1
                    return try utf8(buf)
                }
                if c < 0x20 { throw fail("control character in a string") }
                if c != UInt8(ascii: "\\") {
                    buf.append(c)
                    i += 1
                    continue
                }
                i += 1
                guard i < bytes.count else { break }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): buf.append(e)
                case UInt8(ascii: "b"): buf.append(0x08)
                case UInt8(ascii: "f"): buf.append(0x0C)
                case UInt8(ascii: "n"): buf.append(0x0A)
                case UInt8(ascii: "r"): buf.append(0x0D)
                case UInt8(ascii: "t"): buf.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u")
                        else { throw fail("unpaired surrogate in \\u escape") }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate in \\u escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw fail("unpaired surrogate in \\u escape")
                    }
                    buf.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
                default: throw fail("invalid escape '\\\(Character(Unicode.Scalar(e)))'")
                }
            }
            throw fail("unterminated string")
        }

        mutating func hex4() throws(SyntaxError) -> UInt32 {
            guard i + 4 <= bytes.count else { throw fail("short \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[i]
                let d: UInt32
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
                default: throw fail("bad hex digit in \\u escape")
                }
                v = v << 4 | d
                i += 1
            }
            return v
        }

        func utf8(_ r: Range<Int>) throws(SyntaxError) -> String {
            guard let s = String(validating: UnsafeBufferPointer(rebasing: bytes[r]), as: UTF8.self) else {
                throw fail("invalid UTF-8 in a string")
            }
            return s
        }

        func utf8(_ b: [UInt8]) throws(SyntaxError) -> String {
            guard let s = String(validating: b, as: UTF8.self) else { throw fail("invalid UTF-8 in a string") }
            return s
        }

        /// RFC 8259 number syntax; an integer that fits is an `.int`, anything else a `.double`.
        mutating func number() throws(SyntaxError) -> JSONValue {
            let start = i
            let negative = bytes[i] == UInt8(ascii: "-")
            if negative { i += 1 }
            guard i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) else {
                throw fail("invalid number")
            }
            // The integer is accumulated negated, so Int.min fits too; `fits` goes false on overflow.
            var n = 0
            var fits = true
            if bytes[i] == UInt8(ascii: "0") {
                i += 1
            } else {
                while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) {
                    let (m, o1) = n.multipliedReportingOverflow(by: 10)
                    let (d, o2) = m.subtractingReportingOverflow(Int(bytes[i] &- UInt8(ascii: "0")))
                    if o1 || o2 { fits = false }
                    n = d
                    i += 1
                }
            }
            var integral = true
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                integral = false
                i += 1
                let digits = i
                while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
                guard i > digits else { throw fail("invalid number") }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                integral = false
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                let digits = i
                while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
                guard i > digits else { throw fail("invalid number") }
            }
            if integral, fits {
                if negative { return .int(n) }
                if n != .min { return .int(-n) }
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
            guard let d = Double(text) else { throw fail("invalid number") }
            return .double(d)
        }
    }
}

/// The members or elements of the containers being parsed, innermost last. A finished container's entries move
/// into an exactly sized array: no copies, no reference counting, and no regrowth per container (the stack's
/// storage is reused by every container after the first). `Array`'s own `removeSubrange` destroyed the entries
/// after copying them, which was a tenth of parsing a manifest.
final class PendingStack<Element> {
    private var base: UnsafeMutablePointer<Element>
    private var capacity = 64
    private(set) var count = 0

    init() { base = .allocate(capacity: capacity) }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    func push(_ element: consuming Element) {
        if count == capacity {
            let bigger = UnsafeMutablePointer<Element>.allocate(capacity: capacity * 2)
            bigger.moveInitialize(from: base, count: count)
            base.deallocate()
            base = bigger
            capacity *= 2
        }
        (base + count).initialize(to: element)
        count += 1
    }

    /// Removes the entries from `start` up and returns them in order.
    func pop(from start: Int) -> [Element] {
        let n = count - start
        guard n > 0 else { return [] }
        // Not `Array(unsafeUninitializedCapacity:)`: that allocates through an unspecialized library path that
        // looks up the array's type metadata at run time, which cost more than the moves save.
        var out: [Element] = []
        out.reserveCapacity(n)
        for k in start..<count { out.append((base + k).move()) }
        count = start
        return out
    }

    /// The entries from `start` up, left in place.
    func copy(from start: Int) -> [Element] {
        Array(UnsafeBufferPointer(start: base + start, count: count - start))
    }
}
