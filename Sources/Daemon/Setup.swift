import Foundation
import KubeModel
import KubeSource
import ProxyConfig
import RuleCompiler
import Ruleset

/// Which families a run programs.
public enum FamilySelection: String, CaseIterable, Sendable {
    case ipv4, ipv6, dual
    public var families: [IPFamily] {
        switch self {
        case .ipv4: [.ipv4]
        case .ipv6: [.ipv6]
        case .dual: [.ipv4, .ipv6]
        }
    }
}

/// Errors that end a run before anything is written, with the exit status kube-natd uses for them.
public enum SetupError: Error, CustomStringConvertible {
    case config(ConfigurationError, path: String?)
    case unreadableConfig(String, underlying: String)
    case source(String)

    public var description: String {
        switch self {
        case .config(let e, let path):
            let prefix = path.map { "\($0): " } ?? ""
            return e.problems.map { prefix + $0.description }.joined(separator: "\n")
        case .unreadableConfig(let path, let why): return "\(path): cannot read configuration: \(why)"
        case .source(let why): return why
        }
    }

    /// 2 for configuration problems (bad flags or file), 1 otherwise.
    public var exitCode: Int32 {
        switch self {
        case .config, .unreadableConfig: 2
        case .source: 1
        }
    }
}

/// The effective configuration and node identity of one run.
public struct NodeSetup: Sendable {
    public var configuration: KubeProxyConfiguration
    public var warnings: [ConfigWarning]
    public var nodeName: String
    /// Node IPs for the rules that need one: `bindAddress` when set, then this namespace's addresses.
    public var nodeIPs: [IPAddress]
    public var podCIDR: CIDR?
    /// `--rule-layout`: which generation of kube-proxy's layout the compiler writes.
    public var ruleLayout: RuleLayout = .current

    /// Loads `--config` (or the flags alone) the way kube-proxy does.
    public static func load(configPath: String?, overrides: ConfigOverrides, probeInterfaces: Bool = true,
                            hostname: () -> String = { ProcessInfo.processInfo.hostName }) throws -> NodeSetup {
        var text: String?
        if let configPath {
            do { text = try String(contentsOfFile: configPath, encoding: .utf8) } catch {
                throw SetupError.unreadableConfig(configPath, underlying: "\(error.localizedDescription)")
            }
        }
        let loaded: LoadedConfiguration
        do { loaded = try KubeProxyConfiguration.load(configText: text, overrides: overrides) } catch {
            throw SetupError.config(error, path: configPath)
        }
        let c = loaded.configuration
        let name = KubeProxyConfiguration.nodeName(flag: overrides.hostnameOverride, config: c.hostnameOverride,
                                                   hostname: hostname)
        var ips: [IPAddress] = []
        if let bind = IPAddress(c.bindAddress), !Self.isUnspecified(bind) { ips.append(bind) }
        if probeInterfaces {
            ips += LocalAddresses.all().filter { !$0.isLoopback && !ips.contains($0) && !Self.isLinkLocal($0) }
        }
        return NodeSetup(configuration: c, warnings: loaded.warnings, nodeName: name, nodeIPs: ips, podCIDR: nil)
    }

    static func isUnspecified(_ ip: IPAddress) -> Bool { ip.high == 0 && ip.low == 0 }
    static func isLinkLocal(_ ip: IPAddress) -> Bool { ip.isIPv6 && (ip.high >> 54) == 0x3FA }

    public func settings(for family: IPFamily, features: KernelFeatures) -> NodeSettings {
        configuration.nodeSettings(family: family, nodeName: nodeName, nodeIPs: nodeIPs, podCIDR: podCIDR,
                                   features: features, ruleLayout: ruleLayout)
    }
}

/// Loads a manifest source into cluster state, keeping the issues for the operator.
public enum ManifestInput {
    public static func load(_ path: String) throws -> ManifestLoad {
        do { return try ManifestSource(path: path).load() } catch { throw SetupError.source("\(error)") }
    }
}
