import KubeModel

/// kube-proxy's configuration file, `kubeproxy.config.k8s.io/v1alpha1` `KubeProxyConfiguration`, with
/// kube-proxy's defaults applied. Every v1alpha1 field is read, including sections iptables mode does
/// not use (ipvs, nftables, winkernel), so a kubeadm-generated file loads without warnings.
public struct KubeProxyConfiguration: Hashable, Sendable {
    public static let apiVersion = "kubeproxy.config.k8s.io/v1alpha1"
    public static let kind = "KubeProxyConfiguration"

    /// Feature gate name -> enabled.
    public var featureGates: [String: Bool] = [:]
    public var clientConnection = ClientConnection()
    public var logging = Logging()
    /// The node name when non-empty (see `nodeName(flag:config:hostname:)`).
    public var hostnameOverride = ""
    /// Override of the node's primary IP; binds nothing. Default `0.0.0.0`.
    public var bindAddress = "0.0.0.0"
    /// `ip:port` of the /healthz server. Default `0.0.0.0:10256` (`[::]:10256` when bindAddress is IPv6).
    public var healthzBindAddress = "0.0.0.0:10256"
    /// `ip:port` of the /metrics server. Default `127.0.0.1:10249` (`[::1]:10249` when bindAddress is IPv6).
    public var metricsBindAddress = "127.0.0.1:10249"
    public var bindAddressHardFail = false
    public var enableProfiling = false
    public var showHiddenMetricsForVersion = ""
    /// Always `iptables` after validation: the only mode kube-natd implements.
    public var mode = "iptables"
    public var iptables = IPTables()
    public var ipvs = IPVS()
    public var nftables = NFTables()
    public var winkernel = Winkernel()
    public var detectLocalMode = LocalMode.clusterCIDR
    public var detectLocal = DetectLocal()
    /// One CIDR, or a comma-separated dual-stack pair; "" for none. See `clusterCIDRs`.
    public var clusterCIDR = ""
    /// CIDRs and/or the keywords `primary`, `localhost`, `all`; empty means all local addresses.
    public var nodePortAddresses: [String] = []
    public var oomScoreAdj = -999
    public var conntrack = Conntrack()
    /// Informer resync period. Default 15m.
    public var configSyncPeriod = GoDuration.minutes(15)
    /// Unused since the userspace proxy went away; still validated as a port range.
    public var portRange = ""
    public var windowsRunAsService = false

    public init() {}

    /// `clientConnection`: how to reach the apiserver.
    public struct ClientConnection: Hashable, Sendable {
        public var kubeconfig = ""
        public var acceptContentTypes = ""
        public var contentType = "application/vnd.kubernetes.protobuf"
        public var qps: Double = 5
        public var burst = 10
        public init() {}
    }

    /// `logging`: component-base's LoggingConfiguration.
    public struct Logging: Hashable, Sendable {
        public var format = "text"
        public var flushFrequency = GoDuration.seconds(5)
        public var verbosity = 0
        public var vmodule: [VModule] = []
        /// `logging.options` (per-format settings such as `json.infoBufferSize`), kept as written.
        public var options: ConfigValue = .map([])
        public init() {}
    }

    /// One `logging.vmodule` entry.
    public struct VModule: Hashable, Sendable {
        public var filePattern: String
        public var verbosity: Int
        public init(filePattern: String, verbosity: Int) {
            self.filePattern = filePattern
            self.verbosity = verbosity
        }
    }

    /// `iptables`: the section kube-natd runs on.
    public struct IPTables: Hashable, Sendable {
        /// Mark bit for SNAT, 0...31; mark is `1 << masqueradeBit`. Default 14.
        public var masqueradeBit = 14
        public var masqueradeAll = false
        /// Allow NodePorts on 127.0.0.1 (IPv4 only). Default true.
        public var localhostNodePorts = true
        /// Newer v1alpha1 field (SNAT with the node's InternalIP); read and kept, not implemented.
        public var snatNodeInternalIP = false
        public var syncPeriod = GoDuration.seconds(30)
        public var minSyncPeriod = GoDuration.seconds(1)
        public init() {}
    }

    /// `ipvs`: read for compatibility, unused.
    public struct IPVS: Hashable, Sendable {
        public var syncPeriod = GoDuration.seconds(30)
        public var minSyncPeriod = GoDuration.zero
        public var scheduler = ""
        public var excludeCIDRs: [String] = []
        public var strictARP = false
        public var tcpTimeout = GoDuration.zero
        public var tcpFinTimeout = GoDuration.zero
        public var udpTimeout = GoDuration.zero
        public init() {}
    }

