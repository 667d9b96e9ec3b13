import Yams

/// A parsed YAML/JSON value with its scalar type resolved, as sigs.k8s.io/yaml sees it after turning YAML into JSON.
/// Free-form sections (`logging.options`) are kept in this form.
public indirect enum ConfigValue: Hashable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case list([ConfigValue])
    /// Keys in document order.
    case map([ConfigEntry])

    /// Short text for error messages: strings quoted, containers summarized.
    var shown: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .int(let i): return String(i)
        case .float(let d): return String(d)
        case .string(let s): return "\"\(s)\""
        case .list: return "a list"
        case .map: return "an object"
        }
    }

    subscript(key: String) -> ConfigValue? {
        guard case .map(let entries) = self else { return nil }
        return entries.last(where: { $0.key == key })?.value
    }

    /// Sets `path` (dotted keys) to `value`, creating objects on the way.
    mutating func set(_ path: [String], to value: ConfigValue) {
        guard let key = path.first else {
            self = value
            return
        }
        var entries: [ConfigEntry]
        if case .map(let existing) = self { entries = existing } else { entries = [] }
        if let i = entries.lastIndex(where: { $0.key == key }) {
            entries[i].value.set(Array(path.dropFirst()), to: value)
        } else {
            var child = ConfigValue.null
            child.set(Array(path.dropFirst()), to: value)
            entries.append(ConfigEntry(key: key, value: child))
        }
        self = .map(entries)
    }
}

/// One key of a `ConfigValue.map`.
public struct ConfigEntry: Hashable, Sendable {
    public var key: String
    public var value: ConfigValue
    public init(key: String, value: ConfigValue) {
        self.key = key
        self.value = value
    }
}

extension ConfigValue {
    /// Parses YAML (or JSON, which is YAML) text into a value tree.
    static func parse(_ text: String) throws(ConfigurationError) -> ConfigValue {
        let node: Yams.Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw ConfigurationError([.syntax(String(describing: error))])
        }
        guard let node else { return .null }
        return try convert(node, path: "")
    }

    private static func convert(_ node: Yams.Node, path: String) throws(ConfigurationError) -> ConfigValue {
        switch node {
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: return .null
            case .bool: return node.bool.map(ConfigValue.bool) ?? .string(scalar.string)
            case .int: return node.int.map(ConfigValue.int) ?? .string(scalar.string)
            case .float: return node.float.map(ConfigValue.float) ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .sequence(let seq):
            var out: [ConfigValue] = []
            for (i, item) in seq.enumerated() {
                out.append(try convert(item, path: "\(path)[\(i)]"))
            }
            return .list(out)
        case .mapping(let mapping):
            var out: [ConfigEntry] = []
            for (key, value) in mapping {
                guard case .scalar(let k) = key else {
                    throw ConfigurationError([.syntax("\(path.isEmpty ? "document" : path): keys must be strings")])
                }
                let child = path.isEmpty ? k.string : "\(path).\(k.string)"
                out.append(ConfigEntry(key: k.string, value: try convert(value, path: child)))
            }
            return .map(out)
        case .alias:
            throw ConfigurationError([.syntax("\(path.isEmpty ? "document" : path): YAML aliases are not supported")])
        }
    }
}

/// Reads one object of the tree, recording which keys were read so that the rest can be reported as
/// unknown, and turning type mismatches into problems that name the field path.
final class SectionReader {
    let path: String
    private let entries: [ConfigEntry]
    private var known: Set<String> = []
    private let sink: DecodeSink

    init(_ value: ConfigValue?, path: String, sink: DecodeSink) {
        self.path = path
        self.sink = sink
        switch value {
        case .map(let entries)?:
            self.entries = entries
        case nil, .null?:
            self.entries = []
        case let other?:
            self.entries = []
            sink.problem(.wrongType(path: path, expected: "an object", got: other.shown))
        }
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The raw value of `key`, nil when absent or null.
    func raw(_ key: String) -> ConfigValue? {
        known.insert(key)
        guard let v = entries.last(where: { $0.key == key })?.value, v != .null else { return nil }
        return v
    }

    func section(_ key: String) -> SectionReader { SectionReader(raw(key), path: child(key), sink: sink) }

    func string(_ key: String) -> String? {
        guard let v = raw(key) else { return nil }
        if case .string(let s) = v { return s }
        sink.problem(.wrongType(path: child(key), expected: "a string", got: v.shown))
        return nil
    }

    func bool(_ key: String) -> Bool? {
        guard let v = raw(key) else { return nil }
        if case .bool(let b) = v { return b }
        sink.problem(.wrongType(path: child(key), expected: "true or false", got: v.shown))
        return nil
    }

    /// A Go `int32` field.
    func int32(_ key: String) -> Int? {
        guard let v = raw(key) else { return nil }
        if case .int(let i) = v, i >= Int(Int32.min), i <= Int(Int32.max) { return i }
        sink.problem(.wrongType(path: child(key), expected: "a 32-bit integer", got: v.shown))
        return nil
    }

    /// A Go `float32` field (`clientConnection.qps`); integers are accepted, as JSON does.
    func float(_ key: String) -> Double? {
        guard let v = raw(key) else { return nil }
        switch v {
        case .int(let i): return Double(i)
        case .float(let d): return d
        default:
            sink.problem(.wrongType(path: child(key), expected: "a number", got: v.shown))
            return nil
        }
    }

    /// A `metav1.Duration`: a string in Go duration syntax.
    func duration(_ key: String) -> GoDuration? {
        guard let v = raw(key) else { return nil }
        if case .string(let s) = v, let d = GoDuration(parsing: s) { return d }
        sink.problem(.wrongType(path: child(key), expected: "a duration", got: v.shown))
        return nil
    }

    func stringList(_ key: String) -> [String]? {
        guard let v = raw(key) else { return nil }
        guard case .list(let items) = v else {
            sink.problem(.wrongType(path: child(key), expected: "a list of strings", got: v.shown))
            return nil
        }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            if case .string(let s) = item {
                out.append(s)
            } else {
                sink.problem(.wrongType(path: "\(child(key))[\(i)]", expected: "a string", got: item.shown))
            }
        }
        return out
    }

    func list(_ key: String) -> [ConfigValue]? {
        guard let v = raw(key) else { return nil }
        if case .list(let items) = v { return items }
        sink.problem(.wrongType(path: child(key), expected: "a list", got: v.shown))
        return nil
    }

    /// Reports keys that were never read, in document order (kube-proxy decodes leniently and ignores them).
    func finish() {
        var seen: Set<String> = []
        for entry in entries where !known.contains(entry.key) && seen.insert(entry.key).inserted {
            sink.warning(.unknownField(path: child(entry.key)))
        }
    }
}

/// Collects problems and warnings while a configuration is decoded and checked.
final class DecodeSink {
    var problems: [ConfigProblem] = []
    var warnings: [ConfigWarning] = []
    /// Config field path -> the flag that set it, so errors name what the operator typed.
    var flagOrigins: [String: String] = [:]

    func problem(_ p: ConfigProblem) {
        let path = p.path
        if let flag = flagOrigins.first(where: {
            path == $0.key || path.hasPrefix($0.key + ".") || path.hasPrefix($0.key + "[")
        })?.value {
            problems.append(p.fromFlag(flag))
        } else {
            problems.append(p)
        }
    }

    func warning(_ w: ConfigWarning) { warnings.append(w) }
}
