/// How bad a decoding problem is.
public enum DecodeSeverity: String, Sendable, Hashable, Comparable {
    /// Part of the object (one entry of a list) was dropped; the rest of the object is used.
    case warning
    /// The whole object was rejected; whatever the node had for it before stays.
    case error

    public static func < (a: DecodeSeverity, b: DecodeSeverity) -> Bool {
        a == .warning && b == .error
    }
}

/// One problem found while decoding a Kubernetes object, with the object and field it is about.
///
/// `description` reads `Service ns1/web: spec.ports[1].port: must be 1-65535, got 0`, prefixed with
/// `source` (file and document) when the manifest reader set one.
public struct DecodeIssue: Error, Hashable, Sendable, CustomStringConvertible {
    public var severity: DecodeSeverity
    /// The object's kind (`Service`, `EndpointSlice`, `Endpoints`, ...); empty when not known.
    public var kind: String
    /// The object's namespace/name, when it got as far as having one.
    public var object: ObjectName?
    /// The JSON field path, such as `spec.ports[1].port`; empty for the object as a whole.
    public var fieldPath: String
    public var message: String
    /// Where the object came from, such as `svc.yaml (document 2)`; nil from the apiserver.
    public var source: String?

    public init(
        severity: DecodeSeverity, kind: String, object: ObjectName?, fieldPath: String, message: String,
        source: String? = nil
    ) {
        self.severity = severity
        self.kind = kind
        self.object = object
        self.fieldPath = fieldPath
        self.message = message
        self.source = source
    }

    public var description: String {
        var parts: [String] = []
        if let source { parts.append(source) }
        switch (kind.isEmpty, object) {
        case (true, nil): break
        case (false, nil): parts.append(kind)
        case (true, let name?): parts.append(name.description)
        case (false, let name?): parts.append("\(kind) \(name)")
        }
        if !fieldPath.isEmpty { parts.append(fieldPath) }
        parts.append(message)
        return parts.joined(separator: ": ")
    }
}
