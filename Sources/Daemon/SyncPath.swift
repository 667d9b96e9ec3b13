import Foundation
import KubeModel
import KubeSource
import Logging
import Netfilter
import ProxyConfig
import RuleCompiler
import Ruleset

/// One turn of kube-natd's work: node set-up (sysctls) → compile (each family) → backend apply (every family at
/// once) → UDP conntrack cleanup → metrics. The daemon runs it on every sync, `--once` runs it once, and
/// `--dry-run` runs it once with the text backend and no node set-up. Not thread-safe: one owner drives it.
public final class SyncPath {
    public let backend: KernelBackend
    public let families: [IPFamily]
    public let features: KernelFeatures
    public private(set) var setup: NodeSetup
    let node: NodePreparation
    var logger: Logger
    /// `--conntrack-cleanup`: delete stale UDP conntrack entries after commits that changed endpoints.
    public var conntrackCleanup: Bool
    /// Where metrics go (the daemon's); nil for one-shot runs.
    public var metrics: ProxyMetrics?
    /// Reads every address on this namespace's interfaces (tests replace it): `nodePortAddresses` CIDRs are matched
    /// against them before each sync, as upstream's proxier calls `GetNodeIPs` in every `syncProxyRules`.
    let probeLocalAddresses: @Sendable () -> [IPAddress]
    /// The UDP conntrack reconciler (tests replace it).
    var reconcileConntrack: (UDPServiceFrontends) -> UDPConntrackReport = { UDPConntrackReconciler().reconcile($0) }
    private var compilers: [IPFamily: RuleCompiler] = [:]
    /// The `localhostNodePorts` the node was last prepared for (nil: not yet).
    private var preparedFor: Bool?
    private var prefetched = false
    /// A sync failed since the last conntrack cleanup: the next one looks at every Service.
    private var conntrackBehind = false
    /// The rulesets of the last successful apply: what drift checks compare the kernel with.
    public private(set) var committed: [Ruleset] = []
    /// The Services left out for kernel limits that have been logged (each is logged once, and once when it is
    /// back within the limits).
    private var reportedLimits: Set<ServiceLimitViolation> = []
    /// Families whose next ruleset is checked whole for kernel limits: the first of each compiler (what no Service
    /// owns depends only on its settings), and again after a failed check.
    private var limitsUnchecked: Set<IPFamily> = []

    /// What one turn did.
    public struct Outcome {
        public var succeeded: Bool
        public var report = ApplyReport()
        public var error: Error?
        public var rulesets: [Ruleset] = []
        /// Every Service left out of `rulesets` because its rules break a kernel limit (`KernelLimits`).
        public var limitViolations: [ServiceLimitViolation] = []
        public var stats: [IPFamily: CompileStats] = [:]
        public var compileSeconds = 0.0
        public var applySeconds = 0.0
    }

    public init(setup: NodeSetup, families: [IPFamily], backend: KernelBackend, features: KernelFeatures,
                node: NodePreparation, logger: Logger, conntrackCleanup: Bool = true,
                localAddresses: @escaping @Sendable () -> [IPAddress] = { LocalAddresses.all() }) {
        var setup = setup
        self.probeLocalAddresses = localAddresses
        if Self.matchesLocalAddresses(setup) { setup.localAddresses = localAddresses() }
        self.setup = setup
        self.families = families
        self.backend = backend
        self.features = features
        self.node = node
        self.logger = logger
        self.conntrackCleanup = conntrackCleanup
        for f in families { self.compilers[f] = RuleCompiler(settings: setup.settings(for: f, features: features)) }
        self.limitsUnchecked = Set(families)
    }

    /// The settings each family compiles with.
    public func settings(for family: IPFamily) -> NodeSettings? { self.compilers[family]?.settings }

    /// Starts reading what the first apply compares against while the caller still decodes or compiles.
    public func prefetch() {
        guard !self.prefetched else { return }
        self.prefetched = true
        self.backend.prefetch(families: self.families)
    }

    /// `nodePortAddresses` lists CIDRs (or keywords): the local addresses matter.
    static func matchesLocalAddresses(_ setup: NodeSetup) -> Bool { !setup.configuration.nodePortAddresses.isEmpty }

