import Foundation

/// A parsed JSON (or YAML) value, typed, so decoders read fields by pattern matching instead of casting `Any`.
///
/// Numbers keep the split the decoders rely on: a literal without fraction or exponent that fits an `Int` is
/// `.int`, every other number is `.double` (so `80.0` and `1e3` are doubles, and `9223372036854775808` too).
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// An integral number: an `.int`, or a `.double` with no fraction that fits an `Int`; never a boolean.
    public var integerValue: Int? {
        switch self {
        case .int(let i): i
        case .double(let d): Int(exactly: d)
        default: nil
        }
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The JSON type name used in messages: `string`, `number`, `boolean`, `object`, `list`, `null`.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .int, .double: "number"
        case .string: "string"
        case .array: "list"
        case .object: "object"
        }
    }

    /// Text for the value in a message: strings quoted, numbers and booleans as written.
    public var rendered: String {
        switch self {
        case .string(let s): "\"\(s)\""
        case .bool(let b): b ? "true" : "false"
        case .int(let i): String(i)
        // NSNumber's text, as the messages had it when numbers were Foundation values ("80.5", "1.8e+19").
        case .double(let d): Int(exactly: d).map { String($0) } ?? NSNumber(value: d).description
        default: typeName
        }
    }

    /// The member `key` when this is an object.
    public subscript(key: String) -> JSONValue? { objectValue?[key] }
}

/// A JSON object: its members in document order.
///
/// A name given twice means its last value, as when the members were stored in a dictionary: lookup scans
/// from the end, and `forEach` / `count` / `==` see each name once. Kubernetes objects have a handful of keys
/// per level, so scanning beats hashing every key while parsing.
public struct JSONObject: Sendable {
    public struct Member: Sendable {
        public var key: String
        public var value: JSONValue

        public init(key: String, value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    /// Every member as written, a repeated name included.
    public private(set) var members: [Member]

    public init() { self.members = [] }

    public init(members: [Member]) { self.members = members }

    public var isEmpty: Bool { members.isEmpty }

    /// The number of distinct names.
    public var count: Int {
        var n = 0
        forEach { _, _ in n += 1 }
        return n
    }

    public subscript(key: String) -> JSONValue? {
        get {
            // Comparing lengths first: String == on two different strings takes the slow comparison path.
            let length = key.utf8.count
            var i = members.endIndex
            while i > members.startIndex {
                i -= 1
                if members[i].key.utf8.count == length, members[i].key == key { return members[i].value }
            }
            return nil
        }
        set {
            members.removeAll { $0.key == key }
            if let newValue { members.append(Member(key: key, value: newValue)) }
        }
    }

    /// Calls `body` once per distinct name, with its last value, in document order of those last values.
    public func forEach(_ body: (_ key: String, _ value: JSONValue) throws -> Void) rethrows {
        if members.count <= 16 {
            for i in members.indices where !members[(i + 1)...].contains(where: { $0.key == members[i].key }) {
                try body(members[i].key, members[i].value)
            }
            return
        }
        var later: Set<String> = []
        var keep: [Bool] = Array(repeating: false, count: members.count)
        for i in members.indices.reversed() { keep[i] = later.insert(members[i].key).inserted }
        for i in members.indices where keep[i] { try body(members[i].key, members[i].value) }
    }
}

// MARK: - Equality

extension JSONValue: Equatable {
    /// Structural equality; `.int(1)` and `.double(1)` differ, objects compare as dictionaries (order-free).
    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.int(let x), .int(let y)): x == y
        case (.double(let x), .double(let y)): x == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)): x == y
        default: false
        }
    }
}

extension JSONObject: Equatable {
    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        guard a.count == b.count else { return false }
        var same = true
        a.forEach { key, value in if same, b[key] != value { same = false } }
        return same
    }
}

// MARK: - Literals (tests and hand-built objects)

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(JSONObject(dictionaryLiteral: elements))
    }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self.init(dictionaryLiteral: elements) }

    init(dictionaryLiteral elements: [(String, JSONValue)]) {
        self.members = elements.map { Member(key: $0.0, value: $0.1) }
    }
}
