import KubeModel

/// kube-proxy's command line, read with pflag's syntax, so a kube-proxy DaemonSet's or unit's arguments work
/// unchanged.
///
/// One table (`KubeProxyFlag.all`) lists every flag of upstream's `cmd/kube-proxy/app/options.go` and the
/// component-base logging flags, each with its kind and what it does here. `KubeProxyCommandLine.parse` takes
/// them out of argv with pflag's rules and hands the rest (kube-natd's own flags) on to ArgumentParser:
///
/// - `--flag=value` for every kind; `--flag value` for every kind but booleans: a boolean never takes the next
///   argument, so `--masquerade-all --dry-run` is two flags; `--flag` alone means true, `--flag=false` false.
/// - `-v 4`, `-v=4` and `-v4` for the one shorthand (`-h` is help). `_` and `-` are the same in names
///   (component-base's `WordSepNormalizeFunc`: `--masquerade_all`).
/// - A repeated flag: the last value wins; `--feature-gates` merges; list flags append after the first.
/// - `--` ends flag parsing; everything after it goes on as it is.
public struct KubeProxyCommandLine: Sendable {
    /// The flags that map onto configuration fields.
    public var overrides = ConfigOverrides()
    /// `--config`
    public var configFile: String?
    /// `--write-config-to`
    public var writeConfigTo: String?
    /// `--cleanup`
    public var cleanup = false
    /// `--init-only`: the privileged node set-up (sysctls, OOM score), then exit.
    public var initOnly = false
    /// `-h` / `--help`
    public var help = false
    /// `--version` (`true` or `raw`), nil when not given.
    public var version: String?
    /// Upstream flags given, in command-line order, each once (`--masquerade-all`, `-v`).
    public var given: [String] = []
    /// What the operator should be told about the flags (not applicable, deprecated), each flag once.
    public var notices: [String] = []
    /// The arguments left for kube-natd's own flags, in order.
    public var remaining: [String] = []

    public init() {}

    /// Splits `arguments` (without the program name) into kube-proxy's flags and the rest.
    public static func parse(_ arguments: [String]) throws(FlagError) -> KubeProxyCommandLine {
        var line = KubeProxyCommandLine()
        var i = 0
        var seen: Set<String> = []
        while i < arguments.count {
            let arg = arguments[i]
            i += 1
            if arg == "--" {
                line.remaining.append(contentsOf: arguments[(i - 1)...])
                break
            }
            guard arg.hasPrefix("-"), arg.count > 1 else {
                line.remaining.append(arg)
                continue
            }
            let (flag, inline) = Self.split(arg)
            guard let flag else {
                line.remaining.append(arg)
                continue
            }
            var value: String
            if let inline {
                value = inline
            } else if flag.kind == .bool {
                value = "true"
            } else if flag.kind == .version {
                value = "true"  // pflag's NoOptDefVal
            } else if i < arguments.count {
                value = arguments[i]
                i += 1
            } else {
                throw FlagError(flag: flag.spelled, message: "flag needs an argument")
            }
            if flag.kind == .bool {
                guard let b = goBool(value) else {
                    throw FlagError(flag: flag.spelled, value: value, reason: "expected true or false")
                }
                value = b ? "true" : "false"
            }
            try flag.apply(&line, value, !seen.insert(flag.name).inserted)
            if !line.given.contains(flag.spelled) { line.given.append(flag.spelled) }
            if let notice = flag.use.notice(flag.spelled), !line.notices.contains(notice) {
                line.notices.append(notice)
            }
        }
        return line
    }

    /// The table row an argument names and its `=value` part; nil row for anything not kube-proxy's.
    static func split(_ arg: String) -> (KubeProxyFlag?, String?) {
        var body = Substring(arg)
        let long = body.hasPrefix("--")
        body = body.dropFirst(long ? 2 : 1)
        var name: Substring
        var inline: String?
        if let eq = body.firstIndex(of: "=") {
            name = body[..<eq]
            inline = String(body[body.index(after: eq)...])
        } else {
            name = body
        }
        if !long {
            // Shorthands: -v, -v=4, -v4, -h.
            guard let first = name.first, let flag = KubeProxyFlag.byShorthand[first] else { return (nil, nil) }
            if name.count > 1 {
                guard inline == nil, flag.kind != .bool else { return (nil, nil) }
                inline = String(name.dropFirst())
            }
            return (flag, inline)
        }
        let normalized = name.replacingOccurrences(of: "_", with: "-")
        return (KubeProxyFlag.byName[normalized], inline)
    }
}

