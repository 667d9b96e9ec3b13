#if canImport(Glibc)
import Glibc
#endif
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

/// Where the daemon learns the cluster from.
public enum ClusterSourceChoice: Sendable {
    /// Manifest files, re-read when they change (checked every `recheck`) and on SIGHUP.
    case manifests(path: String, recheck: Duration)
    /// An apiserver: list then watch, or poll.
    case apiserver(ClusterCredentials, SourceOptions)
}

/// The long-running kube-natd: follows a source and keeps the kernel in step, as kube-proxy does.
///
/// Every sync runs the same path as `--once`: compile (incrementally) and one commit per table and family.
public final class ProxyDaemon: @unchecked Sendable {
    public var setup: NodeSetup
    public let families: [IPFamily]
    public let backend: RulesetBackend
    public let features: KernelFeatures
    public let source: ClusterSourceChoice
    public var logger: Logger
    /// `--conntrack-cleanup`: delete stale UDP conntrack entries after commits that changed endpoints.
    public var conntrackCleanup = true

    public let store = ClusterStore()
    public let metrics: ProxyMetrics
    public let health: ProxyHealth
    let runner: SyncRunner
    private var compilers: [IPFamily: RuleCompiler] = [:]
    private let notifier = SystemdNotifier()
    private var readySent = false
    private var reloadRequested = false
    /// The periodic check counted drift and asked for the full sync that repairs it.
    private var driftCounted = false
    /// A failed sync leaves the kernel behind the compiler: the next full sync's rewrites are not drift.
    private var lastSyncSucceeded = false
    private let lock = NSLock()

    public init(setup: NodeSetup, families: [IPFamily], backend: RulesetBackend, features: KernelFeatures,
                source: ClusterSourceChoice, logger: Logger) {
        self.setup = setup
        self.families = families
        self.backend = backend
        self.features = features
        self.source = source
        self.logger = logger
        let c = setup.configuration
        let syncPeriod = Duration.nanoseconds(c.iptables.syncPeriod.nanoseconds)
        runner = SyncRunner(minInterval: .nanoseconds(c.iptables.minSyncPeriod.nanoseconds), maxInterval: syncPeriod)
        metrics = ProxyMetrics(families: families)
        health = ProxyHealth(syncPeriod: syncPeriod)
        for f in families { compilers[f] = RuleCompiler(settings: setup.settings(for: f, features: features)) }
    }

    /// Asks for the manifests to be read again (SIGHUP).
    public func requestReload() {
        lock.lock(); reloadRequested = true; lock.unlock()
    }

    /// Runs until the task is cancelled (SIGTERM/SIGINT in the executable). The rules stay in the kernel.
    public func run() async throws {
        let c = setup.configuration
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var healthServer: HealthServer?
        var metricsServer: MetricsServer?
        if let (host, port) = c.healthzListenAddress {
            do { healthServer = try await HealthServer.start(host: host, port: port, health: health, metrics: metrics, group: group, logger: logger) } catch {
                logger.error("cannot serve healthz on \(c.healthzBindAddress): \(error)")
                if c.bindAddressHardFail { throw error }
            }
        }
        if let (host, port) = c.metricsListenAddress {
            do { metricsServer = try await MetricsServer.start(host: host, port: port, metrics: metrics, group: group, logger: logger) } catch {
                logger.error("cannot serve metrics on \(c.metricsBindAddress): \(error)")
                if c.bindAddressHardFail { throw error }
            }
        }
        let ipv4Settings = families.contains(.ipv4) ? compilers[.ipv4]!.settings : nil
        let serviceHealth = ServiceHealthServers(
            health: health, addresses: ServiceHealthServers.listenAddresses(for: ipv4Settings?.nodePortAddresses ?? .all),
            group: group, logger: logger)
        Sysctls.apply(c, localhostNodePorts: ipv4Settings.map { $0.localhostNodePorts } ?? false, logger: logger)
        ensureCanaries()
        for f in families { health.updated(family: f) }  // upstream's SyncLoop start: healthy until a queued sync ages

        store.setOnChange { [runner, health, metrics, families, store] in
            runner.request()
            let now = WallTime.now()
            for f in families {
                health.queuedUpdate(family: f, at: now)
                metrics.syncQueued(family: f, at: now)
            }
            let p = store.pending
            metrics.setPendingChanges(services: p.services, endpoints: p.endpoints)
        }
        let sourceTask = Task { await self.follow() }
        let clock = ContinuousClock()
        let syncPeriod = runner.maxInterval
        var nextCheck = clock.now + syncPeriod
        var nextWatchdog = clock.now
        await runner.run(
            ready: { [store] in store.isInitialized },
            idle: { [self] in
                if let every = notifier.watchdogInterval, clock.now >= nextWatchdog {
                    try? notifier.watchdog()
                    nextWatchdog = clock.now + every
                }
                if clock.now >= nextCheck {
                    nextCheck = clock.now + syncPeriod
                    checkKernel()
                }
            },
            sync: { [self] full in
                let outcome = sync(full: full)
                await serviceHealth.sync(serviceHealthStates())
                return outcome
            })
        sourceTask.cancel()
        _ = await sourceTask.value
        try? notifier.stopping()
        await serviceHealth.stop()
        await healthServer?.stop()
        await metricsServer?.stop()
        try? await group.shutdownGracefully()
        logger.info("stopped; the rules stay in the kernel")
    }

