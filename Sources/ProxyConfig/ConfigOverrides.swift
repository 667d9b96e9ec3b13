/// The kube-proxy command-line flags that map onto KubeProxyConfiguration fields; nil means "flag not given".
///
/// Precedence follows kube-proxy's `cmd/kube-proxy/app/options.go`: the flags are bound to the same
/// config struct the file is decoded into, and a `--config` file replaces that struct wholesale, so
/// **when `--config` is given every flag below is ignored except `--hostname-override`**, which
/// kube-proxy re-applies after loading the file (`processHostnameOverrideFlag`: the flag wins).
/// kube-natd reports each ignored flag as a `ConfigWarning.flagIgnored` instead of dropping it silently.
/// `--master` is not a config field: it always applies, and the daemon reads it from here.
/// Without `--config`, flags are written over the defaults and then defaulted and validated exactly as
/// file values are; problems name the flag (`--iptables-masquerade-bit: iptables.masqueradeBit: ...`).
public struct ConfigOverrides: Hashable, Sendable {
    /// `--hostname-override`
    public var hostnameOverride: String?
    /// `--bind-address`
    public var bindAddress: String?
    /// `--healthz-bind-address`
    public var healthzBindAddress: String?
    /// `--metrics-bind-address`
    public var metricsBindAddress: String?
    /// `--bind-address-hard-fail`
    public var bindAddressHardFail: Bool?
    /// `--profiling`
    public var enableProfiling: Bool?
    /// `--show-hidden-metrics-for-version`
    public var showHiddenMetricsForVersion: String?
    /// `--cluster-cidr`
    public var clusterCIDR: String?
    /// `--masquerade-all`
    public var masqueradeAll: Bool?
    /// `--iptables-masquerade-bit`
    public var iptablesMasqueradeBit: Int?
    /// `--iptables-sync-period`
    public var iptablesSyncPeriod: GoDuration?
    /// `--iptables-min-sync-period`
    public var iptablesMinSyncPeriod: GoDuration?
    /// `--iptables-localhost-nodeports`
    public var iptablesLocalhostNodePorts: Bool?
    /// `--nodeport-addresses` (comma-separated on the command line; split by the caller or here).
    public var nodePortAddresses: [String]?
    /// `--detect-local-mode`
    public var detectLocalMode: String?
    /// `--pod-bridge-interface`
    public var podBridgeInterface: String?
    /// `--pod-interface-name-prefix`
    public var podInterfaceNamePrefix: String?
    /// `--conntrack-max-per-core`
    public var conntrackMaxPerCore: Int?
    /// `--conntrack-min`
    public var conntrackMin: Int?
    /// `--conntrack-tcp-timeout-established`
    public var conntrackTCPEstablishedTimeout: GoDuration?
    /// `--conntrack-tcp-timeout-close-wait`
    public var conntrackTCPCloseWaitTimeout: GoDuration?
    /// `--conntrack-tcp-be-liberal`
    public var conntrackTCPBeLiberal: Bool?
    /// `--conntrack-udp-timeout`
    public var conntrackUDPTimeout: GoDuration?
    /// `--conntrack-udp-timeout-stream`
    public var conntrackUDPStreamTimeout: GoDuration?
    /// `--kubeconfig`
    public var kubeconfig: String?
    /// `--kube-api-content-type`
    public var kubeAPIContentType: String?
    /// `--kube-api-qps`
    public var kubeAPIQPS: Double?
    /// `--kube-api-burst`
    public var kubeAPIBurst: Int?
    /// `--master`: apiserver URL overriding the kubeconfig's; not part of the config file, never ignored.
    public var master: String?
    /// `--proxy-mode`
    public var proxyMode: String?
    /// `--oom-score-adj`
    public var oomScoreAdj: Int?
    /// `--config-sync-period`
    public var configSyncPeriod: GoDuration?
    /// `--feature-gates` (already split into name -> enabled).
    public var featureGates: [String: Bool]?
    /// `-v` / `--v`
    public var verbosity: Int?
    /// `--vmodule`
    public var vmodule: [KubeProxyConfiguration.VModule]?
    /// `--logging-format`
    public var loggingFormat: String?
    /// `--log-flush-frequency`
    public var logFlushFrequency: GoDuration?
    /// `--healthz-port` (deprecated upstream): combined with the healthz address as kube-proxy does; 0 disables.
    public var healthzPort: Int?
    /// `--metrics-port` (deprecated upstream): combined with the metrics address as kube-proxy does; 0 disables.
    public var metricsPort: Int?

