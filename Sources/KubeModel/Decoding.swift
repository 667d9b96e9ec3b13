import Foundation

/// What one Kubernetes object decoded to.
public enum DecodedObject: Hashable, Sendable {
    case service(Service)
    case endpointSlice(EndpointSlice)
    /// A v1 Endpoints object, converted to a slice with `fromEndpoints: true`.
    case endpoints(EndpointSlice)
    /// A v1 Node (cluster-scoped: its `ObjectName` has an empty namespace).
    case node(Node)
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

    /// The Node, if the object was one and was accepted.
    public var node: Node? {
        if case .node(let n) = object { return n }
        return nil
    }
}

/// Decodes Kubernetes objects from a parsed JSON or YAML tree (`JSONValue`, as `JSONTree` and `YAMLTree` produce
/// it) into validated model values.
///
/// Bad input never traps and never throws: a broken field either drops its list entry (a warning) or
/// rejects the object (an error), each issue naming the object and the JSON field path.
public enum ObjectDecoder {
    /// Decodes one object. `defaultKind` and `defaultAPIVersion` stand in for a missing `kind` /
    /// `apiVersion`, as for the items of an apiserver `ServiceList`.
    public static func decode(
        _ object: JSONObject, defaultKind: String? = nil, defaultAPIVersion: String? = nil
    ) -> DecodeResult {
        let kindValue = object["kind"]
        guard let kind = kindValue?.stringValue.flatMap({ $0.isEmpty ? nil : $0 }) ?? defaultKind else {
            let issue = DecodeIssue(
                severity: .error, kind: "", object: nil, fieldPath: "kind",
                message: isAbsent(kindValue) ? "required" : "expected a string, got \(kindValue!.typeName)")
            return DecodeResult(object: .rejected(kind: "", name: nil), issues: [issue])
        }
        let apiVersion = object["apiVersion"]?.stringValue ?? defaultAPIVersion
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
        case "Node":
            guard apiVersion == nil || apiVersion == "v1" else { return unsupported(kind, apiVersion!, object) }
            return NodeDecoder.decode(object)
        default:
            return DecodeResult(object: .ignored(kind: kind))
        }
    }

    /// Decodes any parsed document: a single object, or a `List` / `<Kind>List` whose `items` are
    /// decoded one by one (an item without `kind` takes it from the list's kind, `ServiceList` → `Service`).
    public static func decodeDocument(_ document: JSONValue) -> [DecodeResult] {
        guard case .object(let object) = document else {
            if isAbsent(document) { return [] }
            let issue = DecodeIssue(
                severity: .error, kind: "", object: nil, fieldPath: "",
                message: "expected an object, got \(document.typeName)")
            return [DecodeResult(object: .rejected(kind: "", name: nil), issues: [issue])]
        }
        guard let kind = object["kind"]?.stringValue, kind.hasSuffix("List"), let itemsValue = object["items"] else {
            return [decode(object)]
        }
        let apiVersion = object["apiVersion"]?.stringValue
        guard case .array(let items) = itemsValue else {
            if isAbsent(itemsValue) { return [] }
            let issue = DecodeIssue(
                severity: .error, kind: kind, object: nil, fieldPath: "items",
                message: "expected a list, got \(itemsValue.typeName)")
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
    public static func decodeListItem(
        _ item: JSONValue, index: Int, listKind kind: String, listAPIVersion apiVersion: String?
    ) -> DecodeResult {
        let itemKind = kind == "List" ? nil : String(kind.dropLast(4))
        guard case .object(let itemObject) = item else {
            let issue = DecodeIssue(
                severity: .error, kind: kind, object: nil, fieldPath: "items[\(index)]",
                message: "expected an object, got \(item.typeName)")
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

    private static func unsupported(_ kind: String, _ apiVersion: String, _ object: JSONObject) -> DecodeResult {
        let name = ObjectMeta.peekName(object)
        let issue = DecodeIssue(
            severity: .warning, kind: kind, object: name, fieldPath: "apiVersion",
            message: "unsupported apiVersion \(apiVersion), object ignored")
        return DecodeResult(object: .ignored(kind: kind), issues: [issue])
    }
}

// MARK: - JSON value helpers

/// A missing member and null both mean "field not set".
func isAbsent(_ value: JSONValue?) -> Bool {
    guard let value else { return true }
    return value.isNull
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

    mutating func wrongType(_ path: String, expected: String, _ value: JSONValue) {
        error(path, "expected \(expected), got \(value.typeName)")
    }

    /// An object field; nil when absent (or of the wrong type, which is an error).
    mutating func dictionary(_ value: JSONValue?, _ path: @autoclosure () -> String) -> JSONObject? {
        switch value {
        case .object(let d): return d
        case nil, .null: return nil
        case let other?:
            wrongType(path(), expected: "an object", other)
            return nil
        }
    }

    /// A list field; empty when absent (or of the wrong type, which is an error).
    mutating func list(_ value: JSONValue?, _ path: @autoclosure () -> String) -> [JSONValue] {
        switch value {
        case .array(let l): return l
        case nil, .null: return []
        case let other?:
            wrongType(path(), expected: "a list", other)
            return []
        }
    }

    mutating func string(_ value: JSONValue?, _ path: @autoclosure () -> String) -> String? {
        switch value {
        case .string(let s): return s
        case nil, .null: return nil
        case let other?:
            wrongType(path(), expected: "a string", other)
            return nil
        }
    }

    /// An integral number; a double with no fraction counts (`80.0`, as YAML or a JSON writer may spell it).
    mutating func int(_ value: JSONValue?, _ path: @autoclosure () -> String) -> Int? {
        switch value {
        case .int(let i): return i
        case nil, .null: return nil
        case .double(let d):
            if let i = Int(exactly: d) { return i }
            error(path(), "expected an integer, got \(value!.rendered)")
            return nil
        case let other?:
            wrongType(path(), expected: "an integer", other)
            return nil
        }
    }

    mutating func bool(_ value: JSONValue?, _ path: @autoclosure () -> String) -> Bool? {
        switch value {
        case .bool(let b): return b
        case nil, .null: return nil
        case let other?:
            wrongType(path(), expected: "a boolean", other)
            return nil
        }
    }

    /// A list of strings; entries of the wrong type are errors and skipped.
    mutating func strings(_ value: JSONValue?, _ path: @autoclosure () -> String) -> [(index: Int, value: String)] {
        // Labelled like the result: an unlabelled tuple array would be converted element by element on return.
        var out: [(index: Int, value: String)] = []
        for (i, item) in list(value, path()).enumerated() {
            if let s = string(item, "\(path())[\(i)]") { out.append((i, s)) }
        }
        return out
    }

    /// A map of strings (labels); entries of the wrong type are errors and skipped.
    mutating func stringMap(_ value: JSONValue?, _ path: @autoclosure () -> String) -> [String: String] {
        guard let map = dictionary(value, path()) else { return [:] }
        var out: [String: String] = [:]
        map.forEach { k, v in
            if let s = string(v, "\(path())[\(k)]") { out[k] = s }
        }
        return out
    }

    /// A transport protocol, TCP when absent; nil (after an issue of `severity`) when unknown.
    mutating func transportProtocol(_ value: JSONValue?, _ path: @autoclosure () -> String, severity: DecodeSeverity)
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
    var annotations: JSONObject

    /// Best-effort name for messages about objects that are otherwise not decoded.
    static func peekName(_ object: JSONObject) -> ObjectName? {
        guard let meta = object["metadata"]?.objectValue, let name = meta["name"]?.stringValue, !name.isEmpty
        else { return nil }
        let ns = meta["namespace"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        return ObjectName(namespace: ns, name: name)
    }

    /// Reads `metadata`, setting `reader.object` as soon as the name is known so later issues name it.
    /// nil when the name is missing (an error).
    static func read(_ object: JSONObject, _ reader: inout FieldReader) -> ObjectMeta? {
        let meta = reader.dictionary(object["metadata"], "metadata") ?? JSONObject()
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
            if let i = rv.integerValue {
                resourceVersion = String(i)
            } else {
                resourceVersion = reader.string(rv, "metadata.resourceVersion") ?? ""
            }
        }
        let labels = reader.stringMap(meta["labels"], "metadata.labels")
        let annotations = reader.dictionary(meta["annotations"], "metadata.annotations") ?? JSONObject()
        return ObjectMeta(
            name: reader.object!, resourceVersion: resourceVersion, labels: labels, annotations: annotations)
    }

    /// `endpoints.kubernetes.io/last-change-trigger-time`, when set to a string.
    func lastChangeTriggerTime(_ reader: inout FieldReader) -> String? {
        let key = "endpoints.kubernetes.io/last-change-trigger-time"
        return reader.string(annotations[key], "metadata.annotations[\(key)]")
    }
}
