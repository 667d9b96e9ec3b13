/// The feature gates kube-proxy's `--feature-gates` and `featureGates` accept, checked as component-base's
/// `SetFromMap` checks them: an unknown name is an error naming it, a gate locked to its default (graduated, or
/// deprecated and locked off) cannot be set to the other value, and setting a deprecated or GA gate is accepted
/// with upstream's warning. kube-proxy registers every Kubernetes gate (it shares
/// `utilfeature.DefaultMutableFeatureGate` with the other components), so a cluster-wide `--feature-gates`
/// that kubeadm or a distribution passes to every component must load here too.
///
/// The table (`specs`, in FeatureGateTable.swift) is generated from upstream's Go sources by
/// Tools/feature-gates/extract.py, each gate as its spec stands at `kubernetesVersion`. A gate newer than the
/// table is refused, as by a kube-proxy of that version: re-run the script when upstream adds gates.
///
/// None of these gates changes what kube-natd's iptables mode writes: the networking gates that matter are GA
/// and locked on (their behaviour is always there), and the rest are recorded in `featureGates` and otherwise
/// unused, as in kube-proxy's iptables proxier.
public enum FeatureGates {
    /// A gate's maturity at `kubernetesVersion` (component-base's `prerelease`).
    enum Stage: Sendable {
        case preAlpha, alpha, beta, ga, deprecated

        /// As kube-proxy's usage prints it (`ALPHA`, `BETA`, `DEPRECATED`; GA is printed empty).
        var shown: String {
            switch self {
            case .preAlpha: return "PRE-ALPHA"
            case .alpha: return "ALPHA"
            case .beta: return "BETA"
            case .ga: return ""
            case .deprecated: return "DEPRECATED"
            }
        }
    }

    /// One gate's spec at `kubernetesVersion`: the newest of upstream's versioned specs not after it.
    struct Spec: Sendable {
        let name: String
        let defaultValue: Bool
        let stage: Stage
        /// `LockToDefault`: setting the gate to anything but `defaultValue` is an error.
        let locked: Bool

        init(_ name: String, _ defaultValue: Bool, _ stage: Stage, locked: Bool = false) {
            self.name = name
            self.defaultValue = defaultValue
            self.stage = stage
            self.locked = locked
        }
    }

    /// `specs` by name.
    static let byName: [String: Spec] = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0) })

    /// Problems with a `featureGates` map: unknown names, locked gates set against their lock, pre-alpha gates.
    /// (Upstream stops at the first unknown name; every problem is listed here, so `--validate` shows them all.)
    public static func check(_ gates: [String: Bool]) -> [ConfigProblem] {
        var out: [ConfigProblem] = []
        for name in gates.keys.sorted() {
            let value = gates[name]!
            let path = "featureGates.\(name)"
            guard let spec = byName[name] else {
                out.append(.invalid(path: path, reason: "unrecognized feature gate", got: "\"\(name)\""))
                continue
            }
            // component-base's texts.
            let refused = "cannot set feature gate \(name) to \(value)"
            if spec.locked, value != spec.defaultValue {
                out.append(
                    .invalid(
                        path: path, reason: "\(refused), feature is locked to \(spec.defaultValue)", got: "\(value)"))
            } else if spec.stage == .preAlpha {
                out.append(
                    .invalid(
                        path: path, reason: "\(refused), feature is PreAlpha at emulated version \(kubernetesVersion)",
                        got: "\(value)"))
            }
        }
        return out
    }

    /// Upstream's warnings for gates that were accepted: setting a deprecated or a GA gate (both to be removed).
    public static func warnings(_ gates: [String: Bool]) -> [ConfigWarning] {
        gates.keys.sorted().compactMap { name in
            guard let spec = byName[name], !(spec.locked && gates[name]! != spec.defaultValue) else { return nil }
            switch spec.stage {
            case .deprecated: return .featureGate(name: name, value: gates[name]!, stage: "deprecated")
            case .ga: return .featureGate(name: name, value: gates[name]!, stage: "GA")
            case .preAlpha, .alpha, .beta: return nil
            }
        }
    }

    /// The `--feature-gates` help lines as kube-proxy's usage lists them: the pseudo-gates `AllAlpha`/`AllBeta`
    /// and every alpha and beta gate with its default (GA, deprecated and pre-alpha gates are not listed).
    static var usage: String {
        specs.filter { $0.name == "AllAlpha" || $0.name == "AllBeta" || $0.stage == .alpha || $0.stage == .beta }
            .map { "\($0.name)=true|false (\($0.stage.shown) - default=\($0.defaultValue))" }
            .joined(separator: "\n")
    }
}