    // MARK: - Sync

    func sync(full: Bool) -> SyncRunner.Outcome {
        // A full sync rewrites every owned chain, repairing any drift silently: look first, so what it repairs is
        // logged and counted (unless the periodic check already did, and asked for this sync).
        let alreadyCounted: Bool = { lock.lock(); defer { lock.unlock() }; let r = driftCounted; driftCounted = false; return r }()
        let snap = store.take()
        // With nothing changed since the last commit, whatever the apply has to rewrite is drift: count it from
        // the apply's own report instead of reading every table twice. With changes pending, look first.
        let checkDrift = full && !alreadyCounted && readySent
        let inferDrift = checkDrift && lastSyncSucceeded && snap.serviceChanges + snap.endpointChanges == 0
        if checkDrift && !inferDrift { _ = detectDrift() }
        metrics.countChanges(services: snap.serviceChanges, endpoints: snap.endpointChanges)
        metrics.setPendingChanges(services: 0, endpoints: 0)
        var ok = true
        // The first sync compiles everything; after a restart the kernel already holds the rules, so its tables
        // are read on the second core meanwhile and the apply only compares them.
        var prefetch = !readySent && backend is LibiptcBackend
            ? TablePrefetch(families: families, tables: [.filter, .nat]) : nil
        for family in families {
            let compiler = compilers[family]!
            let started = ContinuousClock.now
            let ruleset = compiler.compile(snap.state)
            let compiled = ContinuousClock.now
            if let p = prefetch, let libiptc = backend as? LibiptcBackend {
                for (f, snapshots) in p.wait() { libiptc.usePrefetched(snapshots, family: f) }
                prefetch = nil
            }
            do {
                let report = try backend.apply(ruleset)
                if inferDrift && backend is LibiptcBackend {
                    for finding in DriftMonitor.repaired(by: report) {
                        logger.warning("rules changed behind kube-natd's back, repaired by the full sync: \(finding)")
                        metrics.driftRepaired(table: finding.table.rawValue)
                    }
                }
            } catch {
                ok = false
                metrics.restoreFailed(family: family, partial: !full)
                logger.error("sync \(family.rawValue) failed, the kernel keeps its previous rules; retrying with backoff: \(error)")
                continue
            }
            let done = ContinuousClock.now
            let seconds = (done - started).secondsValue
            let now = WallTime.now()
            metrics.observeSync(family: family, seconds: seconds, full: full)
            metrics.syncSucceeded(family: family, at: now)
            for t in [Table.filter, .nat] {
                let n = ruleset[t]?.ruleCount ?? 0
                metrics.setRuleCounts(family: family, table: t.rawValue, total: n, written: n)
            }
            let stats = compiler.lastStats
            metrics.setNoLocalEndpoints(family: family, internalPolicy: stats.noLocalEndpointsInternal,
                                        externalPolicy: stats.noLocalEndpointsExternal)
            for t in snap.triggerTimes { metrics.observeNetworkProgramming(family: family, seconds: max(0, Date().timeIntervalSince(t))) }
            health.updated(family: family, at: now)
            // Stale UDP flows can only appear when endpoints or Services changed (or after a restart: the
            // first sync is full). Reading the conntrack table on every idle sync is what kubernetes #129982
            // complains about, so it is skipped otherwise.
            if conntrackCleanup && (full || snap.endpointChanges + snap.serviceChanges > 0) {
                let report = UDPConntrackReconciler().reconcile(RuleCompiler.udpFrontends(snap.state, settings: compiler.settings))
                metrics.conntrackReconciled(family: family, seconds: report.durationSeconds, deleted: Int(report.deleted))
                if report.error != nil { logger.error("\(report)") } else if report.deleted > 0 { logger.info("\(report)") }
            }
            logger.info("synced \(family.rawValue) (\(full ? "full" : "partial")): \(stats.services) Services, \(stats.endpoints) endpoints, \(stats.fragmentsCompiled) re-derived; filter \(ruleset[.filter]?.ruleCount ?? 0) rules, nat \(ruleset[.nat]?.ruleCount ?? 0) rules; compile \(ms(compiled - started)) ms, commit \(ms(done - compiled)) ms")
        }
        // libiptc's copy of a table is only needed during the commit: give the memory back.
        _ = releaseFreeMemory(0)
        lastSyncSucceeded = ok
        if ok && !readySent {
            readySent = true
            try? notifier.ready()
            logger.info("first sync done; ready")
        }
        return SyncRunner.Outcome(succeeded: ok)
    }

