import ArgumentParser
import Daemon
import ProxyConfig

/// kube-natd's own configuration flags. kube-proxy's flags (`--config`, `--write-config-to`, `--cleanup`,
/// `--masquerade-all`, ...) are read before these, with pflag's syntax, by `KubeProxyCommandLine` (ProxyConfig).
struct ConfigOptions: ParsableArguments {
    @Flag(name: .customLong("validate"), help: "Check the configuration (and --source, if given) and exit 0, or 2 listing every error.")
    var validate = false
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
