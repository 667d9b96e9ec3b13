import Foundation
import KubeModel
import Metrics
import ProxyConfig

import class Prometheus.PrometheusCollectorRegistry

/// Every metric kube-proxy's iptables mode exports (pkg/proxy/metrics), under upstream's names,
/// types, labels and buckets, plus kube-natd's own; recorded through swift-metrics into a
/// swift-prometheus registry that `/metrics` renders.
///
/// Thread-safe. Label values: `ip_family` is `IPv4`/`IPv6` (upstream passes `string(v1.IPFamily)`),
/// `table` is `filter`/`nat`, `traffic_policy` is `internal`/`external`, `code` is the HTTP status.
public final class ProxyMetrics: @unchecked Sendable {
    /// The registry `/metrics` renders.
    public let registry: PrometheusCollectorRegistry
    private let factory: HelpfulPrometheusFactory
    private let processLock = NSLock()
    private var reportedCPUSeconds = 0.0
    /// The nfacct objects exported, how to read one, and the count each last reported.
    private var nfacct: [NFAcctCounter: UInt64] = [:]
    private var readNFAcct: (@Sendable (NFAcctCounter) -> UInt64?)?

    /// Registers every metric, creating the labelled series for `families` (the node's IP families)
    /// up front so a scrape shows them, at zero, before the first sync.
    public init(families: [IPFamily] = [.ipv4]) {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        var help: [String: String] = [:]
        var buckets: [String: [Double]] = [:]
        for spec in Self.specs {
            // component-base prefixes the help of every non-stable metric with its stability level.
            help[spec.name] = spec.plainHelp ? spec.help : "[ALPHA] " + spec.help
            if let b = spec.buckets { buckets[spec.name] = b }
        }
        self.factory = HelpfulPrometheusFactory(registry: registry, help: help, buckets: buckets)
        self.register(families: families)
    }

    // MARK: Sync loop

    /// One sync of `family` took `seconds`; `full` says whether it rewrote every chain.
    public func observeSync(family: IPFamily, seconds: Double, full: Bool) {
        self.histogram(Name.syncDuration, family).record(seconds)
        self.histogram(full ? Name.syncFullDuration : Name.syncPartialDuration, family).record(seconds)
    }

    /// A sync of `family` was queued (upstream sets this in `Sync()` and at `SyncLoop` start).
    public func syncQueued(family: IPFamily, at time: WallTime) {
        self.gauge(Name.lastQueuedTimestamp, [("ip_family", family.rawValue)]).set(time.secondsSince1970)
    }

    /// The rules of `family` were written successfully at `time`.
    public func syncSucceeded(family: IPFamily, at time: WallTime) {
        self.gauge(Name.lastTimestamp, [("ip_family", family.rawValue)]).set(time.secondsSince1970)
    }

    /// The time from an EndpointSlice's last-change-trigger-time to its rules being written.
    public func observeNetworkProgramming(family: IPFamily, seconds: Double) {
        self.histogram(Name.networkProgramming, family).record(seconds)
    }

    /// Changes the tracker holds that no sync has written yet.
    public func setPendingChanges(services: Int, endpoints: Int) {
        self.gauge(Name.serviceChangesPending, []).set(services)
        self.gauge(Name.endpointChangesPending, []).set(endpoints)
    }

    /// Changes the tracker has received, added to the running totals.
    public func countChanges(services: Int = 0, endpoints: Int = 0) {
        if services > 0 { Counter(label: Name.serviceChangesTotal, factory: self.factory).increment(by: services) }
        if endpoints > 0 { Counter(label: Name.endpointChangesTotal, factory: self.factory).increment(by: endpoints) }
    }

    /// Writing `family`'s rules failed. As upstream, a failed partial write counts in both totals.
    public func restoreFailed(family: IPFamily, partial: Bool) {
        self.counter(Name.restoreFailures, [("ip_family", family.rawValue)]).increment()
        if partial { self.counter(Name.partialRestoreFailures, [("ip_family", family.rawValue)]).increment() }
    }

    /// Rule counts of one table after a sync: `total` owned by the proxy in the kernel, `written`
    /// in this sync (upstream's `iptables_total` and `iptables_last`).
    public func setRuleCounts(family: IPFamily, table: String, total: Int, written: Int) {
        let labels = [("ip_family", family.rawValue), ("table", table)]
        self.gauge(Name.iptablesTotal, labels).set(total)
        self.gauge(Name.iptablesLast, labels).set(written)
    }

