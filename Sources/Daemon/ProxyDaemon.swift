#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import KubeModel
import KubeSource
import Logging
import NIOCore
import NIOPosix
import Netfilter
import ProxyConfig
import RuleCompiler
import Ruleset

/// The long-running kube-natd: follows a source and keeps the kernel in step, as kube-proxy does.
///
/// Every sync is one turn of the `SyncPath` that `--once` runs. The daemon owns time: the sync runner
/// (minSyncPeriod / syncPeriod), the periodic drift check, the health and metrics servers, the systemd
/// watchdog. All its state is confined to this actor, which runs on a thread of its own so that a sync's
/// blocking kernel calls never hold up the source or the HTTP servers.
public actor ProxyDaemon {
    public nonisolated let source: ClusterSource
    public nonisolated let store = ClusterStore()
    public nonisolated let metrics: ProxyMetrics
    public nonisolated let health: ProxyHealth
    let path: SyncPath
    let runner: SyncRunner<ContinuousClock>
    var logger: Logger
    private let notifier = SystemdNotifier()
    private var readySent = false
    /// The periodic check counted drift and asked for the full sync that repairs it.
    private var driftCounted = false
    /// A failed sync leaves the kernel behind the compiler: the next full sync's rewrites are not drift.
    private var lastSyncSucceeded = false
    /// What the daemon does about its own Node (wait, restart on change).
    let lifecycle: NodeLifecycle
    /// `--ip-family auto`: the Node's primary family must be one the kernel supports (upstream refuses to start).
    let requirePrimaryFamily: Bool
    /// The Node the daemon took its node IPs and podCIDRs from (nil: none yet), and whether that was decided.
    private var startedNode: Node?
    private var nodeAdopted = false
    private var lastNode: Node?
    /// Ends the process (tests record instead): upstream's NodeManager calls os.Exit(1).
    let exit: @Sendable (Int32) -> Void
    private let executor = DedicatedExecutor(label: "kube-natd.sync")
    /// When the store received the first change not yet synced (the start of the change's own time).
    nonisolated let firstChange = FirstChange()
    /// How the healthz and metrics servers bind (tests inject the sleeper).
    public nonisolated let serverBinding: ServerBinding

    public nonisolated var unownedExecutor: UnownedSerialExecutor { self.executor.asUnownedSerialExecutor() }

    public init(path: SyncPath, source: ClusterSource, logger: Logger, serverBinding: ServerBinding = ServerBinding(),
                lifecycle: NodeLifecycle = NodeLifecycle(waitForNode: false, watchPodCIDRs: false),
                requirePrimaryFamily: Bool = false, nfacct: NFAcctObjects = KernelNFAcct(),
                exit: @escaping @Sendable (Int32) -> Void = { Foundation.exit($0) }) {
        self.serverBinding = serverBinding
        self.path = path
        self.source = source
        self.logger = logger
        self.lifecycle = lifecycle
        self.requirePrimaryFamily = requirePrimaryFamily
        self.exit = exit
        let c = path.setup.configuration
        let syncPeriod = Duration.nanoseconds(c.iptables.syncPeriod.nanoseconds)
        self.runner = SyncRunner(minInterval: .nanoseconds(c.iptables.minSyncPeriod.nanoseconds), maxInterval: syncPeriod)
        self.metrics = ProxyMetrics(families: path.families)
        self.health = ProxyHealth(syncPeriod: syncPeriod)
        path.metrics = self.metrics
        if !path.features.nfacct.isEmpty {
            self.metrics.exportNFAcct(path.features.nfacct) { try? nfacct.packets($0.rawValue) }
        }
    }

    /// Asks the source to read everything again (SIGHUP).
    public nonisolated func reload() { self.source.reload() }

    /// Runs until the task is cancelled (SIGTERM/SIGINT in the executable). The rules stay in the kernel.
    public func run() async throws {
        let c = self.path.setup.configuration
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // kube-proxy's serveHealthz/serveMetrics: fatal with bindAddressHardFail, else retried every 5 s.
        let (proxyHealth, proxyMetrics, serverLog) = (self.health, self.metrics, self.logger)
        var healthServer: ServerBinding.Slot<HealthServer>?
        var metricsServer: ServerBinding.Slot<MetricsServer>?
        if let (host, port) = c.healthzListenAddress {
            healthServer = try await self.serverBinding.start(
                "healthz", address: c.healthzBindAddress, hardFail: c.bindAddressHardFail, logger: serverLog
            ) {
                try await HealthServer.start(host: host, port: port, health: proxyHealth, metrics: proxyMetrics,
                                             group: group, logger: serverLog)
            }
        }
        if let (host, port) = c.metricsListenAddress {
            metricsServer = try await self.serverBinding.start(
                "metrics", address: c.metricsBindAddress, hardFail: c.bindAddressHardFail, logger: serverLog
            ) {
                try await MetricsServer.start(host: host, port: port, metrics: proxyMetrics, group: group,
                                              logger: serverLog)
            }
        }
        let serviceHealth = ServiceHealthServers(
            health: self.health,
            addresses: ServiceHealthServers.listenAddresses(for: self.path.settings(for: .ipv4)?.nodePortAddresses ?? .all),
            group: group, logger: self.logger)
        self.ensureCanaries()
        let families = self.path.families
        for f in families { self.health.updated(family: f) }  // upstream's SyncLoop start: healthy until a queued sync ages

        let (runner, health, metrics, store, log) = (self.runner, self.health, self.metrics, self.store, self.logger)
        let firstChange = self.firstChange
        store.setOnChange {
            // Before the request: the sync this change starts always finds its time.
            firstChange.note()
            // Upstream's SyncNode runs on every Node event; a Node not yet seen leaves eligibility as it is.
            if let node = store.peek().node { health.syncNode(node) }
            runner.request()
            let now = WallTime.now()
            for f in families {
                health.queuedUpdate(family: f, at: now)
                metrics.syncQueued(family: f, at: now)
            }
            let p = store.pending
            metrics.setPendingChanges(services: p.services, endpoints: p.endpoints)
        }
        store.setOnInvalid { invalid in
            log.error("\(invalid)")
            metrics.invalidObjectSeen(kind: invalid.kind.rawValue)
        }
        store.setOnRequest { resource, verb, code in metrics.apiserverRequest(resource: resource, verb: verb, code: code) }
        let source = self.source
        let sourceTask = Task { await source.run(into: store) }
        if self.lifecycle.waitForNode {
            do {
                let node = try await self.lifecycle.wait(for: self.path.setup.nodeName, in: store, clock: ContinuousClock(),
                                                         logger: self.logger)
                try self.adopt(node)
            } catch {
                sourceTask.cancel()
                _ = await sourceTask.value
                await serviceHealth.stop()
                await healthServer?.end()?.stop()
                await metricsServer?.end()?.stop()
                try? await group.shutdownGracefully()
                throw error
            }
        }
        let clock = ContinuousClock()
        let syncPeriod = runner.maxInterval
        let timers = Timers(nextCheck: clock.now + syncPeriod)
        await runner.run(
            ready: { store.isInitialized },
            idle: { [self] in await self.idle(timers, clock: clock) },
            sync: { [self] full in
                let outcome = await self.sync(full: full)
                await serviceHealth.sync(await self.serviceHealthStates())
                return outcome
            })
        sourceTask.cancel()
        _ = await sourceTask.value
        try? self.notifier.stopping()
        await serviceHealth.stop()
        await healthServer?.end()?.stop()
        await metricsServer?.end()?.stop()
        try? await group.shutdownGracefully()
        self.logger.info("stopped; the rules stay in the kernel")
    }

    /// When the periodic check and the watchdog are next due.
    final class Timers: @unchecked Sendable {
        var nextCheck: ContinuousClock.Instant
        var nextWatchdog: ContinuousClock.Instant?
        init(nextCheck: ContinuousClock.Instant) { self.nextCheck = nextCheck }
    }

    private func idle(_ timers: Timers, clock: ContinuousClock) {
        let now = clock.now
        if let every = self.notifier.watchdogInterval, now >= (timers.nextWatchdog ?? now) {
            try? self.notifier.watchdog()
            timers.nextWatchdog = now + every
        }
        if now >= timers.nextCheck {
            timers.nextCheck = now + self.runner.maxInterval
            self.checkKernel()
        }
    }

    // MARK: - Sync

    func sync(full: Bool) -> SyncRunner<ContinuousClock>.Outcome {
        let syncStarted = ContinuousClock.now
        self.followNode(self.store.peek().node)
        // A full sync rewrites every owned chain, repairing any drift silently: look first, so what it repairs is
        // logged and counted (unless the periodic check already did, and asked for this sync).
        let alreadyCounted = self.driftCounted
        self.driftCounted = false
        let snap = self.store.take()
        let changeSeen = self.firstChange.take()
        // With nothing changed since the last commit, whatever the apply has to rewrite is drift: count it from
        // the apply's own report instead of reading every table twice. With changes pending, look first.
        let checkDrift = full && !alreadyCounted && self.readySent
        let inferDrift = checkDrift && self.lastSyncSucceeded && snap.serviceChanges + snap.endpointChanges == 0
        if checkDrift && !inferDrift { _ = self.detectDrift() }
        self.metrics.countChanges(services: snap.serviceChanges, endpoints: snap.endpointChanges)
        self.metrics.setPendingChanges(services: 0, endpoints: 0)
        let outcome = self.path.run(snap, full: full)
        if outcome.succeeded, let changeSeen {
            // One line per sync that carried a change: its whole time in kube-natd (store to rules in, conntrack
            // cleaned) and the kernel's share of it (Benchmarks/latency.sh reads this line).
            let timing = ChangeTiming(eventToStart: max(0, (syncStarted - changeSeen).secondsValue),
                                      eventToDone: (ContinuousClock.now - changeSeen).secondsValue,
                                      kernelCommit: outcome.report.tables.reduce(0) { $0 + $1.commitSeconds })
            self.logger.debug(
                "\(timing) (\(full ? "full" : "partial") sync, \(snap.serviceChanges) Service and \(snap.endpointChanges) endpoint changes; compile \(SyncPath.ms(outcome.compileSeconds)) ms, apply \(SyncPath.ms(outcome.applySeconds)) ms)")
        } else if let changeSeen {
            self.firstChange.note(at: changeSeen)  // the retry carries the change: its time still counts from here
        }
        if outcome.succeeded {
            if inferDrift {
                for finding in DriftMonitor.repaired(by: outcome.report) {
                    self.logger.warning("rules changed behind kube-natd's back, repaired by the full sync: \(finding)")
                    self.metrics.driftRepaired(table: finding.table.rawValue)
                }
            }
            let now = WallTime.now()
            for f in self.path.families { self.health.updated(family: f, at: now) }
        }
        // A commit's copy of a table is only needed during the commit: give the memory back.
        _ = releaseFreeMemory(0)
        self.lastSyncSucceeded = outcome.succeeded
        if outcome.succeeded && !self.readySent {
            self.readySent = true
            try? self.notifier.ready()
            self.logger.info("first sync done; ready")
        }
        return SyncRunner.Outcome(succeeded: outcome.succeeded)
    }

    // MARK: - The Node

    /// Takes the Node's node IPs, primary family and podCIDRs for the rules (once: later changes restart).
    func adopt(_ node: Node?) throws {
        self.nodeAdopted = true
        self.startedNode = node
        self.lastNode = node
        guard let node else { return }
        self.health.syncNode(node)
        let setup = self.path.setup.applying(node)
        self.logger.info("node \"\(node.name)\": node IPs \(NodeLifecycle.list(setup.nodeIPs)), primary family \(setup.primaryFamily.rawValue), podCIDRs \(NodeLifecycle.list(node.podCIDRs))")
        if !self.path.families.contains(setup.primaryFamily) {
            let why = "no support for primary IP family \"\(setup.primaryFamily.rawValue)\" (programming \(self.path.families.map(\.rawValue).joined(separator: ", ")))"
            if self.requirePrimaryFamily { throw SetupError.source(why) }
            self.logger.warning("\(why); --ip-family decides")
        }
        // New settings mean new compilers: the next sync compiles everything afresh.
        _ = self.path.update(setup: setup)
    }

    /// Each sync: the first look at the Node adopts it (unless the wait did); later, eligibility follows it and a
    /// change of what was taken from it at start ends the process, as upstream's NodeManager does.
    func followNode(_ node: Node?) {
        if !self.nodeAdopted {
            do { try self.adopt(node) } catch {
                self.logger.critical("\(error)")
                self.exit(1)
            }
            return
        }
        guard node != self.lastNode else { return }
        self.lastNode = node
        if let node { self.health.syncNode(node) }
        if let why = self.lifecycle.restartReason(started: self.startedNode, now: node) {
            self.logger.critical("\(why): exiting so that kube-natd restarts with the new values")
            self.exit(1)
        } else if let node, NodeSetup.hostIPs(of: node).isEmpty {
            self.logger.error("node \"\(node.name)\" lists no node IP any more; keeping \(NodeLifecycle.list(self.path.setup.nodeIPs))")
        }
    }

    /// ETP Local LoadBalancers with a health-check node port, and their local ready endpoints per family.
    func serviceHealthStates() -> [HealthCheckPort: ServiceHealthState] {
        ServiceHealthServers.states(self.store.peek(), settings: self.path.families.compactMap { self.path.settings(for: $0) })
    }

    // MARK: - Canaries and drift

    func ensureCanaries() {
        for f in self.path.families {
            do { try self.path.backend.ensureCanaries(family: f) } catch {
                self.logger.warning("cannot create canary chains: \(error)")
            }
        }
    }

    /// Every syncPeriod: canaries in mangle/nat/filter, and a digest comparison of every owned chain.
    func checkKernel() {
        guard self.detectDrift() else { return }
        self.driftCounted = true
        self.runner.request(full: true)
    }

    /// Logs and counts what differs from the last commit, recreates missing canaries; true when anything did.
    @discardableResult
    func detectDrift() -> Bool {
        let findings: [DriftMonitor.Finding]
        do {
            findings = try DriftMonitor.check(self.path.backend, committed: self.path.committed, families: self.path.families)
        } catch {
            self.logger.warning("cannot read the kernel's rules back for the drift check: \(error)")
            return false
        }
        guard !findings.isEmpty else { return false }
        for finding in findings {
            self.logger.warning("rules changed behind kube-natd's back, resyncing: \(finding)")
            self.metrics.driftRepaired(table: finding.table.rawValue)
        }
        if findings.contains(where: { $0.chains == [Ownership.canary] }) { self.ensureCanaries() }
        return true
    }
}