    public init() {}

    /// Parses `--feature-gates` text (`A=true,B=false`) as component-base does; the error names the bad entry.
    public static func parseFeatureGates(_ text: String) throws(ConfigurationError) -> [String: Bool] {
        var gates: [String: Bool] = [:]
        for part in text.split(separator: ",") {
            let entry = part.trimmingWhitespace()
            if entry.isEmpty { continue }
            let pieces = entry.split(separator: "=", maxSplits: 1).map { $0.trimmingWhitespace() }
            guard pieces.count == 2, !pieces[0].isEmpty, let value = Bool(pieces[1].lowercased()) else {
                throw ConfigurationError([
                    .viaFlag(
                        flag: "--feature-gates",
                        .invalid(path: "featureGates", reason: "entries must be Name=true|false", got: "\"\(entry)\""))
                ])
            }
            gates[pieces[0]] = value
        }
        return gates
    }

    /// (flag, config path, value) for every flag that was given, in flag order.
    var assignments: [(flag: String, path: String, value: ConfigValue)] {
        var out: [(String, String, ConfigValue)] = []
        func add(_ flag: String, _ path: String, _ v: ConfigValue?) {
            if let v { out.append((flag, path, v)) }
        }
        add("--hostname-override", "hostnameOverride", hostnameOverride.map { .string($0) })
        add("--bind-address", "bindAddress", bindAddress.map { .string($0) })
        add("--healthz-bind-address", "healthzBindAddress", healthzBindAddress.map { .string($0) })
        add("--metrics-bind-address", "metricsBindAddress", metricsBindAddress.map { .string($0) })
        add("--bind-address-hard-fail", "bindAddressHardFail", bindAddressHardFail.map { .bool($0) })
        add("--profiling", "enableProfiling", enableProfiling.map { .bool($0) })
        add(
            "--show-hidden-metrics-for-version", "showHiddenMetricsForVersion",
            showHiddenMetricsForVersion.map { .string($0) })
        add("--cluster-cidr", "clusterCIDR", clusterCIDR.map { .string($0) })
        add("--masquerade-all", "iptables.masqueradeAll", masqueradeAll.map { .bool($0) })
        add("--iptables-masquerade-bit", "iptables.masqueradeBit", iptablesMasqueradeBit.map { .int($0) })
        add("--iptables-sync-period", "iptables.syncPeriod", iptablesSyncPeriod.map { .string($0.description) })
        add(
            "--iptables-min-sync-period", "iptables.minSyncPeriod",
            iptablesMinSyncPeriod.map { .string($0.description) })
        add(
            "--iptables-localhost-nodeports", "iptables.localhostNodePorts",
            iptablesLocalhostNodePorts.map { .bool($0) })
        add(
            "--nodeport-addresses", "nodePortAddresses",
            nodePortAddresses.map { list in
                .list(list.flatMap { $0.split(separator: ",") }.map { .string($0.trimmingWhitespace()) })
            })
        add("--detect-local-mode", "detectLocalMode", detectLocalMode.map { .string($0) })
        add("--pod-bridge-interface", "detectLocal.bridgeInterface", podBridgeInterface.map { .string($0) })
        add(
            "--pod-interface-name-prefix", "detectLocal.interfaceNamePrefix", podInterfaceNamePrefix.map { .string($0) }
        )
        add("--conntrack-max-per-core", "conntrack.maxPerCore", conntrackMaxPerCore.map { .int($0) })
        add("--conntrack-min", "conntrack.min", conntrackMin.map { .int($0) })
        add(
            "--conntrack-tcp-timeout-established", "conntrack.tcpEstablishedTimeout",
            conntrackTCPEstablishedTimeout.map { .string($0.description) })
        add(
            "--conntrack-tcp-timeout-close-wait", "conntrack.tcpCloseWaitTimeout",
            conntrackTCPCloseWaitTimeout.map { .string($0.description) })
        add("--conntrack-tcp-be-liberal", "conntrack.tcpBeLiberal", conntrackTCPBeLiberal.map { .bool($0) })
        add("--conntrack-udp-timeout", "conntrack.udpTimeout", conntrackUDPTimeout.map { .string($0.description) })
        add(
            "--conntrack-udp-timeout-stream", "conntrack.udpStreamTimeout",
            conntrackUDPStreamTimeout.map { .string($0.description) })
        add("--kubeconfig", "clientConnection.kubeconfig", kubeconfig.map { .string($0) })
        add("--kube-api-content-type", "clientConnection.contentType", kubeAPIContentType.map { .string($0) })
        add("--kube-api-qps", "clientConnection.qps", kubeAPIQPS.map { .float($0) })
        add("--kube-api-burst", "clientConnection.burst", kubeAPIBurst.map { .int($0) })
        add("--proxy-mode", "mode", proxyMode.map { .string($0) })
        add("--oom-score-adj", "oomScoreAdj", oomScoreAdj.map { .int($0) })
        add("--config-sync-period", "configSyncPeriod", configSyncPeriod.map { .string($0.description) })
        add(
            "--feature-gates", "featureGates",
            featureGates.map { gates in
                .map(gates.keys.sorted().map { ConfigEntry(key: $0, value: .bool(gates[$0]!)) })
            })
        add("-v", "logging.verbosity", verbosity.map { .int($0) })
        add(
            "--vmodule", "logging.vmodule",
            vmodule.map { list in
                .list(
                    list.map {
                        .map([
                            ConfigEntry(key: "filePattern", value: .string($0.filePattern)),
                            ConfigEntry(key: "verbosity", value: .int($0.verbosity)),
                        ])
                    })
            })
        add("--logging-format", "logging.format", loggingFormat.map { .string($0) })
        add("--log-flush-frequency", "logging.flushFrequency", logFlushFrequency.map { .string($0.description) })
        return out
    }