    /// Services of `family` with a Local traffic policy and no local endpoints, per policy
    /// (`internalTrafficPolicy` and `externalTrafficPolicy`).
    public func setNoLocalEndpoints(family: IPFamily, internalPolicy: Int, externalPolicy: Int) {
        self.gauge(Name.noLocalEndpoints, [("ip_family", family.rawValue), ("traffic_policy", "internal")])
            .set(internalPolicy)
        self.gauge(Name.noLocalEndpoints, [("ip_family", family.rawValue), ("traffic_policy", "external")])
            .set(externalPolicy)
    }

    /// One conntrack cleanup pass of `family`: how long it took and how many flows it deleted.
    public func conntrackReconciled(family: IPFamily, seconds: Double, deleted: Int) {
        self.histogram(Name.conntrackDuration, family).record(seconds)
        if deleted > 0 { self.counter(Name.conntrackDeleted, [("ip_family", family.rawValue)]).increment(by: deleted) }
    }

    /// kube-natd put back a rule or chain of `table` that something else had changed.
    public func driftRepaired(table: String, count: Int = 1) {
        self.counter(Name.driftRepairs, [("table", table)]).increment(by: count)
    }

    /// The source saw an invalid `kind` object (each time it is seen); its last good version keeps its rules.
    public func invalidObjectSeen(kind: String) {
        self.counter(Name.invalidObjects, [("kind", kind)]).increment()
    }

    /// One request to the apiserver: `resource` (`services`, `endpointslices`, `endpoints`, `nodes`, `discovery`),
    /// `verb` (`list`, `watch`, `get`), `code` (the HTTP status, or `<error>` when none came back).
    public func apiserverRequest(resource: String, verb: String, code: String) {
        self.counter(Name.apiserverRequests, [("resource", resource), ("verb", verb), ("code", code)]).increment()
    }

    // MARK: Health endpoints

    /// `/healthz` answered `code`.
    public func healthzResponded(code: Int) {
        self.counter(Name.healthzTotal, [("code", String(code))]).increment()
    }

    /// `/livez` answered `code`.
    public func livezResponded(code: Int) {
        self.counter(Name.livezTotal, [("code", String(code))]).increment()
    }

    // MARK: nfacct

    /// Exports the packet counts of these nfacct objects (the ones kube-natd could create), read at each scrape as
    /// upstream's collectors read them: `kubeproxy_iptables_ct_state_invalid_dropped_packets_total` and
    /// `kubeproxy_iptables_localhost_nodeports_accepted_packets_total`. An object whose read fails is not updated.
    public func exportNFAcct(_ counters: Set<NFAcctCounter>, read: @escaping @Sendable (NFAcctCounter) -> UInt64?) {
        self.processLock.withLock {
            for c in counters where self.nfacct[c] == nil { self.nfacct[c] = 0 }
            self.readNFAcct = read
        }
        for c in counters { _ = Counter(label: Self.nfacctMetric(c), factory: self.factory) }
        self.refreshNFAcct()
    }

    static func nfacctMetric(_ c: NFAcctCounter) -> String {
        switch c {
        case .ctStateInvalidDropped: Name.ctStateInvalidDropped
        case .localhostNodePortsAccepted: Name.localhostNodePortsAccepted
        }
    }

    /// Reads the exported nfacct objects; a counter only goes up, so each scrape adds what the kernel counted
    /// since the last (an object recreated with a lower count starts a new base).
    public func refreshNFAcct() {
        let (counters, read) = self.processLock.withLock { (Array(self.nfacct.keys), self.readNFAcct) }
        guard let read else { return }
        for c in counters {
            guard let now = read(c) else { continue }
            let delta: UInt64 = self.processLock.withLock {
                let last = self.nfacct[c] ?? 0
                self.nfacct[c] = now
                return now >= last ? now - last : now
            }
            if delta > 0 { Counter(label: Self.nfacctMetric(c), factory: self.factory).increment(by: Int(clamping: delta)) }
        }
    }

    // MARK: Exposition

    /// The Prometheus text exposition of every metric, process metrics and nfacct counts refreshed first.
    public func exposition() -> String {
        self.refreshProcessMetrics()
        self.refreshNFAcct()
        return Self.goOrdered(self.registry.emitToString())
    }