    /// Takes a new node setup (the Node's pod CIDR or addresses changed); true when the rules change with it,
    /// so the caller asks for a full sync. The local addresses stay those last read.
    public func update(setup: NodeSetup) -> Bool {
        var setup = setup
        if Self.matchesLocalAddresses(setup) { setup.localAddresses = self.setup.localAddresses ?? self.probeLocalAddresses() }
        self.setup = setup
        return self.rebuildCompilers()
    }

    /// New compilers for the families whose settings changed with `setup`; true when any did.
    private func rebuildCompilers() -> Bool {
        var changed = false
        for f in self.families where self.compilers[f]?.settings != self.setup.settings(for: f, features: self.features) {
            self.compilers[f] = RuleCompiler(settings: self.setup.settings(for: f, features: self.features))
            self.limitsUnchecked.insert(f)
            changed = true
        }
        return changed
    }

    private var nodePortSummary: String {
        self.families.map { f -> String in
            switch self.compilers[f]?.settings.nodePortAddresses {
            case .addresses(let ips)?: "\(f.rawValue) [\(ips.map(\.description).joined(separator: " "))]"
            default: "\(f.rawValue) all"
            }
        }.joined(separator: ", ")
    }

    /// One turn. `full` says the turn rewrites everything (for metrics and the log; the compiler and backends
    /// decide by themselves what actually changed).
    public func run(_ snapshot: ClusterStore.Snapshot, full: Bool) -> Outcome {
        if Self.matchesLocalAddresses(self.setup) {
            let local = self.probeLocalAddresses()
            if local != self.setup.localAddresses {
                var s = self.setup
                s.localAddresses = local
                self.setup = s
                if self.rebuildCompilers() {
                    self.logger.info("local addresses changed, nodePortAddresses now match: \(self.nodePortSummary)")
                }
            }
        }
        // Localhost NodePorts need route_localnet; the v1.23 layout DNATs them whatever the setting, and kube-proxy
        // v1.23 turned it on unconditionally.
        let localhost = self.compilers[.ipv4].map { $0.settings.localhostNodePorts || $0.settings.ruleLayout == .v1_23 } ?? false
        if self.preparedFor != localhost {
            self.node.prepare(self.setup.configuration, localhostNodePorts: localhost, logger: self.logger)
            self.preparedFor = localhost
        }
        self.prefetch()
        var outcome = Outcome(succeeded: false)
        let clock = ContinuousClock()
        let started = clock.now
        // What changed since the last compile, for backends that redo only that; a full sync compares everything
        // with the kernel, though the encoders still redo only the chains the compiler touched.
        var changes: [RulesetChange] = []
        for family in self.families {
            let compiler = self.compilers[family]!
            outcome.rulesets.append(compiler.compile(snapshot.state))
            outcome.stats[family] = compiler.lastStats
            changes.append(full ? compiler.lastChange.asFullSync : compiler.lastChange)
        }
        let compiled = clock.now
        outcome.compileSeconds = (compiled - started).secondsValue
        do {
            try self.checkLimits(&outcome)
            outcome.report = try self.backend.apply(outcome.rulesets, changes: changes)
            outcome.succeeded = true
            self.committed = outcome.rulesets
        } catch {
            outcome.error = error
            self.committed = []
            self.conntrackBehind = true
        }
        let applied = clock.now
        outcome.applySeconds = (applied - compiled).secondsValue
        self.record(outcome, snapshot: snapshot, full: full, seconds: (applied - started).secondsValue)
        if outcome.succeeded { self.cleanConntrack(snapshot, full: full) }
        return outcome
    }

