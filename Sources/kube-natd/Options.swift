import ArgumentParser
import Daemon
import ProxyConfig

/// `--config` and kube-proxy's configuration flags. As in kube-proxy, when `--config` is given only
/// `--hostname-override` among these flags applies; the others are reported as ignored.
struct ConfigOptions: ParsableArguments {
    @Option(name: .customLong("config"), help: "The path to the KubeProxyConfiguration file.")
    var configFile: String?

    @Option(name: .customLong("write-config-to"), help: "If set, write the effective configuration (all defaults filled in) to this file and exit.")
    var writeConfigTo: String?

    @Flag(name: .customLong("validate"), help: "Check the configuration (and --source, if given) and exit 0, or 2 listing every error.")
    var validate = false

    @Option(name: .customLong("hostname-override"), help: "If non-empty, will be used as the name of the Node that kube-natd is running on.")
    var hostnameOverride: String?

    @Option(name: .customLong("bind-address"), help: "Overrides kube-natd's idea of what its node's primary IP is.")
    var bindAddress: String?

    @Option(name: .customLong("healthz-bind-address"), help: "The IP address and port for the health check server to serve on.")
    var healthzBindAddress: String?

    @Option(name: .customLong("metrics-bind-address"), help: "The IP address and port for the metrics server to serve on.")
    var metricsBindAddress: String?

    @Option(name: .customLong("cluster-cidr"), help: "The CIDR range of the pods in the cluster (comma-separated dual-stack pair allowed).")
    var clusterCIDR: String?

    @Option(name: .customLong("masquerade-all"), help: "SNAT all traffic sent via Service cluster IPs (true|false).")
    var masqueradeAll: Bool?

    @Option(name: .customLong("iptables-masquerade-bit"), help: "The bit of the fwmark space to mark packets requiring SNAT. Must be within [0, 31].")
    var masqueradeBit: Int?

    @Option(name: .customLong("iptables-sync-period"), help: "An interval (e.g. '5s', '1m', '2h22m') indicating how frequently various re-synchronizing and cleanup operations are performed.")
    var syncPeriod: String?

    @Option(name: .customLong("iptables-min-sync-period"), help: "The minimum period between iptables rule resyncs (e.g. '5s', '1m', '2h22m').")
    var minSyncPeriod: String?

    @Option(name: .customLong("iptables-localhost-nodeports"), help: "If false, kube-natd will disable the legacy behavior of allowing NodePort services to be accessed via localhost (true|false).")
    var localhostNodePorts: Bool?

    @Option(name: .customLong("nodeport-addresses"), help: "A list of CIDR ranges that contain valid node IPs, or 'primary'.")
    var nodePortAddresses: String?

    @Option(name: .customLong("detect-local-mode"), help: "Mode to use to detect local traffic (ClusterCIDR, NodeCIDR, BridgeInterface, InterfaceNamePrefix).")
    var detectLocalMode: String?

    @Option(name: .customLong("pod-bridge-interface"), help: "A bridge interface name, used with --detect-local-mode=BridgeInterface.")
    var podBridgeInterface: String?

    @Option(name: .customLong("pod-interface-name-prefix"), help: "An interface name prefix, used with --detect-local-mode=InterfaceNamePrefix.")
    var podInterfaceNamePrefix: String?

    @Option(name: .customLong("conntrack-tcp-be-liberal"), help: "Enable liberal mode for tracking TCP packets (true|false).")
    var conntrackTCPBeLiberal: Bool?

    @Option(name: .customLong("proxy-mode"), help: "Which proxy mode to use: only 'iptables' is implemented.")
    var proxyMode: String?

    @Option(name: .customLong("kubeconfig"), help: "Path to kubeconfig file with authorization information.")
    var kubeconfig: String?

    @Option(name: .customLong("master"), help: "The address of the Kubernetes API server (overrides any value in kubeconfig).")
    var master: String?