/// A flag value pflag would refuse, named as pflag names it.
public struct FlagError: Error, Hashable, Sendable, CustomStringConvertible {
    public var flag: String
    public var message: String

    public init(flag: String, message: String) {
        self.flag = flag
        self.message = message
    }

    init(flag: String, value: String, reason: String) {
        self.init(flag: flag, message: "invalid argument \"\(value)\": \(reason)")
    }

    public var description: String { "\(flag): \(message)" }
}

/// What a kube-proxy flag does in kube-natd.
public enum FlagUse: Sendable, Hashable {
    /// Sets a configuration field or a run mode, as in kube-proxy.
    case effective
    /// Accepted for compatibility, no effect here (IPVS, profiling); the reason is told once.
    case notApplicable(String)
    /// Works, but upstream marks it deprecated; the message is told once.
    case deprecated(String)

    func notice(_ flag: String) -> String? {
        switch self {
        case .effective: return nil
        case .notApplicable(let why): return "flag \(flag) has no effect in kube-natd: \(why)"
        case .deprecated(let message): return "flag \(flag) has been deprecated, \(message)"
        }
    }
}

/// How a flag's value is written (pflag's value types).
public enum FlagKind: String, Sendable {
    case bool, string, int32, uint32, float32, duration, strings, mapStringBool, ip, ipPort, level, pattern
    case quantity, version

    /// The type word pflag's usage shows (`--conntrack-min int32`); empty for booleans.
    var usageType: String {
        switch self {
        case .bool: return ""
        case .strings: return "strings"
        case .mapStringBool: return "mapStringBool"
        case .level: return "Level"
        case .pattern: return "pattern=N,..."
        case .version: return "version[=true]"
        default: return rawValue
        }
    }
}

/// One row of the flag table.
public struct KubeProxyFlag: Sendable {
    /// The long name without dashes.
    public let name: String
    public let shorthand: Character?
    public let kind: FlagKind
    public let use: FlagUse
    /// Upstream's default as its usage shows it ("" for none).
    public let defaultText: String
    /// Upstream's usage text.
    public let help: String
    /// Applies a value (booleans already normalized to "true"/"false"); the Bool says the flag was seen before.
    let apply: @Sendable (inout KubeProxyCommandLine, String, Bool) throws(FlagError) -> Void

    var spelled: String { self.name == "v" ? "-v" : "--\(self.name)" }

    static let byName: [String: KubeProxyFlag] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
    static let byShorthand: [Character: KubeProxyFlag] = Dictionary(
        uniqueKeysWithValues: all.compactMap { f in f.shorthand.map { ($0, f) } })
}

// MARK: - Value parsing, as Go's strconv and pflag do it

/// Go's `strconv.ParseBool`.
func goBool(_ s: String) -> Bool? {
    switch s {
    case "1", "t", "T", "TRUE", "true", "True": return true
    case "0", "f", "F", "FALSE", "false", "False": return false
    default: return nil
    }
}

extension KubeProxyFlag {
    typealias Apply = @Sendable (inout KubeProxyCommandLine, String, Bool) throws(FlagError) -> Void

    private static func row(
        _ name: String, _ kind: FlagKind, _ defaultText: String, _ help: String, use: FlagUse = .effective,
        shorthand: Character? = nil, _ apply: @escaping Apply
    ) -> KubeProxyFlag {
        KubeProxyFlag(
            name: name, shorthand: shorthand, kind: kind, use: use, defaultText: defaultText, help: help, apply: apply)
    }

    private static func bad(_ name: String, _ value: String, _ reason: String) -> FlagError {
        FlagError(flag: name == "v" ? "-v" : "--\(name)", value: value, reason: reason)
    }

    static func bool(
        _ name: String, _ path: WritableKeyPath<ConfigOverrides, Bool?>, _ d: String, _ help: String,
        use: FlagUse = .effective
    ) -> KubeProxyFlag {
        row(name, .bool, d, help, use: use) { line, v, _ in line.overrides[keyPath: path] = v == "true" }
    }

