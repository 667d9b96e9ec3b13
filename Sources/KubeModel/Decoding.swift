import Foundation

/// What one Kubernetes object decoded to.
public enum DecodedObject: Hashable, Sendable {
    case service(Service)
    case endpointSlice(EndpointSlice)
    /// A v1 Endpoints object, converted to a slice with `fromEndpoints: true`.
    case endpoints(EndpointSlice)
    /// A kind (or apiVersion) a service proxy does not read.
    case ignored(kind: String)
    /// The object had an error; `issues` says which field. `name` is set when the metadata was readable.
    case rejected(kind: String, name: ObjectName?)
}

/// The outcome of decoding one object: the value (or why not) and every issue found on the way.
public struct DecodeResult: Hashable, Sendable {
    public var object: DecodedObject
    public var issues: [DecodeIssue]

    public init(object: DecodedObject, issues: [DecodeIssue] = []) {
        self.object = object
        self.issues = issues
    }

    /// The Service, if the object was one and was accepted.
    public var service: Service? {
        if case .service(let s) = object { return s }
        return nil
    }

    /// The slice, if the object was an EndpointSlice or Endpoints and was accepted.
    public var slice: EndpointSlice? {
        switch object {
        case .endpointSlice(let s), .endpoints(let s): s
        default: nil
        }
    }
}

/// Decodes Kubernetes objects from a parsed JSON or YAML tree (`[String: Any]` as JSONSerialization or
/// `YAMLTree` produce it) into validated model values.
///
/// Bad input never traps and never throws: a broken field either drops its list entry (a warning) or
/// rejects the object (an error), each issue naming the object and the JSON field path.
public enum ObjectDecoder {
    /// Decodes one object. `defaultKind` and `defaultAPIVersion` stand in for a missing `kind` /
    /// `apiVersion`, as for the items of an apiserver `ServiceList`.
    public static func decode(
        _ object: [String: Any], defaultKind: String? = nil, defaultAPIVersion: String? = nil
    ) -> DecodeResult {
        let kindValue = object["kind"]
        guard let kind = (kindValue as? String).flatMap({ $0.isEmpty ? nil : $0 }) ?? defaultKind else {
            let issue = DecodeIssue(
                severity: .error, kind: "", object: nil, fieldPath: "kind",
                message: isAbsent(kindValue) ? "required" : "expected a string, got \(typeName(kindValue!))")
            return DecodeResult(object: .rejected(kind: "", name: nil), issues: [issue])
        }
        let apiVersion = object["apiVersion"] as? String ?? defaultAPIVersion
        switch kind {
        case "Service":
            guard apiVersion == nil || apiVersion == "v1" else { return unsupported(kind, apiVersion!, object) }
            return ServiceDecoder.decode(object)
        case "EndpointSlice":
            guard apiVersion == nil || apiVersion == "discovery.k8s.io/v1" else {
                return unsupported(kind, apiVersion!, object)
            }
            return EndpointSliceDecoder.decode(object)
        case "Endpoints":
            guard apiVersion == nil || apiVersion == "v1" else { return unsupported(kind, apiVersion!, object) }
            return EndpointsDecoder.decode(object)
        default:
            return DecodeResult(object: .ignored(kind: kind))
        }
    }