/// The moment the store received the earliest change not yet taken by a sync. Thread-safe: the source notes,
/// the sync takes.
final class FirstChange: @unchecked Sendable {
    private let lock = NSLock()
    private var first: ContinuousClock.Instant?

    /// A change reached the store at `now`; kept if it is the earliest since the last `take`.
    func note(at now: ContinuousClock.Instant = .now) {
        self.lock.withLock { self.first = min(self.first ?? now, now) }
    }

    /// The first change's moment since the last take (nil: none), cleared.
    func take() -> ContinuousClock.Instant? {
        self.lock.withLock {
            defer { self.first = nil }
            return self.first
        }
    }
}

/// One change's time inside kube-natd, in seconds: from the store receiving it to the sync that carried it done, and
/// the part of that the kernel spent committing (nf_tables: the batch sent to its replies read; libiptc: iptc_commit,
/// summed over tables). The rest (waiting for the sync, compile, encode and plan, conntrack cleanup) is kube-natd's
/// own. `eventToStart` is the wait for the sync alone (0 when the change reached the store just after the sync that
/// carries it started): minSyncPeriod, or a sync already running, holds a change there.
struct ChangeTiming: CustomStringConvertible {
    var eventToStart: Double
    var eventToDone: Double
    var kernelCommit: Double

    var own: Double { self.eventToDone - self.kernelCommit }

    var description: String {
        let ms = { (s: Double) in String(format: "%.3f", s * 1000) }
        return "change synced: first event to sync done \(ms(self.eventToDone)) ms, kernel commit \(ms(self.kernelCommit)) ms, own \(ms(self.own)) ms, waited for the sync \(ms(self.eventToStart)) ms"
    }
}

/// An executor of its own for the daemon's actor: a serial dispatch queue, so syncs (blocking kernel calls that
/// take long on large clusters) run beside Swift's cooperative threads, not on them.
final class DedicatedExecutor: SerialExecutor, @unchecked Sendable {
    private let queue: DispatchQueue

    init(label: String) { self.queue = DispatchQueue(label: label) }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.queue.async { job.runSynchronously(on: self.asUnownedSerialExecutor()) }
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }
}

/// glibc's `malloc_trim`: return freed heap pages (libiptc's table copy) to the kernel.
@_silgen_name("malloc_trim")
private func releaseFreeMemory(_ pad: Int) -> Int32