    static func string(
        _ name: String, _ path: WritableKeyPath<ConfigOverrides, String?>, _ d: String, _ help: String,
        use: FlagUse = .effective, kind: FlagKind = .string
    ) -> KubeProxyFlag {
        row(name, kind, d, help, use: use) { line, v, _ throws(FlagError) in
            if kind == .ip, !v.isEmpty, IPAddress(v) == nil { throw bad(name, v, "not a valid IP address") }
            line.overrides[keyPath: path] = v
        }
    }

    static func int(
        _ name: String, _ path: WritableKeyPath<ConfigOverrides, Int?>, _ d: String, _ help: String,
        use: FlagUse = .effective
    ) -> KubeProxyFlag {
        row(name, .int32, d, help, use: use) { line, v, _ throws(FlagError) in
            guard let n = Int32(v) else { throw bad(name, v, "expected a 32-bit integer") }
            line.overrides[keyPath: path] = Int(n)
        }
    }

    static func duration(
        _ name: String, _ path: WritableKeyPath<ConfigOverrides, GoDuration?>, _ d: String, _ help: String,
        use: FlagUse = .effective
    ) -> KubeProxyFlag {
        row(name, .duration, d, help, use: use) { line, v, _ throws(FlagError) in
            guard let duration = GoDuration(parsing: v) else {
                throw bad(name, v, "expected a duration such as 30s, 1m or 2h22m")
            }
            line.overrides[keyPath: path] = duration
        }
    }

    static func strings(
        _ name: String, _ path: WritableKeyPath<ConfigOverrides, [String]?>, _ d: String, _ help: String,
        use: FlagUse = .effective
    ) -> KubeProxyFlag {
        // pflag's StringSlice: comma-separated; the first use replaces the default, later uses append.
        row(name, .strings, d, help, use: use) { line, v, again in
            let items = v.isEmpty ? [] : v.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            line.overrides[keyPath: path] = again ? (line.overrides[keyPath: path] ?? []) + items : items
        }
    }

    /// A flag kube-natd takes and forgets (its value is still checked for its kind).
    static func inert(_ name: String, _ kind: FlagKind, _ d: String, _ help: String, use: FlagUse) -> KubeProxyFlag {
        row(name, kind, d, help, use: use) { _, v, _ throws(FlagError) in
            switch kind {
            case .duration where GoDuration(parsing: v) == nil:
                throw bad(name, v, "expected a duration such as 30s, 1m or 2h22m")
            case .int32 where Int32(v) == nil:
                throw bad(name, v, "expected a 32-bit integer")
            default: break
            }
        }
    }
}

// MARK: - The table

extension KubeProxyFlag {
    private static let ipvs =
        "kube-natd implements iptables mode only; IPVS flags are accepted so kube-proxy's arguments work"
    private static let profiling = "kube-natd serves no /debug/pprof"
    private static let hiddenMetrics = "kube-natd has no hidden metrics"
    private static let ignoredWithConfig = " This parameter is ignored if a config file is specified by --config."