    private func ms(_ d: Duration) -> String { String(format: "%.1f", d.secondsValue * 1000) }

    /// ETP Local LoadBalancers with a health-check node port, and their local ready endpoints.
    func serviceHealthStates() -> [HealthCheckPort: ServiceHealthState] {
        let state = store.take(peekOnly: true)
        var out: [HealthCheckPort: ServiceHealthState] = [:]
        for svc in state.services.values
        where svc.type == .loadBalancer && svc.externalTrafficPolicy == .local && svc.healthCheckNodePort != 0 {
            var local = Set<IPAddress>()
            for slice in state.slices(for: svc.name) {
                for ep in slice.endpoints where ep.nodeName == setup.nodeName && (ep.conditions.ready ?? true) {
                    if let ip = ep.addresses.first { local.insert(ip) }
                }
            }
            out[svc.healthCheckNodePort] = ServiceHealthState(service: svc.name, localEndpoints: local.count)
        }
        return out
    }

    // MARK: - Canaries and drift

    func ensureCanaries() {
        guard let libiptc = backend as? LibiptcBackend else { return }
        for f in families {
            do { _ = try libiptc.ensureCanaries(family: f) } catch { logger.warning("cannot create canary chains: \(error)") }
        }
    }

    /// Every syncPeriod: canaries in mangle/nat/filter, and a digest comparison of every owned chain.
    func checkKernel() {
        guard detectDrift() else { return }
        lock.lock(); driftCounted = true; lock.unlock()
        runner.request(full: true)
    }

    /// Logs and counts what differs from the last commit, recreates missing canaries; true when anything did.
    @discardableResult
    func detectDrift() -> Bool {
        guard backend is LibiptcBackend else { return false }
        var findings: [DriftMonitor.Finding] = []
        for f in families { findings += DriftMonitor.check(family: f, expected: compilers[f]?.lastResult) }
        guard !findings.isEmpty else { return false }
        for finding in findings {
            logger.warning("rules changed behind kube-natd's back, resyncing: \(finding)")
            metrics.driftRepaired(table: finding.table.rawValue)
        }
        if findings.contains(where: { $0.chains == [Ownership.canary] }) { ensureCanaries() }
        return true
    }

