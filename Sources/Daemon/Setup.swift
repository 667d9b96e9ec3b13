import Foundation
import KubeModel
import KubeSource
import ProxyConfig
import RuleCompiler
import Ruleset

/// Which families a run programs (`--ip-family`).
public enum FamilySelection: String, CaseIterable, Sendable {
    /// As kube-proxy: every family this node's kernel can take, the primary one required.
    case auto
    case ipv4, ipv6, dual

    /// The families of an explicit choice; nil for `auto`.
    public var explicitFamilies: [IPFamily]? {
        switch self {
        case .auto: nil
        case .ipv4: [.ipv4]
        case .ipv6: [.ipv6]
        case .dual: [.ipv4, .ipv6]
        }
    }

    /// The families to program: an explicit choice as given; `auto` as upstream's `platformCheckSupported` (every
    /// family the kernel supports; an error when that does not include the primary family).
    public func families(primary: IPFamily, support: FamilySupport) throws -> [IPFamily] {
        if let explicit = self.explicitFamilies { return explicit }
        guard support.supports(primary) else {
            throw SetupError.source("no support for primary IP family \"\(primary.rawValue)\" in this kernel (\(support))")
        }
        return IPFamily.allFamilies.filter { support.supports($0) }
    }
}

extension IPFamily {
    /// IPv4 then IPv6: the order rulesets are compiled, applied and printed in.
    public static let allFamilies: [IPFamily] = [.ipv4, .ipv6]
}

/// Which IP families this node's kernel can program. Upstream runs `iptables`/`ip6tables` to see; kube-natd reads
/// the kernel: IPv6 when the kernel has IPv6 (`/proc/net/if_inet6`, absent with `ipv6.disable=1`) and can hold ip6
/// tables (`/proc/net/ip6_tables_names`: ip6_tables built in or loaded; or nf_tables loaded, which serves every
/// family). IPv4 is assumed: a kernel without it cannot run kube-natd at all, and the backend says so.
public struct FamilySupport: Hashable, Sendable, CustomStringConvertible {
    public var ipv4: Bool
    public var ipv6: Bool

    public init(ipv4: Bool = true, ipv6: Bool) {
        self.ipv4 = ipv4
        self.ipv6 = ipv6
    }

    public func supports(_ family: IPFamily) -> Bool { family == .ipv4 ? self.ipv4 : self.ipv6 }

    /// Reads this network namespace's view of the kernel (`root` is /proc's parent: tests point it elsewhere).
    public static func detect(root: String = "") -> FamilySupport {
        let exists = { (path: String) in FileManager.default.fileExists(atPath: root + path) }
        let ipv6 = exists("/proc/net/if_inet6") && (exists("/proc/net/ip6_tables_names") || exists("/sys/module/nf_tables"))
        return FamilySupport(ipv4: true, ipv6: ipv6)
    }

    public var description: String {
        "IPv4 \(self.ipv4 ? "supported" : "not supported"), IPv6 \(self.ipv6 ? "supported" : "not supported")"
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
    /// The node IP of each family (upstream's `detectNodeIPs`): `bindAddress` for its family when set, else the
    /// Node's (`hostIPs(of:)`), else (no Node: manifests without one) the first address of the family on this
    /// namespace's interfaces, else the loopback address.
    public var nodeIPs: [IPAddress]
    /// The family of the first node IP: `bindAddress`'s, else the Node's first address's, else IPv4.
    public var primaryFamily: IPFamily = .ipv4
    /// The Node's `spec.podCIDRs` (the NodeCIDR detector takes the first of each family).
    public var podCIDRs: [CIDR] = []
    /// Every address on this namespace's interfaces, loopback included, read on each sync: what `nodePortAddresses`
    /// CIDRs are matched against (nil: matched against the node IPs).
    public var localAddresses: [IPAddress]?
    /// `--rule-layout`: which generation of kube-proxy's layout the compiler writes.
    public var ruleLayout: RuleLayout = .current

    public init(configuration: KubeProxyConfiguration, warnings: [ConfigWarning] = [], nodeName: String,
                nodeIPs: [IPAddress], primaryFamily: IPFamily = .ipv4, podCIDRs: [CIDR] = []) {
        self.configuration = configuration
        self.warnings = warnings
        self.nodeName = nodeName
        self.nodeIPs = nodeIPs
        self.primaryFamily = primaryFamily
        self.podCIDRs = podCIDRs
    }

    /// The first pod CIDR (single-stack callers).
    public var podCIDR: CIDR? { self.podCIDRs.first }

    /// Loads `--config` (or the flags alone) the way kube-proxy does. `probeInterfaces` reads this namespace's
    /// addresses for the node IPs a Node would give (until one does).
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
        var setup = NodeSetup(configuration: c, warnings: loaded.warnings, nodeName: name, nodeIPs: [])
        let raw = probeInterfaces ? Self.interfaceHostIPs(LocalAddresses.all()) : []
        (setup.primaryFamily, setup.nodeIPs) = Self.detectNodeIPs(raw, bindAddress: c.bindAddress)
        return setup
    }