    /// Decodes any parsed document: a single object, or a `List` / `<Kind>List` whose `items` are
    /// decoded one by one (an item without `kind` takes it from the list's kind, `ServiceList` → `Service`).
    public static func decodeDocument(_ document: Any) -> [DecodeResult] {
        guard let object = document as? [String: Any] else {
            if isAbsent(document) { return [] }
            let issue = DecodeIssue(
                severity: .error, kind: "", object: nil, fieldPath: "",
                message: "expected an object, got \(typeName(document))")
            return [DecodeResult(object: .rejected(kind: "", name: nil), issues: [issue])]
        }
        guard let kind = object["kind"] as? String, kind.hasSuffix("List"), object["items"] != nil else {
            return [decode(object)]
        }
        let apiVersion = object["apiVersion"] as? String
        guard let items = object["items"] as? [Any] else {
            if isAbsent(object["items"]) { return [] }
            let issue = DecodeIssue(
                severity: .error, kind: kind, object: nil, fieldPath: "items",
                message: "expected a list, got \(typeName(object["items"]!))")
            return [DecodeResult(object: .rejected(kind: kind, name: nil), issues: [issue])]
        }
        var results: [DecodeResult] = []
        results.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            results.append(decodeListItem(item, index: i, listKind: kind, listAPIVersion: apiVersion))
        }
        return results
    }

    /// One item of a `List` / `<Kind>List` (what `decodeDocument` does per item; a streaming reader calls it
    /// as each item is parsed, so the whole list never has to be held as a tree).
    public static func decodeListItem(_ item: Any, index: Int, listKind kind: String, listAPIVersion apiVersion: String?)
        -> DecodeResult
    {
        let itemKind = kind == "List" ? nil : String(kind.dropLast(4))
        guard let itemObject = item as? [String: Any] else {
            let issue = DecodeIssue(
                severity: .error, kind: kind, object: nil, fieldPath: "items[\(index)]",
                message: "expected an object, got \(typeName(item))")
            return DecodeResult(object: .rejected(kind: itemKind ?? "", name: nil), issues: [issue])
        }
        // A plain `List` mixes kinds, so its apiVersion says nothing about the items.
        return decode(itemObject, defaultKind: itemKind, defaultAPIVersion: itemKind == nil ? nil : apiVersion)
    }

    /// Decodes JSON bytes (one object or a list), as the apiserver returns them. Malformed JSON is
    /// one error; it never traps.
    public static func decodeJSON(_ data: Data) -> [DecodeResult] {
        do {
            return decodeDocument(try JSONTree.parse(data))
        } catch {
            let issue = DecodeIssue(
                severity: .error, kind: "", object: nil, fieldPath: "", message: "malformed JSON: \(error)")
            return [DecodeResult(object: .rejected(kind: "", name: nil), issues: [issue])]
        }
    }

    private static func unsupported(_ kind: String, _ apiVersion: String, _ object: [String: Any]) -> DecodeResult {
        let name = ObjectMeta.peekName(object)
        let issue = DecodeIssue(
            severity: .warning, kind: kind, object: name, fieldPath: "apiVersion",
            message: "unsupported apiVersion \(apiVersion), object ignored")
        return DecodeResult(object: .ignored(kind: kind), issues: [issue])
    }
}

// MARK: - JSON value helpers

/// nil and NSNull both mean "field not set".
///
/// Compared by type, not with `is NSNull`: on Linux that cast bridges a Swift dictionary or array value (the
/// whole subtree) to Foundation objects first, which made decoding a 10k-Service manifest take seconds.
func isAbsent(_ value: Any?) -> Bool {
    guard let value else { return true }
    return isNull(value)
}

func isNull(_ value: Any) -> Bool { type(of: value) == NSNull.self }

/// A JSON type name for messages: `string`, `number`, `boolean`, `object`, `list`, `null`.
func typeName(_ value: Any) -> String {
    if isNull(value) { return "null" }
    if value is String { return "string" }
    if isBoolean(value) { return "boolean" }
    if value is [String: Any] { return "object" }
    if value is [Any] { return "list" }
    if value is NSNumber || value is Int || value is Double { return "number" }
    return String(describing: type(of: value))
}

/// True for Swift `Bool` and for the NSNumber booleans JSONSerialization returns (which would
/// otherwise also cast to `Int`).
func isBoolean(_ value: Any) -> Bool {
    let t = type(of: value)
    if t == Bool.self { return true }
    // The common cases first: casting an Int or a String to NSNumber would bridge (allocate) just to say no.
    if t == Int.self || t == Double.self || t == String.self { return false }
    if let n = value as? NSNumber, type(of: value) != Int.self, type(of: value) != Double.self {
        let t = n.objCType.pointee
        return t == CChar(UInt8(ascii: "c")) || t == CChar(UInt8(ascii: "B"))
    }
    return false
}