    func overrides(verbosity: Int?) throws -> ConfigOverrides {
        var o = ConfigOverrides()
        o.hostnameOverride = hostnameOverride
        o.bindAddress = bindAddress
        o.healthzBindAddress = healthzBindAddress
        o.metricsBindAddress = metricsBindAddress
        o.clusterCIDR = clusterCIDR
        o.masqueradeAll = masqueradeAll
        o.iptablesMasqueradeBit = masqueradeBit
        o.iptablesSyncPeriod = try syncPeriod.map { try duration($0, flag: "--iptables-sync-period") }
        o.iptablesMinSyncPeriod = try minSyncPeriod.map { try duration($0, flag: "--iptables-min-sync-period") }
        o.iptablesLocalhostNodePorts = localhostNodePorts
        o.nodePortAddresses = nodePortAddresses.map { $0.split(separator: ",").map(String.init) }
        o.detectLocalMode = detectLocalMode
        o.podBridgeInterface = podBridgeInterface
        o.podInterfaceNamePrefix = podInterfaceNamePrefix
        o.conntrackTCPBeLiberal = conntrackTCPBeLiberal
        o.proxyMode = proxyMode
        o.kubeconfig = kubeconfig
        o.master = master
        o.verbosity = verbosity
        return o
    }

    private func duration(_ text: String, flag: String) throws -> GoDuration {
        guard let d = GoDuration(parsing: text) else {
            throw ValidationError("\(flag): expected a duration such as 30s or 1m0s, got \"\(text)\"")
        }
        return d
    }
}

/// Where Services and endpoints come from.
struct SourceOptions: ParsableArguments {
    @Option(name: .customLong("source"), help: "A manifest file or directory (.yaml/.yml/.json: Service, EndpointSlice, Endpoints) instead of an apiserver.")
    var source: String?

    @Option(name: .customLong("source-mode"), help: "How to follow the apiserver: watch (list, then watch with bookmarks) or poll (list every --poll-interval and apply the differences).")
    var sourceMode: SourceMode = .watch

    @Option(name: .customLong("poll-interval"), help: "With --source-mode poll: how often to list (e.g. 30s).")
    var pollInterval: String = "30s"

    @Option(name: .customLong("manifest-recheck-interval"), help: "With --source in the long-running mode: how often the files are checked for changes (SIGHUP re-reads at once).")
    var manifestRecheck: String = "1s"

    /// The duration options, checked in every mode.
    func durations() throws -> (recheck: Duration, poll: Duration) {
        func duration(_ text: String, _ flag: String) throws -> Duration {
            guard let d = GoDuration(parsing: text), d.nanoseconds > 0 else {
                throw ValidationError("\(flag): expected a positive duration such as 30s, got \"\(text)\"")
            }
            return .nanoseconds(d.nanoseconds)
        }
        return (try duration(manifestRecheck, "--manifest-recheck-interval"), try duration(pollInterval, "--poll-interval"))
    }
}

enum SourceMode: String, ExpressibleByArgument, CaseIterable {
    case watch, poll
}

/// What to do with the compiled rules.
struct RuleOptions: ParsableArguments {
    @Flag(name: .customLong("dry-run"), help: "Print the iptables-restore text that takes an empty network namespace to the synced state, and exit.")
    var dryRun = false

    @Flag(name: .customLong("once"), help: "Compile from the source, make the kernel match, and exit.")
    var once = false

    @Flag(name: .customLong("cleanup"), help: "Remove every chain and rule kube-proxy or kube-natd creates (both families) and exit.")
    var cleanup = false

    @Option(name: .customLong("ip-family"), help: "The IP families to program: auto (as kube-proxy: every family this node's kernel supports), ipv4, ipv6 or dual.")
    var ipFamily: FamilySelection = .auto

    @Option(name: .customLong("rule-layout"), help: "Which kube-proxy rule layout to write: current, or v1.23 (KUBE-XLB chains, KUBE-MARK-DROP).")
    var ruleLayout: RuleLayout = .current

    @Option(name: .customLong("backend"), help: "How rules reach the kernel: auto, libiptc, libnftnl or restore.")
    var backend: BackendChoice = .auto

    @Option(name: .customLong("random-fully"), help: "Whether MASQUERADE gets --random-fully: auto (as kube-proxy: iptables >= 1.6.2, also for --dry-run), yes or no.")
    var randomFully: FeatureChoice = .auto

    @Option(name: .customLong("nfacct-counters"), help: "Whether the nfacct counters ct_state_invalid_dropped_pkts and localhost_nps_accepted_pkts are used: auto (as kube-proxy: created where the kernel has nfacct), yes or no.")
    var nfacctCounters: FeatureChoice = .auto

    @Option(name: .customLong("conntrack-cleanup"), help: "After the rules are written, delete UDP conntrack entries of Services whose reply source is no longer a serving endpoint (true|false).")
    var conntrackCleanup: Bool = true
}

extension FamilySelection: ExpressibleByArgument {}
extension BackendChoice: ExpressibleByArgument {}
extension FeatureChoice: ExpressibleByArgument {}
extension RuleLayout: ExpressibleByArgument {}