    /// Without a Node: the first usable address of each family on the interfaces (not loopback, not link-local),
    /// in the order `hostIPs(of:)` returns a Node's.
    static func interfaceHostIPs(_ addresses: [IPAddress]) -> [IPAddress] {
        let usable = addresses.filter { !$0.isLoopback && !Self.isLinkLocal($0) && !Self.isUnspecified($0) }
        guard let first = usable.first else { return [] }
        return [first] + usable.filter { $0.family != first.family }.prefix(1)
    }

    /// Upstream's `GetNodeHostIPs`: the Node's InternalIPs, then its ExternalIPs; the first of them, and the first
    /// of the other family if there is one. Empty when the Node lists no IP (upstream keeps waiting then).
    public static func hostIPs(of node: Node) -> [IPAddress] {
        let all = node.addresses.filter { $0.type == "InternalIP" }.map(\.address)
            + node.addresses.filter { $0.type == "ExternalIP" }.map(\.address)
        guard let first = all.first else { return [] }
        return [first] + all.filter { $0.family != first.family }.prefix(1)
    }

    /// Upstream's `detectNodeIPs`: the primary family and one IP per family, from the Node's host IPs and
    /// `bindAddress` (which, unless unspecified, overrides the IP of its family and makes that family primary);
    /// loopback for a family nothing names.
    public static func detectNodeIPs(_ hostIPs: [IPAddress], bindAddress: String) -> (IPFamily, [IPAddress]) {
        var primary = IPFamily.ipv4
        var byFamily: [IPFamily: IPAddress] = [.ipv4: IPAddress("127.0.0.1")!, .ipv6: IPAddress("::1")!]
        if let first = hostIPs.first {
            primary = first.family
            for ip in hostIPs.prefix(2) { byFamily[ip.family] = ip }
        }
        if let bind = IPAddress(bindAddress), !Self.isUnspecified(bind) {
            primary = bind.family
            byFamily[bind.family] = bind
        }
        let order = primary == .ipv4 ? [IPFamily.ipv4, .ipv6] : [.ipv6, .ipv4]
        return (primary, order.map { byFamily[$0]! })
    }

    /// This setup with the Node's node IPs, primary family and pod CIDRs.
    public func applying(_ node: Node) -> NodeSetup {
        var s = self
        (s.primaryFamily, s.nodeIPs) = Self.detectNodeIPs(Self.hostIPs(of: node), bindAddress: self.configuration.bindAddress)
        s.podCIDRs = node.podCIDRs
        return s
    }

    static func isUnspecified(_ ip: IPAddress) -> Bool { ip.high == 0 && ip.low == 0 }
    static func isLinkLocal(_ ip: IPAddress) -> Bool { ip.isIPv6 && (ip.high >> 54) == 0x3FA }

    public func settings(for family: IPFamily, features: KernelFeatures) -> NodeSettings {
        configuration.nodeSettings(family: family, nodeName: nodeName, nodeIPs: nodeIPs,
                                   podCIDR: podCIDRs.first { $0.family == family }, features: features,
                                   ruleLayout: ruleLayout, localAddresses: localAddresses)
    }
}

/// Loads a manifest source into cluster state, keeping the issues for the operator.
public enum ManifestInput {
    public static func load(_ path: String) throws -> ManifestLoad {
        do { return try ManifestSource(path: path).load() } catch { throw SetupError.source("\(error)") }
    }
}
