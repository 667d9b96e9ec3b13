import Foundation

/// Parses JSON text into the tree shape `ObjectDecoder` reads: `[String: Any]`, `[Any]`, `String`, `Int` (integers
/// that fit), `Double` (every other number), `Bool`, and `NSNull` for null.
///
/// Foundation's `JSONSerialization` builds Foundation objects and bridges them back (about half of a 10k-Service
/// manifest load); this builds Swift values directly in one pass over the bytes.
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

    public static func parse(_ data: Data) throws(SyntaxError) -> Any {
        let result: Result<Any, SyntaxError> = data.withUnsafeBytes { raw in
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

    public static func parse(_ bytes: [UInt8]) throws(SyntaxError) -> Any { try parse(Data(bytes)) }

    /// Like `parse`, but when the text is an object with an `items` list (a `List`), each item is handed to
    /// `onItem` as soon as it is parsed, with its index and the object's other keys read so far, instead of being
    /// kept: a 10k-Service list is never held as one tree. The returned object has no `items` key then, and
    /// `streamed` says so.
    public static func parse(
        _ data: Data, streamingItems onItem: (_ item: Any, _ index: Int, _ top: [String: Any]) -> Void
    ) throws(SyntaxError) -> (tree: Any, streamed: Bool) {
        // The parser keeps the hook in an optional (hence escaping) closure; it never outlives this call.
        let result: Result<(Any, Bool), SyntaxError> = withoutActuallyEscaping(onItem) { onItem in data.withUnsafeBytes { raw in
            var p = Parser(bytes: raw.bindMemory(to: UInt8.self))
            do throws(SyntaxError) {
                p.skipSpace()
                let v: Any
                var streamed = false
                if p.i < p.bytes.count, p.bytes[p.i] == UInt8(ascii: "{") {
                    v = try p.object(depth: 1) { (parser: inout Parser, top: [String: Any]) throws(SyntaxError) in
                        streamed = true
                        try parser.streamArray(depth: 2) { item, index in onItem(item, index, top) }
                    }
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

        mutating func value(depth: Int) throws(SyntaxError) -> Any {
            guard i < bytes.count else { throw fail("unexpected end of text") }
            switch bytes[i] {
            case UInt8(ascii: "{"): return try object(depth: depth + 1)
            case UInt8(ascii: "["): return try array(depth: depth + 1)
            case UInt8(ascii: "\""): return try string()
            case UInt8(ascii: "t"): try literal("true"); return true
            case UInt8(ascii: "f"): try literal("false"); return false
            case UInt8(ascii: "n"): try literal("null"); return NSNull()
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
        /// value, which it must consume) when the value is a list.
        mutating func object(
            depth: Int, items: ((_ parser: inout Parser, _ top: [String: Any]) throws(SyntaxError) -> Void)? = nil
        ) throws(SyntaxError) -> [String: Any] {
            guard depth <= JSONTree.maxDepth else { throw fail("nested deeper than \(JSONTree.maxDepth) levels") }
            i += 1
            var out: [String: Any] = [:]
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return out }
            // Kubernetes objects mostly have a handful of keys: room for 8 up front saves the 1 -> 2 -> 4 -> 8
            // regrowth (each a rehash), which was a tenth of decoding a manifest.
            out.reserveCapacity(8)
            while true {
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let key = try string()
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':' after a key") }
                i += 1
                skipSpace()
                if let items, key == "items", i < bytes.count, bytes[i] == UInt8(ascii: "[") {
                    try items(&self, out)
                } else {
                    out[key] = try value(depth: depth)
                }
                skipSpace()
                guard i < bytes.count else { throw fail("unexpected end of text in an object") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return out }
                throw fail("expected ',' or '}' in an object")
            }
        }

        mutating func array(depth: Int) throws(SyntaxError) -> [Any] {
            var out: [Any] = []
            try streamArray(depth: depth) { item, _ in out.append(item) }
            return out
        }

        /// A list whose elements go to `body` one by one instead of into an array.
        mutating func streamArray(depth: Int, _ body: (Any, Int) -> Void) throws(SyntaxError) {
            guard depth <= JSONTree.maxDepth else { throw fail("nested deeper than \(JSONTree.maxDepth) levels") }
            i += 1
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return }
            var index = 0
            while true {
                skipSpace()
                body(try value(depth: depth), index)
                index += 1
                skipSpace()
                guard i < bytes.count else { throw fail("unexpected end of text in a list") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return }
                throw fail("expected ',' or ']' in a list")
            }
        }

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

        /// RFC 8259 number syntax; an integer that fits is an `Int`, anything else a `Double`.
        mutating func number() throws(SyntaxError) -> Any {
            let start = i
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) else {
                throw fail("invalid number")
            }
            if bytes[i] == UInt8(ascii: "0") {
                i += 1
            } else {
                while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
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
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
            if integral, let n = Int(text) { return n }
            guard let d = Double(text) else { throw fail("invalid number") }
            return d
        }
    }
}
