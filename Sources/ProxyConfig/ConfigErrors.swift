/// One thing wrong with a KubeProxyConfiguration or a flag, naming the field path and the value found.
public indirect enum ConfigProblem: Hashable, Sendable, CustomStringConvertible {
    /// The text is not YAML/JSON.
    case syntax(String)
    /// `apiVersion` is not `kubeproxy.config.k8s.io/v1alpha1`.
    case wrongAPIVersion(got: String)
    /// `kind` is not `KubeProxyConfiguration`.
    case wrongKind(got: String)
    /// The field holds the wrong type of value (`expected a duration, got "abc"`).
    case wrongType(path: String, expected: String, got: String)
    /// The value has the right type but is not allowed (`must be 0..31, got 40`).
    case invalid(path: String, reason: String, got: String)
    /// A problem with a value that came from a command-line flag rather than the file.
    case viaFlag(flag: String, ConfigProblem)

    /// The config field path the problem is about ("" for the whole document).
    public var path: String {
        switch self {
        case .syntax: return ""
        case .wrongAPIVersion: return "apiVersion"
        case .wrongKind: return "kind"
        case .wrongType(let path, _, _), .invalid(let path, _, _): return path
        case .viaFlag(_, let inner): return inner.path
        }
    }

    func fromFlag(_ flag: String) -> ConfigProblem { .viaFlag(flag: flag, self) }

    public var description: String {
        switch self {
        case .syntax(let text):
            return "not valid YAML or JSON: \(text)"
        case .wrongAPIVersion(let got):
            return "apiVersion: must be \(KubeProxyConfiguration.apiVersion), got \"\(got)\""
        case .wrongKind(let got):
            return "kind: must be \(KubeProxyConfiguration.kind), got \"\(got)\""
        case .wrongType(let path, let expected, let got):
            return "\(path): expected \(expected), got \(got)"
        case .invalid(let path, let reason, let got):
            return "\(path): \(reason), got \(got)"
        case .viaFlag(let flag, let inner):
            return "\(flag): \(inner.description)"
        }
    }
}

/// Something in the configuration that kube-natd ignores but the operator should know about.
public enum ConfigWarning: Hashable, Sendable, CustomStringConvertible {
    /// A field kube-proxy's v1alpha1 does not know; ignored, as kube-proxy's lenient decoding does.
    case unknownField(path: String)
    /// A flag that has no effect because `--config` was given (kube-proxy: "ignored if a config file is specified").
    case flagIgnored(flag: String)
    /// A deprecated or GA feature gate set explicitly (accepted; component-base warns that it will be removed).
    case featureGate(name: String, value: Bool, stage: String)

    public var description: String {
        switch self {
        case .unknownField(let path): return "unknown field \"\(path)\""
        case .flagIgnored(let flag): return "flag \(flag) is ignored because --config is given"
        case .featureGate(let name, let value, let stage):
            return "Setting \(stage) feature gate \(name)=\(value). It will be removed in a future release."
        }
    }
}

/// Every problem found in a configuration (all of them, not just the first, so `--validate` can list them).
public struct ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    public var problems: [ConfigProblem]

    public init(_ problems: [ConfigProblem]) {
        self.problems = problems
    }

    /// One problem per line.
    public var description: String {
        "invalid KubeProxyConfiguration:\n" + problems.map { "  " + $0.description }.joined(separator: "\n")
    }
}