    /// The flags that apply even when `--config` is given: `--hostname-override` (kube-proxy's
    /// `processHostnameOverrideFlag`) and the logging flags (kube-proxy's `copyLogsFromFlags`: "command line
    /// flags have priority", so `--config FILE -v=5` works).
    static let appliesWithConfigFile: Set<String> = [
        "--hostname-override", "-v", "--vmodule", "--logging-format", "--log-flush-frequency",
    ]

    /// kube-proxy's `addressFromDeprecatedFlags`, applied without `--config` after defaulting: port 0 disables
    /// the server (empty address); otherwise the port is appended when the address is a bare IP. An empty
    /// `--metrics-bind-address`/`--healthz-bind-address` disables the server too ("Set empty to disable").
    func applyDeprecatedPorts(to c: inout KubeProxyConfiguration, sink: DecodeSink) {
        func address(_ flagAddress: String?, current: String, port: Int?) -> String {
            if flagAddress == "" { return "" }
            guard let port else { return current }
            if port == 0 { return "" }
            return KubeProxyConfiguration.appendPortIfNeeded(flagAddress ?? current, port: port)
        }
        for (flag, port) in [("--healthz-port", healthzPort), ("--metrics-port", metricsPort)] {
            if let port, !(0...65535).contains(port) {
                sink.problems.append(
                    .viaFlag(flag: flag, .invalid(path: String(flag.dropFirst(2)), reason: "must be 0..65535", got: String(port))))
            }
        }
        c.healthzBindAddress = address(healthzBindAddress, current: c.healthzBindAddress, port: healthzPort)
        c.metricsBindAddress = address(metricsBindAddress, current: c.metricsBindAddress, port: metricsPort)
    }

    /// Writes the given flags into the raw tree before decoding, so they are defaulted and validated
    /// like file values, and remembers which flag set which path for error messages.
    func apply(to tree: inout ConfigValue, configFileGiven: Bool, sink: DecodeSink) {
        for a in assignments {
            if configFileGiven && !Self.appliesWithConfigFile.contains(a.flag) {
                sink.warning(.flagIgnored(flag: a.flag))
                continue
            }
            var value = a.value
            if a.flag == "--hostname-override", case .string(let s) = value {
                // processHostnameOverrideFlag: an empty flag is "not given"; blanks are an error
                // ("empty hostname-override is invalid"); otherwise trimmed and lowercased.
                if s.isEmpty { continue }
                let name = s.trimmingWhitespace().lowercased()
                if name.isEmpty {
                    sink.problem(
                        .viaFlag(flag: a.flag, .invalid(path: a.path, reason: "must not be blank", got: "\"\(s)\"")))
                    continue
                }
                value = .string(name)
            }
            tree.set(a.path.split(separator: ".").map(String.init), to: value)
            sink.flagOrigins[a.path] = a.flag
        }
    }
}