/// An integral number, whether a Swift Int, a Double with no fraction, or an NSNumber; not a boolean.
func integerValue(_ value: Any) -> Int? {
    if type(of: value) == Int.self, let i = value as? Int { return i }
    if type(of: value) == Double.self, let d = value as? Double { return Int(exactly: d) }
    if isBoolean(value) { return nil }
    if let n = value as? NSNumber {
        let t = n.objCType.pointee
        if t == CChar(UInt8(ascii: "d")) || t == CChar(UInt8(ascii: "f")) { return Int(exactly: n.doubleValue) }
        // Numbers past Int.max arrive unsigned; intValue would wrap them negative.
        if t == CChar(UInt8(ascii: "Q")) || t == CChar(UInt8(ascii: "L")) { return Int(exactly: n.uint64Value) }
        return n.intValue
    }
    return nil
}

/// Text for a value in a message: strings quoted, numbers as written.
func render(_ value: Any) -> String {
    if let s = value as? String { return "\"\(s)\"" }
    if isBoolean(value) { return (value as? Bool) == true ? "true" : "false" }
    if let i = integerValue(value) { return String(i) }
    if let n = value as? NSNumber { return n.description }
    return typeName(value)
}

// MARK: - Field reader

/// Reads fields of one object, collecting issues with the object's kind and name.
struct FieldReader {
    let kind: String
    var object: ObjectName?
    var issues: [DecodeIssue] = []

    init(kind: String) { self.kind = kind }

    var hasErrors: Bool { issues.contains { $0.severity == .error } }

    mutating func error(_ path: String, _ message: String) {
        issues.append(DecodeIssue(severity: .error, kind: kind, object: object, fieldPath: path, message: message))
    }

    mutating func warning(_ path: String, _ message: String) {
        issues.append(DecodeIssue(severity: .warning, kind: kind, object: object, fieldPath: path, message: message))
    }

    mutating func wrongType(_ path: String, expected: String, _ value: Any) {
        error(path, "expected \(expected), got \(typeName(value))")
    }

    /// An object field; nil when absent (or of the wrong type, which is an error).
    mutating func dictionary(_ value: Any?, _ path: @autoclosure () -> String) -> [String: Any]? {
        if isAbsent(value) { return nil }
        if let d = value as? [String: Any] { return d }
        wrongType(path(), expected: "an object", value!)
        return nil
    }

    /// A list field; empty when absent (or of the wrong type, which is an error).
    mutating func list(_ value: Any?, _ path: @autoclosure () -> String) -> [Any] {
        if isAbsent(value) { return [] }
        if let l = value as? [Any] { return l }
        wrongType(path(), expected: "a list", value!)
        return []
    }

    mutating func string(_ value: Any?, _ path: @autoclosure () -> String) -> String? {
        if isAbsent(value) { return nil }
        if let s = value as? String { return s }
        wrongType(path(), expected: "a string", value!)
        return nil
    }

    mutating func int(_ value: Any?, _ path: @autoclosure () -> String) -> Int? {
        if isAbsent(value) { return nil }
        if let i = integerValue(value!) { return i }
        if isBoolean(value!) || !(value is NSNumber || value is Double) {
            wrongType(path(), expected: "an integer", value!)
        } else {
            error(path(), "expected an integer, got \(render(value!))")
        }
        return nil
    }

    mutating func bool(_ value: Any?, _ path: @autoclosure () -> String) -> Bool? {
        if isAbsent(value) { return nil }
        if isBoolean(value!), let b = value as? Bool { return b }
        wrongType(path(), expected: "a boolean", value!)
        return nil
    }

