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
            """)

    @OptionGroup(title: "Configuration") var config: ConfigOptions
    @OptionGroup(title: "Cluster source") var source: SourceOptions
    @OptionGroup(title: "Rules") var rules: RuleOptions

    @Option(name: [.customShort("v"), .customLong("v")], help: "Log level verbosity (0-10), as kube-proxy's -v.")
    var verbosity: Int?

    /// Usage errors (unknown values, conflicting modes) exit 2, like configuration errors, not ArgumentParser's 64.
    static func main() async {
        // A long-running process that now and then holds a whole table (libiptc's copy, a relist of every object)
        // and frees it: with glibc's default, the mmap threshold grows after such frees and later large blocks come
        // from the heap, where fragments keep the process resident size up; and every thread would get its own
        // arena. A fixed threshold returns large blocks to the kernel when freed; two arenas are enough for a
        // daemon whose heavy work runs on one thread at a time.
        _ = mallocOption(-3 /* M_MMAP_THRESHOLD */, 128 * 1024)
        _ = mallocOption(-8 /* M_ARENA_MAX */, 2)
        do {
            var command = try parseAsRoot()
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
             writeConfig = "--write-config-to"
    }

    func validate() throws {
        _ = try self.mode()
        _ = try self.source.durations()
    }

    func mode() throws -> Mode {
        var modes: [Mode] = []
        if rules.dryRun { modes.append(.dryRun) }
        if rules.once { modes.append(.once) }
        if rules.cleanup { modes.append(.cleanup) }
        if config.validate { modes.append(.validate) }
        if config.writeConfigTo != nil { modes.append(.writeConfig) }
        guard modes.count <= 1 else {
            throw ValidationError("\(modes.map(\.rawValue).joined(separator: " and ")) cannot be combined: choose one")
        }
        return modes.first ?? .daemon
    }

    var logger: Logger {
        var logger = Logger(label: "kube-natd")
        logger.logLevel = (verbosity ?? 0) >= 4 ? .debug : .info
        return logger
    }

    mutating func run() async throws {
        var setup: NodeSetup
        do {
            setup = try NodeSetup.load(configPath: config.configFile, overrides: try config.overrides(verbosity: verbosity))
            setup.ruleLayout = rules.ruleLayout
        } catch let e as SetupError {
            Stderr.line(e.description)
            throw ExitCode(e.exitCode)
        }
        for w in setup.warnings { Stderr.line("warning: \(w)") }

        switch try self.mode() {
        case .writeConfig:
            try setup.configuration.render().write(toFile: config.writeConfigTo!, atomically: true, encoding: .utf8)
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
            try once(setup)
        case .daemon:
            try await runDaemon(setup)
        }
    }

    /// `--cleanup`: every backend that may hold rules of an earlier proxy removes what kube-natd owns.
    func cleanup() throws {
        var failed = false
        for backend in BackendFactory.cleanupBackends(logger: logger) {
            do {
                let report = try backend.cleanup(families: [.ipv4, .ipv6])
                let n = report.tables.reduce(0) { $0 + $1.chainsDeleted + $1.rulesDeleted }
                Stderr.line("kube-natd: cleanup through \(backend.name): \(n) chains and jumps removed")
            } catch {
                Stderr.line("kube-natd: cleanup through \(backend.name) failed: \(error)")
                failed = true
            }
        }
        if failed { throw ExitCode(1) }
        Stderr.line("kube-natd: cleanup done (IPv4 and IPv6)")
    }

    /// The long-running mode: follow the source, keep the kernel in step; SIGTERM/SIGINT stop (rules stay),
    /// SIGHUP re-reads manifest files.
    func runDaemon(_ setup: NodeSetup) async throws {
        let logger = self.logger
        let durations = try source.durations()
        let clusterSource: ClusterSource
        if let path = source.source {
            clusterSource = ManifestFileSource(path: path, recheck: durations.recheck, logger: logger)
        } else {
            let c = setup.configuration.clientConnection.kubeconfig
            // As kube-proxy: with --config, the file's clientConnection.kubeconfig is used and --kubeconfig is ignored
            // (and reported so at start-up).
            let search = CredentialSearch(kubeconfigFlag: config.configFile == nil ? config.kubeconfig : nil,
                                          configKubeconfig: c.isEmpty ? nil : c,
                                          masterOverride: config.master)
            let credentials: ClusterCredentials
            do { credentials = try search.resolve(logger: logger) } catch {
                Stderr.line("kube-natd: \(error)")
                throw ExitCode(1)
            }
            var options = KubeSource.SourceOptions(nodeName: setup.nodeName)
            if source.sourceMode == .poll { options.mode = .poll(interval: durations.poll) }
            clusterSource = APIServerClusterSource(credentials: credentials, options: options, logger: logger)
        }
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
        do { try await task.value } catch {
            Stderr.line("kube-natd: \(error)")
            throw ExitCode(1)
        }
        signalSources.forEach { $0.cancel() }
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
        let sync = try syncPath(setup, node: Sysctls())
        // The kernel's copy of the tables is read on the second core while the manifests are decoded: the apply
        // then only compares (and writes when something differs).
        sync.prefetch()
        let clock = ContinuousClock()
        let readFrom = clock.now
        let load = try loadManifests(path)
        for issue in load.issues { Stderr.line(issue.description) }
        let state = load.clusterState
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
        let state = load.clusterState
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
        FileHandle.standardOutput.write(Data((outcome.report.text ?? "").utf8))
        let skipped = load.issues.filter { $0.severity == .error }.count
        let ignored = load.issues.count - skipped
        Stderr.line("kube-natd: dry run: \(state.services.count) Services, \(state.slices.count) EndpointSlices; \(skipped) objects skipped, \(ignored) fields ignored")
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

enum Stderr {
    static func line(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
}