    /// `nftables`: read for compatibility, unused.
    public struct NFTables: Hashable, Sendable {
        public var masqueradeBit = 14
        public var masqueradeAll = false
        public var syncPeriod = GoDuration.seconds(30)
        public var minSyncPeriod = GoDuration.seconds(1)
        public init() {}
    }

    /// `winkernel`: read for compatibility, unused.
    public struct Winkernel: Hashable, Sendable {
        public var networkName = ""
        public var sourceVip = ""
        public var enableDSR = false
        public var rootHnsEndpointName = ""
        public var forwardHealthCheckVip = false
        public init() {}
    }

    /// `detectLocal`: settings for the interface-based `detectLocalMode`s.
    public struct DetectLocal: Hashable, Sendable {
        public var bridgeInterface = ""
        public var interfaceNamePrefix = ""
        public init() {}
    }

    /// `conntrack`: sysctls kube-proxy sets; 0 means "leave the kernel's value".
    public struct Conntrack: Hashable, Sendable {
        public var maxPerCore = 32768
        public var min = 131072
        public var tcpEstablishedTimeout = GoDuration.hours(24)
        public var tcpCloseWaitTimeout = GoDuration.hours(1)
        /// When set there is no INVALID DROP rule.
        public var tcpBeLiberal = false
        public var udpTimeout = GoDuration.zero
        public var udpStreamTimeout = GoDuration.zero
        public init() {}
    }

    /// `detectLocalMode`: how traffic from local pods is recognised.
    public enum LocalMode: String, Hashable, Sendable, CaseIterable {
        case clusterCIDR = "ClusterCIDR"
        case nodeCIDR = "NodeCIDR"
        case bridgeInterface = "BridgeInterface"
        case interfaceNamePrefix = "InterfaceNamePrefix"
    }

    /// `clusterCIDR` parsed (invalid entries dropped; validation reports them).
    public var clusterCIDRs: [CIDR] {
        clusterCIDR.split(separator: ",").compactMap { CIDR($0) }
    }
}

// MARK: - Loading

/// A configuration that loaded, with what the operator should be told about it.
public struct LoadedConfiguration: Hashable, Sendable {
    public var configuration: KubeProxyConfiguration
    public var warnings: [ConfigWarning]
}

extension KubeProxyConfiguration {
    /// kube-proxy's defaults (what an empty file or no `--config` at all gives).
    public static var defaults: KubeProxyConfiguration {
        var c = KubeProxyConfiguration()
        c.applyDerivedDefaults()
        return c
    }

    /// Parses, defaults and validates configuration text (YAML or JSON). Unknown fields become warnings;
    /// every problem found is thrown together.
    public static func parse(_ text: String) throws(ConfigurationError) -> LoadedConfiguration {
        try load(configText: text, overrides: ConfigOverrides())
    }

    /// Builds the effective configuration as kube-proxy does: from the file when `configText` is given
    /// (then only `--hostname-override` among the flags applies; the rest are reported as ignored), or
    /// from the flags on top of the defaults when it is not. Flag values get the same validation as file values.
    public static func load(configText: String?, overrides: ConfigOverrides) throws(ConfigurationError)
        -> LoadedConfiguration
    {
        let sink = DecodeSink()
        var tree: ConfigValue
        if let configText {
            tree = try ConfigValue.parse(configText)
            if case .null = tree { tree = .map([]) }
        } else {
            tree = .map([
                ConfigEntry(key: "apiVersion", value: .string(apiVersion)),
                ConfigEntry(key: "kind", value: .string(kind)),
            ])
        }
        overrides.apply(to: &tree, configFileGiven: configText != nil, sink: sink)
        var config = decode(tree, sink: sink)
        if configText == nil {
            overrides.applyDeprecatedPorts(to: &config, sink: sink)
        } else {
            for flag in ["--healthz-port", "--metrics-port"]
            where (flag == "--healthz-port" ? overrides.healthzPort : overrides.metricsPort) != nil {
                sink.warning(.flagIgnored(flag: flag))
            }
        }
        config.validate(sink: sink)
        if !sink.problems.isEmpty { throw ConfigurationError(sink.problems) }
        return LoadedConfiguration(configuration: config, warnings: sink.warnings)
    }