    /// A list of strings; entries of the wrong type are errors and skipped.
    mutating func strings(_ value: Any?, _ path: @autoclosure () -> String) -> [(index: Int, value: String)] {
        var out: [(Int, String)] = []
        for (i, item) in list(value, path()).enumerated() {
            if let s = string(item, "\(path())[\(i)]") { out.append((i, s)) }
        }
        return out
    }

    /// A map of strings (labels); entries of the wrong type are errors and skipped.
    mutating func stringMap(_ value: Any?, _ path: @autoclosure () -> String) -> [String: String] {
        guard let map = dictionary(value, path()) else { return [:] }
        var out: [String: String] = [:]
        for (k, v) in map {
            if let s = string(v, "\(path())[\(k)]") { out[k] = s }
        }
        return out
    }

    /// A transport protocol, TCP when absent; nil (after an issue of `severity`) when unknown.
    mutating func transportProtocol(_ value: Any?, _ path: @autoclosure () -> String, severity: DecodeSeverity)
        -> TransportProtocol?
    {
        guard let text = string(value, path()) else { return isAbsent(value) ? .tcp : nil }
        if text.isEmpty { return .tcp }
        if let p = TransportProtocol(rawValue: text) { return p }
        let message = "must be one of TCP, UDP, SCTP, got \"\(text)\""
        if severity == .error { error(path(), message) } else { warning(path(), message + "; port dropped") }
        return nil
    }
}

// MARK: - Metadata

/// The metadata fields every decoder reads.
struct ObjectMeta {
    var name: ObjectName
    var resourceVersion: String
    var labels: [String: String]
    var annotations: [String: Any]

    /// Best-effort name for messages about objects that are otherwise not decoded.
    static func peekName(_ object: [String: Any]) -> ObjectName? {
        guard let meta = object["metadata"] as? [String: Any], let name = meta["name"] as? String, !name.isEmpty
        else { return nil }
        let ns = (meta["namespace"] as? String).flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        return ObjectName(namespace: ns, name: name)
    }

    /// Reads `metadata`, setting `reader.object` as soon as the name is known so later issues name it.
    /// nil when the name is missing (an error).
    static func read(_ object: [String: Any], _ reader: inout FieldReader) -> ObjectMeta? {
        let meta = reader.dictionary(object["metadata"], "metadata") ?? [:]
        // A namespace-less object (a manifest written for `kubectl apply -n`) lands in "default", as kubectl does.
        let namespace = reader.string(meta["namespace"], "metadata.namespace").flatMap { $0.isEmpty ? nil : $0 }
        let rawName = reader.string(meta["name"], "metadata.name")
        guard let name = rawName, !name.isEmpty else {
            if isAbsent(meta["name"]) || rawName == "" { reader.error("metadata.name", "required") }
            return nil
        }
        reader.object = ObjectName(namespace: namespace ?? "default", name: name)
        var resourceVersion = ""
        if let rv = meta["resourceVersion"], !isAbsent(rv) {
            // Hand-written YAML may carry an unquoted number; it is only compared, never parsed.
            if let i = integerValue(rv) {
                resourceVersion = String(i)
            } else {
                resourceVersion = reader.string(rv, "metadata.resourceVersion") ?? ""
            }
        }
        let labels = reader.stringMap(meta["labels"], "metadata.labels")
        let annotations = reader.dictionary(meta["annotations"], "metadata.annotations") ?? [:]
        return ObjectMeta(
            name: reader.object!, resourceVersion: resourceVersion, labels: labels, annotations: annotations)
    }

    /// `endpoints.kubernetes.io/last-change-trigger-time`, when set to a string.
    func lastChangeTriggerTime(_ reader: inout FieldReader) -> String? {
        let key = "endpoints.kubernetes.io/last-change-trigger-time"
        return reader.string(annotations[key], "metadata.annotations[\(key)]")
    }
}