    // MARK: - Sources

    func follow() async {
        switch source {
        case .manifests(let path, let recheck):
            await followManifests(path: path, recheck: recheck)
        case .apiserver(let credentials, let options):
            await followAPIServer(credentials, options)
        }
    }

    private func followManifests(path: String, recheck: Duration) async {
        var lastStamp = ""
        while !Task.isCancelled {
            let stamp = Self.stamp(path)
            let forced: Bool = { lock.lock(); defer { lock.unlock() }; let r = reloadRequested; reloadRequested = false; return r }()
            if stamp != lastStamp || forced {
                lastStamp = stamp
                do {
                    let load = try ManifestSource(path: path).load()
                    for issue in load.issues { logger.warning("\(issue)") }
                    store.replace(services: load.services, slices: load.slices)
                    logger.info("read \(path): \(load.services.count) Services, \(load.slices.count) endpoint slices\(forced ? " (SIGHUP)" : "")")
                } catch {
                    logger.error("cannot read \(path), keeping the last good state: \(error)")
                }
            }
            try? await Task.sleep(for: min(recheck, .milliseconds(200)) == recheck ? recheck : .milliseconds(200))
        }
    }

    /// Names, sizes and modification times of the source files: a change in any means re-read.
    static func stamp(_ path: String) -> String {
        let files = (try? ManifestSource.files(at: path)) ?? []
        return files.map { f -> String in
            let a = try? FileManager.default.attributesOfItem(atPath: f)
            let m = (a?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\(f):\(a?[.size] ?? 0):\(m)"
        }.joined(separator: "|")
    }

    private func followAPIServer(_ credentials: ClusterCredentials, _ options: SourceOptions) async {
        let source = APIServerSource<DecodeResult>(credentials: credentials, options: options, logger: logger) { kind, json in
            ObjectDecoder.decode(json, defaultKind: kind.rawValue)
        }
        let log = logger
        do {
            try await source.run { [store] event in
                func accepted(_ r: DecodeResult) -> DecodeResult {
                    for issue in r.issues { log.warning("\(issue)") }
                    return r
                }
                switch event {
                case .replaceAll(let kind, let objects):
                    let rs = objects.map(accepted)
                    store.replace(kind, services: rs.compactMap(\.service), slices: rs.compactMap(\.slice))
                case .synced(let kind):
                    store.markSynced(kind)
                case .upsert(_, let object):
                    let r = accepted(object)
                    if let s = r.service { store.upsert(s) } else if let s = r.slice { store.upsert(s) }
                case .delete(let kind, let name):
                    store.delete(kind, name)
                case .node(let info):
                    store.setNode(info)
                    self.nodeChanged(info)
                }
            }
        } catch {
            logger.critical("apiserver source stopped: \(error)")
        }
    }

    /// The Node's pod CIDR (for detectLocalMode NodeCIDR) and addresses feed the compiler's settings.
    func nodeChanged(_ info: NodeInfo) {
        var s = setup
        s.podCIDR = info.podCIDRs.compactMap { CIDR($0) }.first
        let ips = (info.internalIPs + info.externalIPs).compactMap { IPAddress($0) }
        if !ips.isEmpty { s.nodeIPs = Array(NSOrderedSet(array: s.nodeIPs.prefix(1) + ips).array as! [IPAddress]) }
        lock.lock(); defer { lock.unlock() }
        setup = s
        for f in families where compilers[f]?.settings != s.settings(for: f, features: features) {
            compilers[f] = RuleCompiler(settings: s.settings(for: f, features: features))
            runner.request(full: true)
        }
    }
}

/// glibc's `malloc_trim`: return freed heap pages (libiptc's table copy) to the kernel.
@_silgen_name("malloc_trim")
private func releaseFreeMemory(_ pad: Int) -> Int32

extension Duration {
    /// The duration in seconds, as a Double.
    public var secondsValue: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