    static func decode(_ tree: ConfigValue, sink: DecodeSink) -> KubeProxyConfiguration {
        var c = KubeProxyConfiguration()
        let top = SectionReader(tree, path: "", sink: sink)
        if case .map = tree {} else { return c }

        let apiVersion = top.string("apiVersion") ?? ""
        if apiVersion != Self.apiVersion { sink.problem(.wrongAPIVersion(got: apiVersion)) }
        let kind = top.string("kind") ?? ""
        if kind != Self.kind { sink.problem(.wrongKind(got: kind)) }

        if let gates = top.raw("featureGates") {
            if case .map(let entries) = gates {
                for e in entries {
                    if case .bool(let b) = e.value {
                        c.featureGates[e.key] = b
                    } else {
                        sink.problem(
                            .wrongType(path: "featureGates.\(e.key)", expected: "true or false", got: e.value.shown))
                    }
                }
            } else {
                sink.problem(.wrongType(path: "featureGates", expected: "an object", got: gates.shown))
            }
        }

        let cc = top.section("clientConnection")
        c.clientConnection.kubeconfig = cc.string("kubeconfig") ?? ""
        c.clientConnection.acceptContentTypes = cc.string("acceptContentTypes") ?? ""
        c.clientConnection.contentType = nonEmpty(cc.string("contentType")) ?? c.clientConnection.contentType
        c.clientConnection.qps = nonZero(cc.float("qps")) ?? c.clientConnection.qps
        c.clientConnection.burst = nonZero(cc.int32("burst")) ?? c.clientConnection.burst
        cc.finish()

        let lg = top.section("logging")
        c.logging.format = nonEmpty(lg.string("format")) ?? c.logging.format
        if let v = lg.raw("flushFrequency") {
            // component-base's TimeOrMetaDuration: a duration string or integer nanoseconds.
            switch v {
            case .string(let s) where GoDuration(parsing: s) != nil:
                let d = GoDuration(parsing: s)!
                if d != .zero { c.logging.flushFrequency = d }
            case .int(let ns):
                if ns != 0 { c.logging.flushFrequency = GoDuration(nanoseconds: Int64(ns)) }
            default:
                sink.problem(.wrongType(path: "logging.flushFrequency", expected: "a duration", got: v.shown))
            }
        }
        c.logging.verbosity = lg.int32("verbosity") ?? 0
        for (i, item) in (lg.list("vmodule") ?? []).enumerated() {
            let r = SectionReader(item, path: "logging.vmodule[\(i)]", sink: sink)
            c.logging.vmodule.append(
                VModule(filePattern: r.string("filePattern") ?? "", verbosity: r.int32("verbosity") ?? 0))
            r.finish()
        }
        if let options = lg.raw("options") { c.logging.options = options }
        lg.finish()

        c.hostnameOverride = top.string("hostnameOverride") ?? ""
        c.bindAddress = nonEmpty(top.string("bindAddress")) ?? c.bindAddress
        c.healthzBindAddress = top.string("healthzBindAddress") ?? ""
        c.metricsBindAddress = top.string("metricsBindAddress") ?? ""
        c.bindAddressHardFail = top.bool("bindAddressHardFail") ?? false
        c.enableProfiling = top.bool("enableProfiling") ?? false
        c.showHiddenMetricsForVersion = top.string("showHiddenMetricsForVersion") ?? ""
        // Kept as written until validation, which rejects anything but iptables.
        c.mode = top.string("mode") ?? ""

        let ipt = top.section("iptables")
        c.iptables.masqueradeBit = ipt.int32("masqueradeBit") ?? 14
        c.iptables.masqueradeAll = ipt.bool("masqueradeAll") ?? false
        c.iptables.localhostNodePorts = ipt.bool("localhostNodePorts") ?? true
        c.iptables.snatNodeInternalIP = ipt.bool("snatNodeInternalIP") ?? false
        c.iptables.syncPeriod = nonZero(ipt.duration("syncPeriod")) ?? .seconds(30)
        c.iptables.minSyncPeriod = nonZero(ipt.duration("minSyncPeriod")) ?? .seconds(1)
        ipt.finish()

        let ipvs = top.section("ipvs")
        c.ipvs.syncPeriod = nonZero(ipvs.duration("syncPeriod")) ?? .seconds(30)
        c.ipvs.minSyncPeriod = ipvs.duration("minSyncPeriod") ?? .zero
        c.ipvs.scheduler = ipvs.string("scheduler") ?? ""
        c.ipvs.excludeCIDRs = ipvs.stringList("excludeCIDRs") ?? []
        c.ipvs.strictARP = ipvs.bool("strictARP") ?? false
        c.ipvs.tcpTimeout = ipvs.duration("tcpTimeout") ?? .zero
        c.ipvs.tcpFinTimeout = ipvs.duration("tcpFinTimeout") ?? .zero
        c.ipvs.udpTimeout = ipvs.duration("udpTimeout") ?? .zero
        ipvs.finish()

        let nft = top.section("nftables")
        c.nftables.masqueradeBit = nft.int32("masqueradeBit") ?? 14
        c.nftables.masqueradeAll = nft.bool("masqueradeAll") ?? false
        c.nftables.syncPeriod = nonZero(nft.duration("syncPeriod")) ?? .seconds(30)
        c.nftables.minSyncPeriod = nonZero(nft.duration("minSyncPeriod")) ?? .seconds(1)
        nft.finish()

        let wk = top.section("winkernel")
        c.winkernel.networkName = wk.string("networkName") ?? ""
        c.winkernel.sourceVip = wk.string("sourceVip") ?? ""
        c.winkernel.enableDSR = wk.bool("enableDSR") ?? false
        c.winkernel.rootHnsEndpointName = wk.string("rootHnsEndpointName") ?? ""
        c.winkernel.forwardHealthCheckVip = wk.bool("forwardHealthCheckVip") ?? false
        wk.finish()

        if let mode = nonEmpty(top.string("detectLocalMode")) {
            if let m = LocalMode(rawValue: mode) {
                c.detectLocalMode = m
            } else {
                sink.problem(
                    .invalid(
                        path: "detectLocalMode",
                        reason: "must be one of " + LocalMode.allCases.map(\.rawValue).joined(separator: ", "),
                        got: "\"\(mode)\""))
            }
        }
        let dl = top.section("detectLocal")
        c.detectLocal.bridgeInterface = dl.string("bridgeInterface") ?? ""
        c.detectLocal.interfaceNamePrefix = dl.string("interfaceNamePrefix") ?? ""
        dl.finish()
        c.clusterCIDR = top.string("clusterCIDR") ?? ""
        c.nodePortAddresses = top.stringList("nodePortAddresses") ?? []
        c.oomScoreAdj = top.int32("oomScoreAdj") ?? -999

        let ct = top.section("conntrack")
        c.conntrack.maxPerCore = ct.int32("maxPerCore") ?? 32768
        c.conntrack.min = ct.int32("min") ?? 131072
        c.conntrack.tcpEstablishedTimeout = ct.duration("tcpEstablishedTimeout") ?? .hours(24)
        c.conntrack.tcpCloseWaitTimeout = ct.duration("tcpCloseWaitTimeout") ?? .hours(1)
        c.conntrack.tcpBeLiberal = ct.bool("tcpBeLiberal") ?? false
        c.conntrack.udpTimeout = ct.duration("udpTimeout") ?? .zero
        c.conntrack.udpStreamTimeout = ct.duration("udpStreamTimeout") ?? .zero
        ct.finish()

        c.configSyncPeriod = nonZero(top.duration("configSyncPeriod")) ?? .minutes(15)
        c.portRange = top.string("portRange") ?? ""
        c.windowsRunAsService = top.bool("windowsRunAsService") ?? false
        top.finish()

        c.applyDerivedDefaults()
        return c
    }