    /// Two presentation fixes to the registry's output, so a scrape reads as upstream's:
    /// metric families sorted by name (client_golang sorts; the registry emits in hash order), and
    /// whole-number bucket bounds written as Go writes them (`le="1"`, not Swift's `le="1.0"`;
    /// Prometheus before 3.0 keeps `le` as a plain string, so queries selecting `le="1"` would miss).
    static func goOrdered(_ text: String) -> String {
        var families: [(name: String, lines: [Substring])] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            // Every family starts with its HELP line, or its TYPE line when it has no help.
            let startsFamily =
                line.hasPrefix("# HELP ")
                || (line.hasPrefix("# TYPE ") && !(families.last?.lines.last?.hasPrefix("# HELP ") ?? false))
            if startsFamily || families.isEmpty {
                let name = line.split(separator: " ", maxSplits: 3).dropFirst(2).first.map(String.init) ?? ""
                families.append((name, []))
            }
            let bounded = line.contains("le=\"") ? Self.goBucketBound(line) : line
            families[families.count - 1].lines.append(line.hasPrefix("#") ? bounded : Self.goSampleValue(bounded))
        }
        families.sort { $0.name < $1.name }
        return families.flatMap(\.lines).joined(separator: "\n") + "\n"
    }

    /// A whole-number sample written as Go's client writes it (`117`, not `117.0`), so scripts that compare a
    /// scrape with a count keep working. Values of 10^15 and more keep Swift's spelling.
    static func goSampleValue(_ line: Substring) -> Substring {
        guard let space = line.lastIndex(of: " ") else { return line }
        let value = line[line.index(after: space)...]
        guard value.hasSuffix(".0"), let v = Double(value), abs(v) < 1e15 else { return line }
        return Substring(line[...space] + String(Int64(v)))
    }

    /// `...,le="60.0"} 3` → `...,le="60"} 3`.
    private static func goBucketBound(_ line: Substring) -> Substring {
        guard let start = line.range(of: "le=\"")?.upperBound,
            let end = line[start...].firstIndex(of: "\""),
            line[start..<end].hasSuffix(".0")
        else { return line }
        return Substring(line[..<line.index(end, offsetBy: -2)] + line[end...])
    }

    /// Reads /proc/self for the process_* metrics Go's process collector exports.
    public func refreshProcessMetrics() {
        guard let stat = ProcessStat.read() else { return }
        self.gauge(Name.residentMemory, []).set(stat.residentBytes)
        self.gauge(Name.virtualMemory, []).set(stat.virtualBytes)
        self.gauge(Name.startTime, []).set(stat.startTimeSeconds)
        if let fds = ProcessStat.openFileDescriptors() { self.gauge(Name.openFDs, []).set(fds) }
        if let max = ProcessStat.maxFileDescriptors() { self.gauge(Name.maxFDs, []).set(max) }
        // A counter only goes up: add what the kernel has counted since the last scrape.
        let delta: Double = self.processLock.withLock {
            let d = stat.cpuSeconds - self.reportedCPUSeconds
            if d > 0 { self.reportedCPUSeconds = stat.cpuSeconds }
            return d
        }
        if delta > 0 { FloatingPointCounter(label: Name.cpuSeconds, factory: self.factory).increment(by: delta) }
    }

    // MARK: Registration

    private func register(families: [IPFamily]) {
        for name in [Name.endpointChangesPending, Name.serviceChangesPending] { _ = self.gauge(name, []) }
        for name in [Name.endpointChangesTotal, Name.serviceChangesTotal] {
            _ = Counter(label: name, factory: self.factory)
        }
        for family in families {
            let f = [("ip_family", family.rawValue)]
            for name in [
                Name.syncDuration, Name.syncFullDuration, Name.syncPartialDuration, Name.networkProgramming,
                Name.conntrackDuration,
            ] {
                _ = self.histogram(name, family)
            }
            for name in [Name.lastTimestamp, Name.lastQueuedTimestamp] { _ = self.gauge(name, f) }
            for name in [Name.restoreFailures, Name.partialRestoreFailures, Name.conntrackDeleted] {
                _ = self.counter(name, f)
            }
            for table in ["filter", "nat"] {
                _ = self.gauge(Name.iptablesTotal, f + [("table", table)])
                _ = self.gauge(Name.iptablesLast, f + [("table", table)])
            }
            for policy in ["internal", "external"] {
                _ = self.gauge(Name.noLocalEndpoints, f + [("traffic_policy", policy)])
            }
        }
        for code in ["200", "503"] {
            _ = self.counter(Name.healthzTotal, [("code", code)])
            _ = self.counter(Name.livezTotal, [("code", code)])
        }
        for table in ["filter", "nat"] { _ = self.counter(Name.driftRepairs, [("table", table)]) }
        for kind in ["Service", "EndpointSlice", "Endpoints"] { _ = self.counter(Name.invalidObjects, [("kind", kind)]) }
        _ = FloatingPointCounter(label: Name.cpuSeconds, factory: self.factory)
        self.refreshProcessMetrics()
    }

    // The registry hands back the existing series for a name and label set, so these are cheap
    // look-ups after the first call. Labels are passed sorted by name, as Go's client orders them.
    private func counter(_ name: String, _ labels: [(String, String)]) -> Counter {
        Counter(label: name, dimensions: labels, factory: self.factory)
    }

    private func gauge(_ name: String, _ labels: [(String, String)]) -> Meter {
        Meter(label: name, dimensions: labels, factory: self.factory)
    }

    private func histogram(_ name: String, _ family: IPFamily) -> Recorder {
        Recorder(label: name, dimensions: [("ip_family", family.rawValue)], aggregate: true, factory: self.factory)
    }
}

