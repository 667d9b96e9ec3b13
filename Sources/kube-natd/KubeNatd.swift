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
        abstract: "A drop-in replacement for kube-proxy's iptables mode that commits each table atomically through libiptc.",
        discussion: """
            kube-natd learns Services and EndpointSlices (from an apiserver or from manifest files), compiles the \
            KUBE-* chains kube-proxy would write on this node, and writes each table in one commit.

              kube-natd --config FILE --source PATH --dry-run     print the rules as iptables-restore text
              kube-natd --config FILE --source PATH --once        program the kernel once and exit
              kube-natd --cleanup                                 remove everything kube-proxy/kube-natd created
            """)

    @OptionGroup(title: "Configuration") var config: ConfigOptions
    @OptionGroup(title: "Cluster source") var source: SourceOptions
    @OptionGroup(title: "Rules") var rules: RuleOptions

    @Option(name: [.customShort("v"), .customLong("v")], help: "Log level verbosity (0-10), as kube-proxy's -v.")
    var verbosity: Int?

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

        if let path = config.writeConfigTo {
            try setup.configuration.render().write(toFile: path, atomically: true, encoding: .utf8)
            return
        }
        if config.validate {
            if let path = source.source {
                let load = try loadManifests(path)
                for issue in load.issues { Stderr.line(issue.description) }
                if !load.errors.isEmpty { throw ExitCode(2) }
            }
            return
        }
        if rules.cleanup {
            do {
                try Cleanup.run(families: [.ipv4, .ipv6])
                Stderr.line("kube-natd: cleanup done (IPv4 and IPv6)")
            } catch {
                Stderr.line("kube-natd: cleanup failed: \(error)")
                throw ExitCode(1)
            }
            return
        }
        if rules.dryRun {
            try dryRun(setup)
            return
        }
        if rules.once {
            try once(setup)
            return
        }
        try await runDaemon(setup)
    }

    /// The long-running mode: follow the source, keep the kernel in step; SIGTERM/SIGINT stop (rules stay),
    /// SIGHUP re-reads manifest files.
    func runDaemon(_ setup: NodeSetup) async throws {
        var logger = Logger(label: "kube-natd")
        logger.logLevel = (verbosity ?? 0) >= 4 ? .debug : .info
        guard let choice = BackendChoice(rawValue: rules.backend) else {
            Stderr.line("kube-natd: --backend: must be auto, libiptc or restore, got \"\(rules.backend)\"")
            throw ExitCode(2)
        }
        func duration(_ text: String, _ flag: String) throws -> Duration {
            guard let d = GoDuration(parsing: text), d.nanoseconds > 0 else {
                Stderr.line("kube-natd: \(flag): expected a positive duration such as 30s, got \"\(text)\"")
                throw ExitCode(2)
            }
            return .nanoseconds(d.nanoseconds)
        }
        let sourceChoice: ClusterSourceChoice
        if let path = source.source {
            sourceChoice = .manifests(path: path, recheck: try duration(source.manifestRecheck, "--manifest-recheck-interval"))
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
            if source.sourceMode == .poll { options.mode = .poll(interval: try duration(source.pollInterval, "--poll-interval")) }
            sourceChoice = .apiserver(credentials, options)
        }
        let backend: RulesetBackend
        do {
            let (b, why) = try BackendFactory.make(choice, logger: logger)
            logger.info("\(why)")
            backend = b
        } catch {
            Stderr.line("kube-natd: \(error)")
            throw ExitCode(1)
        }
        let daemon = ProxyDaemon(setup: setup, families: rules.ipFamily.families, backend: backend,
                                 features: features(probe: true), source: sourceChoice, logger: logger)
        daemon.conntrackCleanup = rules.conntrackCleanup
        let task = Task { try await daemon.run() }
        var signalSources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler {
                if sig == SIGHUP {
                    logger.info("SIGHUP: re-reading the manifests")
                    daemon.requestReload()
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

    func once(_ setup: NodeSetup) throws {
        guard let path = source.source else {
            Stderr.line("kube-natd: --once needs --source PATH (manifest files)")
            throw ExitCode(2)
        }
        var logger = Logger(label: "kube-natd")
        logger.logLevel = (verbosity ?? 0) >= 4 ? .debug : .info
        guard let choice = BackendChoice(rawValue: rules.backend) else {
            Stderr.line("kube-natd: --backend: must be auto, libiptc or restore, got \"\(rules.backend)\"")
            throw ExitCode(2)
        }
        let clock = ContinuousClock()
        let started = clock.now
        let backend: RulesetBackend
        do {
            let (b, why) = try BackendFactory.make(choice, logger: logger)
            logger.info("\(why) (decided in \(Self.ms(clock.now - started)) ms)")
            backend = b
        } catch {
            Stderr.line("kube-natd: \(error)")
            throw ExitCode(1)
        }
        // The kernel's copy of the tables is read on the second core while the manifests are decoded: the apply
        // then only compares (and writes through libiptc when something differs).
        let prefetch = (backend as? LibiptcBackend).map { _ in
            TablePrefetch(families: rules.ipFamily.families, tables: [.filter, .nat])
        }
        let readFrom = clock.now
        let state: ClusterState
        do {
            let load = try loadManifests(path)
            for issue in load.issues { Stderr.line(issue.description) }
            state = load.clusterState  // the decoded objects go once the state holds them
        }
        let loaded = clock.now
        logger.info("read \(path): \(state.services.count) Services, \(state.slices.count) endpoint slices in \(Self.ms(loaded - readFrom)) ms")
        if let prefetch, let libiptc = backend as? LibiptcBackend {
            for (family, snapshots) in prefetch.wait() { libiptc.usePrefetched(snapshots, family: family) }
            logger.debug("tables read ahead in \(String(format: "%.1f", prefetch.seconds * 1000)) ms, \(Self.ms(clock.now - loaded)) ms waited")
        }
        do {
            try OneShot(setup: setup, features: features(probe: true), backend: backend, logger: logger,
                        conntrackCleanup: rules.conntrackCleanup)
                .run(state: state, families: rules.ipFamily.families)
        } catch {
            Stderr.line("kube-natd: \(error)")
            throw ExitCode(1)
        }
        // Done: the process exits now instead of releasing the cluster state object by object on the way out
        // (~0.1 s at 10k Services, ~0.3 s at 30k). exit() still flushes stdio.
        Foundation.exit(0)
    }

    static func ms(_ d: Duration) -> String { String(format: "%.1f", d.secondsValue * 1000) }

    func loadManifests(_ path: String) throws -> ManifestLoad {
        do { return try ManifestInput.load(path) } catch let e as SetupError {
            Stderr.line(e.description)
            throw ExitCode(e.exitCode)
        }
    }

    func features(probe: Bool) -> KernelFeatures {
        KernelFeatures(randomFully: rules.randomFully == .yes || (rules.randomFully == .auto && probe && KernelProbe.hasRandomFully()),
                       nfacctCounters: rules.nfacctCounters == .yes)
    }

    func dryRun(_ setup: NodeSetup) throws {
        guard let path = source.source else {
            Stderr.line("kube-natd: --dry-run needs --source PATH (manifest files)")
            throw ExitCode(2)
        }
        let load = try loadManifests(path)
        for issue in load.issues { Stderr.line(issue.description) }
        let state = load.clusterState
        let families = rules.ipFamily.families
        var out = [UInt8]()
        for family in families {
            let compiler = RuleCompiler(settings: setup.settings(for: family, features: features(probe: false)))
            if families.count > 1 { out += Array("# \(family.rawValue)\n".utf8) }
            out += TextRenderer.renderBytes(compiler.compile(state))
        }
        FileHandle.standardOutput.write(Data(out))
        let skipped = load.issues.filter { $0.severity == .error }.count
        let ignored = load.issues.count - skipped
        Stderr.line("kube-natd: dry run: \(state.services.count) Services, \(state.slices.count) EndpointSlices; \(skipped) objects skipped, \(ignored) fields ignored")
    }
}

enum Stderr {
    static func line(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
}