    /// Every flag of kube-proxy (options.go, in its order) and component-base's logging flags.
    public static let all: [KubeProxyFlag] = [
        row("config", .string, "", "The path to the configuration file.") { line, v, _ in line.configFile = v },
        row("write-config-to", .string, "", "If set, write the default configuration values to this file and exit.") {
            line, v, _ in line.writeConfigTo = v
        },
        row("cleanup", .bool, "", "If true cleanup iptables and ipvs rules and exit.") { line, v, _ in
            line.cleanup = v == "true"
        },
        row(
            "feature-gates", .mapStringBool, "",
            "A set of key=value pairs that describe feature gates for alpha/experimental features. Options are:\n"
                + FeatureGates.usage + "\nThis parameter is ignored if a config file is specified by --config."
        ) { line, v, _ throws(FlagError) in
            let gates: [String: Bool]
            do { gates = try ConfigOverrides.parseFeatureGates(v) } catch {
                throw bad("feature-gates", v, "entries must be Name=true|false")
            }
            line.overrides.featureGates = (line.overrides.featureGates ?? [:]).merging(gates) { $1 }
        },
        string(
            "kubeconfig", \.kubeconfig, "",
            "Path to kubeconfig file with authorization information (the master location can be overridden by the master flag)."
        ),
        string("master", \.master, "", "The address of the Kubernetes API server (overrides any value in kubeconfig)"),
        string(
            "kube-api-content-type", \.kubeAPIContentType, "application/vnd.kubernetes.protobuf",
            "Content type of requests sent to apiserver."),
        int("kube-api-burst", \.kubeAPIBurst, "10", "Burst to use while talking with kubernetes apiserver"),
        row("kube-api-qps", .float32, "5", "QPS to use while talking with kubernetes apiserver") {
            line, v, _ throws(FlagError) in
            guard let q = Double(v), q.isFinite else { throw bad("kube-api-qps", v, "expected a number") }
            line.overrides.kubeAPIQPS = Double(Float(q))
        },
        string(
            "hostname-override", \.hostnameOverride, "",
            "If non-empty, will be used as the name of the Node that kube-proxy is running on. If unset, the node name is assumed to be the same as the node's hostname."
        ),
        string(
            "bind-address", \.bindAddress, "0.0.0.0",
            "Overrides kube-proxy's idea of what its node's primary IP is. Note that the name is a historical artifact, and kube-proxy does not actually bind any sockets to this IP."
                + ignoredWithConfig, kind: .ip),
        string(
            "healthz-bind-address", \.healthzBindAddress, "0.0.0.0:10256",
            "The IP address and port for the health check server to serve on, defaulting to \"0.0.0.0:10256\"."
                + ignoredWithConfig, kind: .ipPort),
        string(
            "metrics-bind-address", \.metricsBindAddress, "127.0.0.1:10249",
            "The IP address and port for the metrics server to serve on, defaulting to \"127.0.0.1:10249\". (Set to \"0.0.0.0:10249\" / \"[::]:10249\" to bind on all interfaces.) Set empty to disable."
                + ignoredWithConfig, kind: .ipPort),
        bool(
            "bind-address-hard-fail", \.bindAddressHardFail, "",
            "If true kube-proxy will treat failure to bind to a port as fatal and exit"),
        bool(
            "profiling", \.enableProfiling, "",
            "If true enables profiling via web interface on /debug/pprof handler." + ignoredWithConfig,
            use: .notApplicable(profiling)),
        string(
            "show-hidden-metrics-for-version", \.showHiddenMetricsForVersion, "",
            "The previous version for which you want to show hidden metrics. Only the previous minor version is meaningful, other values will not be allowed. The format is <major>.<minor>, e.g.: '1.16'."
                + ignoredWithConfig, use: .notApplicable(hiddenMetrics)),
        row(
            "init-only", .bool, "",
            "If true, perform any initialization steps that must be done with full root privileges, and then exit. After doing this, you can run kube-proxy again with only the CAP_NET_ADMIN capability."
        ) { line, v, _ in line.initOnly = v == "true" },
        string(
            "proxy-mode", \.proxyMode, "",
            "Which proxy mode to use: kube-natd implements 'iptables' (the default) only; 'ipvs' and 'nftables' are refused."
                + ignoredWithConfig),
        int(
            "iptables-masquerade-bit", \.iptablesMasqueradeBit, "14",
            "If using the iptables or ipvs proxy mode, the bit of the fwmark space to mark packets requiring SNAT with.  Must be within the range [0, 31]."
        ),
        bool(
            "masquerade-all", \.masqueradeAll, "",
            "SNAT all traffic sent via Service cluster IPs. This may be required with some CNI plugins. Only supported on Linux."
        ),
        bool(
            "iptables-localhost-nodeports", \.iptablesLocalhostNodePorts, "true",
            "If false, kube-proxy will disable the legacy behavior of allowing NodePort services to be accessed via localhost. (Applies only to iptables mode and IPv4; localhost NodePorts are never allowed with other proxy modes or with IPv6.)"
        ),
        duration(
            "iptables-sync-period", \.iptablesSyncPeriod, "30s",
            "An interval (e.g. '5s', '1m', '2h22m') indicating how frequently various re-synchronizing and cleanup operations are performed. Must be greater than 0."
        ),
        duration(
            "iptables-min-sync-period", \.iptablesMinSyncPeriod, "1s",
            "The minimum period between iptables rule resyncs (e.g. '5s', '1m', '2h22m'). A value of 0 means every Service or EndpointSlice change will result in an immediate iptables resync."
        ),
        inert(
            "ipvs-sync-period", .duration, "30s",
            "An interval (e.g. '5s', '1m', '2h22m') indicating how frequently various re-synchronizing and cleanup operations are performed. Must be greater than 0.",
            use: .notApplicable(ipvs)),
        inert(
            "ipvs-min-sync-period", .duration, "0s",
            "The minimum period between IPVS rule resyncs (e.g. '5s', '1m', '2h22m'). A value of 0 means every Service or EndpointSlice change will result in an immediate IPVS resync.",
            use: .notApplicable(ipvs)),
        inert(
            "ipvs-scheduler", .string, "", "The ipvs scheduler type when proxy mode is ipvs",
            use: .notApplicable(ipvs)),
        inert(
            "ipvs-exclude-cidrs", .strings, "[]",
            "A comma-separated list of CIDRs which the ipvs proxier should not touch when cleaning up IPVS rules.",
            use: .notApplicable(ipvs)),
        row(
            "ipvs-strict-arp", .bool, "", "Enable strict ARP by setting arp_ignore to 1 and arp_announce to 2",
            use: .notApplicable(ipvs)
        ) { _, _, _ in },
        inert(
            "ipvs-tcp-timeout", .duration, "0s",
            "The timeout for idle IPVS TCP connections, 0 to leave as-is. (e.g. '5s', '1m', '2h22m').",
            use: .notApplicable(ipvs)),
        inert(
            "ipvs-tcpfin-timeout", .duration, "0s",
            "The timeout for IPVS TCP connections after receiving a FIN packet, 0 to leave as-is. (e.g. '5s', '1m', '2h22m').",
            use: .notApplicable(ipvs)),
        inert(
            "ipvs-udp-timeout", .duration, "0s",
            "The timeout for IPVS UDP packets, 0 to leave as-is. (e.g. '5s', '1m', '2h22m').",
            use: .notApplicable(ipvs)),
        string(
            "detect-local-mode", \.detectLocalMode, "",
            "Mode to use to detect local traffic." + ignoredWithConfig),
        string(
            "pod-bridge-interface", \.podBridgeInterface, "",
            "A bridge interface name. When --detect-local-mode is set to BridgeInterface, kube-proxy will consider traffic to be local if it originates from this bridge."
        ),
        string(
            "pod-interface-name-prefix", \.podInterfaceNamePrefix, "",
            "An interface name prefix. When --detect-local-mode is set to InterfaceNamePrefix, kube-proxy will consider traffic to be local if it originates from any interface whose name begins with this prefix."
        ),
        string(
            "cluster-cidr", \.clusterCIDR, "",
            "The CIDR range of the pods in the cluster. (For dual-stack clusters, this can be a comma-separated dual-stack pair of CIDR ranges.). When --detect-local-mode is set to ClusterCIDR, kube-proxy will consider traffic to be local if its source IP is in this range. (Otherwise it is not used.)"
                + ignoredWithConfig),
        strings(
            "nodeport-addresses", \.nodePortAddresses, "[]",
            "A list of CIDR ranges that contain valid node IPs, or alternatively, the single string 'primary'. If set to a list of CIDRs, connections to NodePort services will only be accepted on node IPs in one of the indicated ranges. If set to 'primary', NodePort services will only be accepted on the node's primary IP(s) according to the Node object. If unset, NodePort connections will be accepted on all local IPs."
                + ignoredWithConfig),
        int(
            "oom-score-adj", \.oomScoreAdj, "-999",
            "The oom-score-adj value for kube-proxy process. Values must be within the range [-1000, 1000]."
                + ignoredWithConfig),
        int(
            "conntrack-max-per-core", \.conntrackMaxPerCore, "32768",
            "Maximum number of NAT connections to track per CPU core (0 to leave the limit as-is and ignore conntrack-min)."
        ),
        int(
            "conntrack-min", \.conntrackMin, "131072",
            "Minimum number of conntrack entries to allocate, regardless of conntrack-max-per-core (set conntrack-max-per-core=0 to leave the limit as-is)."
        ),
        duration(
            "conntrack-tcp-timeout-established", \.conntrackTCPEstablishedTimeout, "24h0m0s",
            "Idle timeout for established TCP connections (0 to leave as-is)"),
        duration(
            "conntrack-tcp-timeout-close-wait", \.conntrackTCPCloseWaitTimeout, "1h0m0s",
            "NAT timeout for TCP connections in the CLOSE_WAIT state"),
        bool(
            "conntrack-tcp-be-liberal", \.conntrackTCPBeLiberal, "",
            "Enable liberal mode for tracking TCP packets by setting nf_conntrack_tcp_be_liberal to 1"),
        duration(
            "conntrack-udp-timeout", \.conntrackUDPTimeout, "0s",
            "Idle timeout for UNREPLIED UDP connections (0 to leave as-is)"),
        duration(
            "conntrack-udp-timeout-stream", \.conntrackUDPStreamTimeout, "0s",
            "Idle timeout for ASSURED UDP connections (0 to leave as-is)"),
        duration(
            "config-sync-period", \.configSyncPeriod, "15m0s",
            "How often configuration from the apiserver is refreshed.  Must be greater than 0."),
        int(
            "healthz-port", \.healthzPort, "10256", "The port to bind the health check server. Use 0 to disable.",
            use: .deprecated(
                "This flag is deprecated and will be removed in a future release. Please use --healthz-bind-address instead."
            )),
        int(
            "metrics-port", \.metricsPort, "10249", "The port to bind the metrics server. Use 0 to disable.",
            use: .deprecated(
                "This flag is deprecated and will be removed in a future release. Please use --metrics-bind-address instead."
            )),
        // component-base logging (logsapi.AddFlags), then verflag's --version and cobra's --help.
        string(
            "logging-format", \.loggingFormat, "text", "Sets the log format. Permitted formats: \"json\", \"text\"."),
        duration("log-flush-frequency", \.logFlushFrequency, "5s", "Maximum number of seconds between log flushes"),
        row("v", .level, "0", "number for the log level verbosity", shorthand: "v") { line, v, _ throws(FlagError) in
            guard let n = UInt32(v), n <= Int32.max else {
                throw bad("v", v, "expected a verbosity level 0..2147483647")
            }
            line.overrides.verbosity = Int(n)
        },
        row(
            "vmodule", .pattern, "",
            "comma-separated list of pattern=N settings for file-filtered logging (only works for text log format)"
        ) { line, v, _ throws(FlagError) in
            var out: [KubeProxyConfiguration.VModule] = []
            for part in v.split(separator: ",") {
                let kv = part.split(separator: "=", maxSplits: 1)
                guard kv.count == 2, !kv[0].isEmpty, let n = UInt32(kv[1]) else {
                    throw bad("vmodule", v, "expected pattern=N entries")
                }
                out.append(KubeProxyConfiguration.VModule(filePattern: String(kv[0]), verbosity: Int(n)))
            }
            line.overrides.vmodule = out
        },
        inert(
            "log-json-split-stream", .bool, "",
            "[Alpha] In JSON format, write error messages to stderr and info messages to stdout. The default is to write a single stream to stdout. Enable the LoggingAlphaOptions feature gate to use this.",
            use: .notApplicable("kube-natd writes one log stream")),
        inert(
            "log-json-info-buffer-size", .quantity, "0",
            "[Alpha] In JSON format with split output streams, the info messages can be buffered for a while to increase performance. The default value of zero bytes disables buffering.",
            use: .notApplicable("kube-natd writes one log stream")),
        row("version", .version, "false", "--version, --version=raw prints version information and quits") {
            line, v, _ in line.version = v == "false" ? nil : v
        },
        row("help", .bool, "", "help for kube-natd", shorthand: "h") { line, v, _ in line.help = v == "true" },
    ]

    /// kube-proxy's flags as pflag's usage prints them, two spaces in, wrapped help.
    public static var usage: String {
        var out = ""
        for f in all {
            var head = f.shorthand.map { "  -\($0), " } ?? "      "
            head += "--\(f.name)"
            if !f.kind.usageType.isEmpty { head += " " + f.kind.usageType }
            var text = f.help
            if !f.defaultText.isEmpty, f.kind != .bool || f.defaultText == "true", f.kind != .version {
                text +=
                    f.kind == .string || f.kind == .ipPort || f.kind == .ip
                    ? " (default \"\(f.defaultText)\")" : " (default \(f.defaultText))"
            }
            switch f.use {
            case .effective: break
            case .notApplicable(let why): text += " [kube-natd: accepted, no effect: \(why)]"
            case .deprecated: text += " (DEPRECATED: use the bind-address flag)"
            }
            out += head + "\n"
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                out += "            " + line + "\n"
            }
        }
        return out
    }
}
