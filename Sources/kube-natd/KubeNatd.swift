import ArgumentParser
import Daemon
import Foundation
import KubeModel
import KubeSource
import Logging
import Netfilter
import ProxyConfig
import RuleCompiler
import Ruleset

@main
struct KubeNatd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kube-natd",
        abstract: "A drop-in replacement for kube-proxy's iptables mode that writes each table atomically.",
        discussion: """
            kube-natd learns Services and EndpointSlices (from an apiserver or from manifest files), compiles the \
            KUBE-* chains kube-proxy would write on this node, and writes them in one transaction per table.

              kube-natd --config FILE --source PATH --dry-run     print the rules as iptables-restore text
              kube-natd --config FILE --source PATH --once        program the kernel once and exit
              kube-natd --cleanup                                 remove everything kube-proxy/kube-natd created
            """,
        version: "kube-natd \(kubeNatdVersion)")

    @OptionGroup(title: "Configuration") var config: ConfigOptions
    @OptionGroup(title: "Cluster source") var source: SourceOptions
    @OptionGroup(title: "Rules") var rules: RuleOptions

    /// kube-proxy's flags, taken out of argv (pflag's syntax) before ArgumentParser reads kube-natd's own.
    /// Set once in `main` before anything runs.
    nonisolated(unsafe) static var kubeProxy = KubeProxyCommandLine()
    /// The effective `logging.verbosity` (flag or file), set once the configuration is loaded.
    nonisolated(unsafe) static var verbosity = 0

    /// Usage errors (unknown values, conflicting modes) exit 2, like configuration errors, not ArgumentParser's 64.
    static func main() async {
        // A long-running process that now and then holds a whole table (libiptc's copy, a relist of every object)
        // and frees it: with glibc's default, the mmap threshold grows after such frees and later large blocks come
        // from the heap, where fragments keep the process resident size up; and every thread would get its own
        // arena. A fixed threshold returns large blocks to the kernel when freed; two arenas are enough for a
        // daemon whose heavy work runs on one thread at a time.
        _ = mallocOption(-3 /* M_MMAP_THRESHOLD */, 128 * 1024)
        _ = mallocOption(-8 /* M_ARENA_MAX */, 2)
        let kubeProxy: KubeProxyCommandLine
        do { kubeProxy = try KubeProxyCommandLine.parse(Array(CommandLine.arguments.dropFirst())) } catch {
            Stderr.line("kube-natd: \(error)")
            Foundation.exit(2)
        }
        Self.kubeProxy = kubeProxy
        Self.verbosity = kubeProxy.overrides.verbosity ?? 0
        if kubeProxy.help {
            StandardOutput.write(Self.helpMessage() + "\n" + Self.kubeProxyHelp)
            Foundation.exit(0)
        }
        if kubeProxy.version != nil {
            let version = Self.configuration.version
            StandardOutput.write((version.isEmpty ? "kube-natd" : version) + "\n")
            Foundation.exit(0)
        }
        do {
            var command = try parseAsRoot(kubeProxy.remaining)
            if var async = command as? AsyncParsableCommand { try await async.run() } else { try command.run() }
        } catch {
            if exitCode(for: error) == .validationFailure {
                Stderr.line(fullMessage(for: error))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }

    /// What this run does; exactly one at a time.
    enum Mode: String {
        case daemon, dryRun = "--dry-run", once = "--once", cleanup = "--cleanup", validate = "--validate",
             writeConfig = "--write-config-to", initOnly = "--init-only"
    }

    func validate() throws {
        _ = try self.mode()
        _ = try self.source.durations()
    }

    func mode() throws -> Mode {
        var modes: [Mode] = []
        if rules.dryRun { modes.append(.dryRun) }
        if rules.once { modes.append(.once) }
        if Self.kubeProxy.cleanup { modes.append(.cleanup) }
        if config.validate { modes.append(.validate) }
        if Self.kubeProxy.writeConfigTo != nil { modes.append(.writeConfig) }
        if Self.kubeProxy.initOnly { modes.append(.initOnly) }
        guard modes.count <= 1 else {
            throw ValidationError("\(modes.map(\.rawValue).joined(separator: " and ")) cannot be combined: choose one")
        }
        return modes.first ?? .daemon
    }

    var logger: Logger {
        var logger = Logger(label: "kube-natd")
        logger.logLevel = Self.verbosity >= 4 ? .debug : .info
        return logger
    }

    mutating func run() async throws {
        let kubeProxy = Self.kubeProxy
        let mode = try self.mode()
        var overrides = kubeProxy.overrides
        if mode == .writeConfig {
            // kube-proxy combines --healthz-port/--metrics-port with the addresses only when it neither reads
            // nor writes a config file.
            overrides.healthzPort = nil
            overrides.metricsPort = nil
        }
        // What the daemon loads, kept to notice an edit of the file on disk.
        let loadedConfig = kubeProxy.configFile.flatMap(ConfigFileWatch.read)
        var setup: NodeSetup
        do {
            setup = try NodeSetup.load(configPath: kubeProxy.configFile, overrides: overrides)
            setup.ruleLayout = rules.ruleLayout
        } catch let e as SetupError {
            Stderr.line(e.description)
            throw ExitCode(e.exitCode)
        }
        Self.verbosity = setup.configuration.logging.verbosity
        for notice in kubeProxy.notices { Stderr.line("warning: \(notice)") }
        for w in setup.warnings { Stderr.line("warning: \(w)") }

        switch mode {
        case .writeConfig:
            try StandardOutput.writeFile(setup.configuration.render(), to: kubeProxy.writeConfigTo!)
        case .initOnly:
            self.initOnly(setup)
        case .validate:
            if let path = source.source {
                let load = try loadManifests(path)
                for issue in load.issues { Stderr.line(issue.description) }
                if !load.errors.isEmpty { throw ExitCode(2) }
            }
        case .cleanup:
            try cleanup()
        case .dryRun:
            try dryRun(setup)
        case .once:
            OOMScore.apply(setup.configuration.oomScoreAdj, logger: logger)
            try once(setup)
        case .daemon:
            OOMScore.apply(setup.configuration.oomScoreAdj, logger: logger)
            let watch = kubeProxy.configFile.map { ConfigFileWatch(path: $0, loaded: loadedConfig ?? []) }
            try await runDaemon(setup, watch: watch)
        }
    }

    /// `--cleanup`: what kube-proxy's iptables, IPVS and nftables modes and kube-natd leave, through every backend
    /// that may hold rules of an earlier proxy (`EveryModeCleanup`), one line each and a summary.
    func cleanup() throws {
        let outcome = EveryModeCleanup.run(
            backends: BackendFactory.cleanupBackends(logger: logger), families: [.ipv4, .ipv6], cleaner: LeftoverCleaner())
        for line in outcome.lines { Stderr.line("kube-natd: \(line)") }
        if outcome.failed { throw ExitCode(1) }
    }

    /// As kube-proxy's iptables mode on every start: kube-proxy's nftables-mode tables go. Best effort, as
    /// upstream: a failure is logged and the start goes on.
    func removeNftablesModeLeftovers() {
        for event in LeftoverCleaner().removeNftablesMode() {
            switch event.outcome {
            case .removed: logger.info("\(event), left by kube-proxy's nftables mode")
            case .skipped: logger.debug("\(event)")
            case .failed: logger.warning("\(event)")
            }
        }
    }

    /// `--init-only`: what needs full privileges (the sysctls kube-proxy sets, the OOM score), then exit 0, so
    /// the daemon can run later with CAP_NET_ADMIN only.
    func initOnly(_ setup: NodeSetup) {
        // route_localnet as the IPv4 proxier sets it (localhost NodePorts); set whatever --ip-family says, since
        // the privileged step runs before the families are known.
        let localhost = setup.configuration.iptables.localhostNodePorts || rules.ruleLayout == .v1_23
        Sysctls().prepare(setup.configuration, localhostNodePorts: localhost, logger: logger)
        OOMScore.apply(setup.configuration.oomScoreAdj, logger: logger)
        logger.info("node initialized (--init-only); exiting")
    }

    /// The long-running mode: follow the source, keep the kernel in step; SIGTERM/SIGINT stop (rules stay),
    /// SIGHUP re-reads manifest files; an edit of the `--config` file ends the process with status 1.
    func runDaemon(_ setup: NodeSetup, watch: ConfigFileWatch?) async throws {
        let logger = self.logger
        let durations = try source.durations()
        let clusterSource: ClusterSource
        if let path = source.source {
            clusterSource = ManifestFileSource(path: path, recheck: durations.recheck, nodeName: setup.nodeName, logger: logger)
        } else {
            let c = setup.configuration.clientConnection.kubeconfig
            // As kube-proxy: with --config, the file's clientConnection.kubeconfig is used and --kubeconfig is ignored
            // (and reported so at start-up).
            let search = CredentialSearch(kubeconfigFlag: Self.kubeProxy.configFile == nil ? Self.kubeProxy.overrides.kubeconfig : nil,
                                          configKubeconfig: c.isEmpty ? nil : c,
                                          masterOverride: Self.kubeProxy.overrides.master)
            let credentials: ClusterCredentials
            do { credentials = try search.resolve(logger: logger) } catch {
                Stderr.line("kube-natd: \(error)")
                throw ExitCode(1)
            }
            var options = KubeSource.SourceOptions(nodeName: setup.nodeName)
            // clientConnection.qps / burst: client-go's token bucket in front of every request (kube-proxy's
            // --kube-api-qps / --kube-api-burst land here too). contentType is not honoured: we speak JSON only.
            options.qps = Double(setup.configuration.clientConnection.qps)
            options.burst = setup.configuration.clientConnection.burst
            if source.sourceMode == .poll { options.mode = .poll(interval: durations.poll) }
            clusterSource = APIServerClusterSource(credentials: credentials, options: options, logger: logger)
        }
        removeNftablesModeLeftovers()
        let path = try syncPath(setup, node: Sysctls())
        // As upstream's NodeManager: with an apiserver, wait for this node's Node (and its podCIDRs in NodeCIDR mode).
        let lifecycle = NodeLifecycle(waitForNode: source.source == nil,
                                      watchPodCIDRs: setup.configuration.detectLocalMode == .nodeCIDR)
        let daemon = ProxyDaemon(path: path, source: clusterSource, logger: logger, lifecycle: lifecycle,
                                 requirePrimaryFamily: rules.ipFamily == .auto)
        let task = Task { try await daemon.run() }
        var signalSources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler {
                if sig == SIGHUP {
                    logger.info("SIGHUP: reading the source again")
                    daemon.reload()
                } else {
                    logger.info("signal \(sig): stopping")
                    task.cancel()
                }
            }
            src.resume()
            signalSources.append(src)
        }
        let configChanged = ChangeReason()
        let watchTask = watch.map { watch in
            Task {
                guard let reason = await watch.changed(logger: logger) else { return }
                logger.error("\(reason): exiting so that the supervisor starts kube-natd with it")
                configChanged.set(reason)
                task.cancel()
            }
        }
        do { try await task.value } catch {
            Stderr.line("kube-natd: \(error)")
            throw ExitCode(1)
        }
        watchTask?.cancel()
        signalSources.forEach { $0.cancel() }
        if configChanged.get() != nil { throw ExitCode(1) }
    }

    /// The sync path of `--once` and the daemon: the chosen backend, features decided on this machine.
    func syncPath(_ setup: NodeSetup, node: NodePreparation) throws -> SyncPath {
        let clock = ContinuousClock()
        let started = clock.now
        let backend: KernelBackend
        do {
            let (b, why) = try BackendFactory.make(rules.backend, logger: logger)
            logger.info("\(why) (decided in \(Self.ms(clock.now - started)) ms)")
            backend = b
        } catch {
            Stderr.line("kube-natd: \(error)")
            throw ExitCode(1)
        }
        return SyncPath(setup: setup, families: try families(setup), backend: backend, features: features(create: true),
                        node: node, logger: logger, conntrackCleanup: rules.conntrackCleanup)
    }

    /// `--ip-family`, or (auto) every family this kernel can take, the primary one required.
    func families(_ setup: NodeSetup) throws -> [IPFamily] {
        let support = FamilySupport.detect()
        do {
            let families = try rules.ipFamily.families(primary: setup.primaryFamily, support: support)
            if rules.ipFamily == .auto {
                logger.info("IP families: \(families.map(\.rawValue).joined(separator: ", ")) (\(support); primary \(setup.primaryFamily.rawValue))")
            }
            return families
        } catch let e as SetupError {
            Stderr.line("kube-natd: \(e)")
            throw ExitCode(e.exitCode)
        }
    }

    /// The Node of a manifest source feeds node IPs, primary family and podCIDRs as the daemon's would.
    func applyingNode(_ setup: NodeSetup, _ state: ClusterState) -> NodeSetup {
        state.node.map { setup.applying($0) } ?? setup
    }

    /// `--once`: one turn of the daemon's sync path, from manifest files, then exit.
    func once(_ setup: NodeSetup) throws {
        guard let path = source.source else {
            Stderr.line("kube-natd: --once needs --source PATH (manifest files)")
            throw ExitCode(2)
        }
        removeNftablesModeLeftovers()
        let sync = try syncPath(setup, node: Sysctls())
        // The kernel's copy of the tables is read on the second core while the manifests are decoded: the apply
        // then only compares (and writes when something differs).
        sync.prefetch()
        let clock = ContinuousClock()
        let readFrom = clock.now
        let load = try loadManifests(path)
        for issue in load.issues { Stderr.line(issue.description) }
        let state = load.clusterState(nodeName: setup.nodeName)
        let withNode = applyingNode(setup, state)
        if rules.ipFamily == .auto && !sync.families.contains(withNode.primaryFamily) {
            Stderr.line("kube-natd: no support for primary IP family \"\(withNode.primaryFamily.rawValue)\" in this kernel")
            throw ExitCode(1)
        }
        _ = sync.update(setup: withNode)
        logger.info("read \(path): \(state.services.count) Services, \(state.slices.count) endpoint slices in \(Self.ms(clock.now - readFrom)) ms")
        let outcome = sync.run(ClusterStore.Snapshot(state: state), full: true)
        guard outcome.succeeded else {
            Stderr.line("kube-natd: rules not written, the kernel keeps its previous rules: \(outcome.error.map { "\($0)" } ?? "")")
            throw ExitCode(1)
        }
        // Done: the process exits now instead of releasing the cluster state object by object on the way out.
        // exit() still flushes stdio.
        Foundation.exit(0)
    }

    /// `--dry-run`: the same turn with the text backend and nothing on the node changed.
    func dryRun(_ setup: NodeSetup) throws {
        guard let path = source.source else {
            Stderr.line("kube-natd: --dry-run needs --source PATH (manifest files)")
            throw ExitCode(2)
        }
        let load = try loadManifests(path)
        for issue in load.issues { Stderr.line(issue.description) }
        let state = load.clusterState(nodeName: setup.nodeName)
        let text = TextBackend(rendersText: true)
        let withNode = applyingNode(setup, state)
        let sync = SyncPath(setup: withNode, families: try families(withNode), backend: text, features: features(create: false),
                            node: NoNodePreparation(), logger: Logger(label: "kube-natd", factory: { _ in SwiftLogNoOpLogHandler() }),
                            conntrackCleanup: false)
        let outcome = sync.run(ClusterStore.Snapshot(state: state), full: true)
        guard outcome.succeeded else {
            Stderr.line("kube-natd: \(outcome.error.map { "\($0)" } ?? "dry run failed")")
            throw ExitCode(1)
        }
        StandardOutput.write(outcome.report.text ?? "")
        for v in outcome.limitViolations { Stderr.line(v.description) }
        let leftOut = Set(outcome.limitViolations.map(\.service)).count
        let skipped = load.issues.filter { $0.severity == .error }.count
        let ignored = load.issues.count - skipped
        // The dry run changes nothing on the node, so it does not look for them either (reading nf_tables needs
        // CAP_NET_ADMIN, which a dry run does not): it says what a start would also do.
        Stderr.line("kube-natd: dry run: a start (daemon or --once) would also delete kube-proxy's nftables-mode tables, table ip kube-proxy and table ip6 kube-proxy, where they exist")
        Stderr.line("kube-natd: dry run: \(state.services.count) Services, \(state.slices.count) EndpointSlices; \(skipped) objects skipped, \(ignored) fields ignored"
            + (leftOut > 0 ? ", \(leftOut) Services left out for kernel limits" : ""))
    }

    /// Optional rule features, decided the same way for every mode (a dry run prints what `--once` would write;
    /// only the modes that write rules create the nfacct objects).
    func features(create: Bool) -> KernelFeatures {
        KernelFeatures.decide(randomFully: rules.randomFully, nfacctCounters: rules.nfacctCounters, create: create,
                              logger: logger)
    }

    static func ms(_ d: Duration) -> String { String(format: "%.1f", d.secondsValue * 1000) }

    func loadManifests(_ path: String) throws -> ManifestLoad {
        do { return try ManifestInput.load(path) } catch let e as SetupError {
            Stderr.line(e.description)
            throw ExitCode(e.exitCode)
        }
    }
}

/// glibc's `mallopt` (malloc.h, which the Glibc module does not import).
@_silgen_name("mallopt")
private func mallocOption(_ option: Int32, _ value: Int32) -> Int32

/// Why the daemon stopped on its own (set once, from the config file watch).
final class ChangeReason: @unchecked Sendable {
    private let lock = NSLock()
    private var reason: String?
    func set(_ r: String) { lock.withLock { reason = r } }
    func get() -> String? { lock.withLock { reason } }
}

extension KubeNatd {
    /// The kube-proxy part of `--help`.
    static var kubeProxyHelp: String {
        """
        KUBE-PROXY FLAGS:
          Every flag of kube-proxy, with pflag's syntax: --flag=value; --flag value (not for booleans);
          a bare boolean means true (--masquerade-all), --flag=false turns it off; -v 4, -v=4 or -v4.
          With --config only --hostname-override and the logging flags apply; the others are reported as ignored.

        """ + KubeProxyFlag.usage
    }
}