    /// Defaults that depend on other fields (kube-proxy's `SetDefaults_KubeProxyConfiguration`).
    mutating func applyDerivedDefaults() {
        if bindAddress.isEmpty { bindAddress = "0.0.0.0" }
        let ipv6 = IPAddress(bindAddress)?.family == .ipv6
        healthzBindAddress =
            healthzBindAddress.isEmpty
            ? (ipv6 ? "[::]:10256" : "0.0.0.0:10256") : Self.appendPortIfNeeded(healthzBindAddress, port: 10256)
        metricsBindAddress =
            metricsBindAddress.isEmpty
            ? (ipv6 ? "[::1]:10249" : "127.0.0.1:10249") : Self.appendPortIfNeeded(metricsBindAddress, port: 10249)
        if mode.isEmpty { mode = "iptables" }
    }

    /// kube-proxy's `AppendPortIfNeeded`: a bare IP gets the default port; anything else is left alone.
    static func appendPortIfNeeded(_ address: String, port: Int) -> String {
        guard let ip = IPAddress(address) else { return address }
        return ip.joined(port: port)
    }
}

private func nonEmpty(_ s: String?) -> String? { (s?.isEmpty ?? true) ? nil : s }
private func nonZero<T: Equatable & ExpressibleByIntegerLiteral>(_ v: T?) -> T? { v == 0 ? nil : v }
private func nonZero(_ v: GoDuration?) -> GoDuration? { v == .zero ? nil : v }