// MARK: - Metric table

extension ProxyMetrics {
    /// Metric names, as upstream spells them.
    public enum Name {
        public static let syncDuration = "kubeproxy_sync_proxy_rules_duration_seconds"
        public static let syncFullDuration = "kubeproxy_sync_full_proxy_rules_duration_seconds"
        public static let syncPartialDuration = "kubeproxy_sync_partial_proxy_rules_duration_seconds"
        public static let lastTimestamp = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
        public static let lastQueuedTimestamp = "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"
        public static let networkProgramming = "kubeproxy_network_programming_duration_seconds"
        public static let endpointChangesPending = "kubeproxy_sync_proxy_rules_endpoint_changes_pending"
        public static let endpointChangesTotal = "kubeproxy_sync_proxy_rules_endpoint_changes_total"
        public static let serviceChangesPending = "kubeproxy_sync_proxy_rules_service_changes_pending"
        public static let serviceChangesTotal = "kubeproxy_sync_proxy_rules_service_changes_total"
        public static let restoreFailures = "kubeproxy_sync_proxy_rules_iptables_restore_failures_total"
        public static let partialRestoreFailures =
            "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total"
        public static let iptablesTotal = "kubeproxy_sync_proxy_rules_iptables_total"
        public static let iptablesLast = "kubeproxy_sync_proxy_rules_iptables_last"
        public static let noLocalEndpoints = "kubeproxy_sync_proxy_rules_no_local_endpoints_total"
        public static let conntrackDeleted = "kubeproxy_conntrack_reconciler_deleted_entries_total"
        public static let conntrackDuration = "kubeproxy_conntrack_reconciler_sync_duration_seconds"
        public static let healthzTotal = "kubeproxy_proxy_healthz_total"
        public static let livezTotal = "kubeproxy_proxy_livez_total"
        public static let ctStateInvalidDropped = "kubeproxy_iptables_ct_state_invalid_dropped_packets_total"
        public static let localhostNodePortsAccepted = "kubeproxy_iptables_localhost_nodeports_accepted_packets_total"
        public static let driftRepairs = "kubenatd_drift_repairs_total"
        public static let invalidObjects = "kubenatd_invalid_objects_total"
        public static let apiserverRequests = "kubenatd_apiserver_requests_total"
        public static let residentMemory = "process_resident_memory_bytes"
        public static let virtualMemory = "process_virtual_memory_bytes"
        public static let cpuSeconds = "process_cpu_seconds_total"
        public static let startTime = "process_start_time_seconds"
        public static let openFDs = "process_open_fds"
        public static let maxFDs = "process_max_fds"
    }

    struct Spec {
        var name: String
        var help: String
        var buckets: [Double]? = nil
        /// No `[ALPHA] ` prefix: kube-natd's own metrics, and the process collector's.
        var plainHelp = false
    }

    /// `prometheus.ExponentialBuckets(0.001, 2, 15)`: 1ms to 16.384s, computed as Go does.
    static let syncBuckets: [Double] = {
        var b: [Double] = []
        var v = 0.001
        for _ in 0..<15 {
            b.append(v)
            v *= 2
        }
        return b
    }()