    /// Kernel limits, once for every backend, before any runs: the compiler checked each Service it derived and
    /// left out those over a limit (named here, logged once); the first ruleset of each compiler is checked whole
    /// for the rules no Service owns (fixed chains, jumps, ensured rules: they follow from its settings alone),
    /// which throws (`KernelLimitError`) and stops the sync.
    private func checkLimits(_ outcome: inout Outcome) throws {
        for family in self.families {
            guard let compiler = self.compilers[family] else { continue }
            outcome.limitViolations += compiler.limitViolations.keys.sorted().flatMap { compiler.limitViolations[$0]! }
        }
        let current = Set(outcome.limitViolations)
        for v in outcome.limitViolations where !self.reportedLimits.contains(v) { self.logger.error("\(v)") }
        let fixed = Set(self.reportedLimits.subtracting(current).map { "\($0.service) (\($0.family.rawValue))" })
        for s in fixed.sorted() { self.logger.info("Service \(s) no longer breaks a kernel limit (fixed or deleted)") }
        self.reportedLimits = current
        for ruleset in outcome.rulesets where self.limitsUnchecked.contains(ruleset.family) {
            // kept until a check passes: the compiler's next, incremental ruleset still holds what failed here
            try KernelLimits.check(ruleset)
            self.limitsUnchecked.remove(ruleset.family)
        }
    }

    private func record(_ o: Outcome, snapshot: ClusterStore.Snapshot, full: Bool, seconds: Double) {
        guard o.succeeded else {
            for f in self.families { self.metrics?.restoreFailed(family: f, partial: !full) }
            self.logger.error(
                "sync failed, the kernel keeps its previous rules: \(o.error.map { "\($0)" } ?? "unknown error")")
            return
        }
        let now = WallTime.now()
        for ruleset in o.rulesets {
            let family = ruleset.family
            guard let stats = o.stats[family] else { continue }
            if let m = self.metrics {
                m.observeSync(family: family, seconds: seconds, full: full)
                m.syncSucceeded(family: family, at: now)
                for t in [Table.filter, .nat] {
                    let n = ruleset[t]?.ruleCount ?? 0
                    m.setRuleCounts(family: family, table: t.rawValue, total: n, written: n)
                }
                m.setNoLocalEndpoints(family: family, internalPolicy: stats.noLocalEndpointsInternal,
                                      externalPolicy: stats.noLocalEndpointsExternal)
                for t in snapshot.triggerTimes {
                    m.observeNetworkProgramming(family: family, seconds: max(0, Date().timeIntervalSince(t)))
                }
            }
            if !snapshot.triggerTimes.isEmpty {
                let done = Date()
                let ms = snapshot.triggerTimes.map { String(format: "%.1f", max(0, done.timeIntervalSince($0)) * 1000) }
                self.logger.debug("network programming \(family.rawValue): \(ms.count) endpoint changes, ms: \(ms.joined(separator: " "))")
            }
            self.logger.info(
                "synced \(family.rawValue) (\(full ? "full" : "partial")) through \(self.backend.name): \(stats.services) Services, \(stats.endpoints) endpoints, \(stats.fragmentsCompiled) re-derived; filter \(ruleset[.filter]?.ruleCount ?? 0) rules, nat \(ruleset[.nat]?.ruleCount ?? 0) rules; compile \(Self.ms(o.compileSeconds)) ms, apply \(Self.ms(o.applySeconds)) ms")
        }
        self.logger.debug("\(o.report)")
    }

    /// Stale UDP flows can only appear when endpoints or Services changed (or after a restart: the first sync is
    /// full). Reading the conntrack table on every idle sync is what kubernetes #129982 complains about. As
    /// upstream, only after the rules are in, so a deleted flow's next packet meets the new DNAT.
    private func cleanConntrack(_ snapshot: ClusterStore.Snapshot, full: Bool) {
        guard self.conntrackCleanup, full || snapshot.endpointChanges + snapshot.serviceChanges > 0 else { return }
        // After a full sync, or when a failed sync may have skipped some Services' cleanup, every Service;
        // else only the frontends of the Services this compile patched. Both from the compiler's cached views.
        let everyService = full || self.conntrackBehind
        self.conntrackBehind = false
        for family in self.families {
            guard let compiler = self.compilers[family] else { continue }
            let report = self.reconcileConntrack(
                compiler.cachedUDPFrontends(only: everyService ? nil : compiler.lastChangedServices))
            self.metrics?.conntrackReconciled(family: family, seconds: report.durationSeconds, deleted: Int(report.deleted))
            if report.error != nil {
                self.logger.error("\(report)")
            } else if report.deleted > 0 {
                self.logger.info("\(report)")
            }
        }
    }

    static func ms(_ seconds: Double) -> String { String(format: "%.1f", seconds * 1000) }
}

extension Duration {
    /// The duration in seconds, as a Double.
    public var secondsValue: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