    /// Upstream's `merge(LinearBuckets(0.25, 0.25, 2), LinearBuckets(1, 1, 59), LinearBuckets(60, 5, 12),
    /// LinearBuckets(120, 30, 7))`. `merge` starts from `make([]float64, 1)`, so upstream's list
    /// begins with a 0 bucket, kept here so `le` series match.
    static let networkProgrammingBuckets: [Double] =
        [0, 0.25, 0.5] + (1...59).map(Double.init) + stride(from: 60.0, through: 115, by: 5)
        + stride(from: 120.0, through: 300, by: 30)

    static let specs: [Spec] = [
        Spec(name: Name.syncDuration, help: "SyncProxyRules latency in seconds", buckets: syncBuckets),
        Spec(
            name: Name.syncFullDuration, help: "SyncProxyRules latency in seconds for full resyncs",
            buckets: syncBuckets),
        Spec(
            name: Name.syncPartialDuration, help: "SyncProxyRules latency in seconds for partial resyncs",
            buckets: syncBuckets),
        Spec(name: Name.lastTimestamp, help: "The last time proxy rules were successfully synced"),
        Spec(name: Name.lastQueuedTimestamp, help: "The last time a sync of proxy rules was queued"),
        Spec(
            name: Name.networkProgramming, help: "In Cluster Network Programming Latency in seconds",
            buckets: networkProgrammingBuckets),
        Spec(name: Name.endpointChangesPending, help: "Pending proxy rules Endpoint changes"),
        Spec(name: Name.endpointChangesTotal, help: "Cumulative proxy rules Endpoint changes"),
        Spec(name: Name.serviceChangesPending, help: "Pending proxy rules Service changes"),
        Spec(name: Name.serviceChangesTotal, help: "Cumulative proxy rules Service changes"),
        Spec(name: Name.restoreFailures, help: "Cumulative proxy iptables restore failures"),
        Spec(name: Name.partialRestoreFailures, help: "Cumulative proxy iptables partial restore failures"),
        Spec(name: Name.iptablesTotal, help: "Total number of iptables rules owned by kube-proxy"),
        Spec(name: Name.iptablesLast, help: "Number of iptables rules written by kube-proxy in last sync"),
        Spec(name: Name.noLocalEndpoints, help: "Number of services with a Local traffic policy and no endpoints"),
        Spec(name: Name.conntrackDeleted, help: "Cumulative conntrack flows deleted by conntrack reconciler"),
        // Upstream's buckets for this one were not confirmed; the sync buckets fit the same range.
        Spec(
            name: Name.conntrackDuration, help: "ReconcileConntrackFlowsLatency latency in seconds",
            buckets: syncBuckets),
        Spec(name: Name.healthzTotal, help: "Cumulative proxy healthz HTTP status"),
        Spec(name: Name.ctStateInvalidDropped, help: "packets dropped by iptables to work around conntrack problems"),
        Spec(name: Name.localhostNodePortsAccepted, help: "Number of packets accepted on nodeports of loopback interface"),
        Spec(name: Name.livezTotal, help: "Cumulative proxy livez HTTP status"),
        Spec(
            name: Name.driftRepairs, help: "Rules or chains kube-natd restored after something else changed them",
            plainHelp: true),
        Spec(
            name: Name.invalidObjects,
            help: "Invalid objects seen, each time one is seen; the last good version of each keeps its rules",
            plainHelp: true),
        Spec(
            name: Name.apiserverRequests,
            help: "Requests made to the apiserver, by resource, verb (list, watch, get) and HTTP status code",
            plainHelp: true),
        Spec(name: Name.residentMemory, help: "Resident memory size in bytes.", plainHelp: true),
        Spec(name: Name.virtualMemory, help: "Virtual memory size in bytes.", plainHelp: true),
        Spec(name: Name.cpuSeconds, help: "Total user and system CPU time spent in seconds.", plainHelp: true),
        Spec(
            name: Name.startTime, help: "Start time of the process since unix epoch in seconds.", plainHelp: true),
        Spec(name: Name.openFDs, help: "Number of open file descriptors.", plainHelp: true),
        Spec(name: Name.maxFDs, help: "Maximum number of open file descriptors.", plainHelp: true),
    ]
}
