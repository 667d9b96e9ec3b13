import XCTest

@testable import ProxyConfig

/// kube-proxy's command line read with pflag's rules (`KubeProxyCommandLine`).
final class CommandLineTests: XCTestCase {
    private func parse(_ args: String...) throws -> KubeProxyCommandLine {
        try KubeProxyCommandLine.parse(args)
    }

    private func load(_ args: String..., config: String? = nil) throws -> LoadedConfiguration {
        let line = try KubeProxyCommandLine.parse(args)
        return try KubeProxyConfiguration.load(configText: config, overrides: line.overrides)
    }

    private func problems(_ args: String..., config: String? = nil) -> [String] {
        do {
            let line = try KubeProxyCommandLine.parse(args)
            _ = try KubeProxyConfiguration.load(configText: config, overrides: line.overrides)
            return []
        } catch let e as ConfigurationError {
            return e.problems.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    /// Every flag of upstream's options.go and component-base's logging flags, re-typed from upstream as test
    /// data: a row missing from the table (or one upstream does not have) fails here.
    func testTableHoldsEveryUpstreamFlag() {
        let upstream: Set<String> = [
            "config", "write-config-to", "cleanup", "feature-gates", "kubeconfig", "master", "kube-api-content-type",
            "kube-api-burst", "kube-api-qps", "hostname-override", "bind-address", "healthz-bind-address",
            "metrics-bind-address", "bind-address-hard-fail", "profiling", "show-hidden-metrics-for-version",
            "init-only", "proxy-mode", "iptables-masquerade-bit", "masquerade-all", "iptables-localhost-nodeports",
            "iptables-sync-period", "iptables-min-sync-period", "ipvs-sync-period", "ipvs-min-sync-period",
            "ipvs-scheduler", "ipvs-exclude-cidrs", "ipvs-strict-arp", "ipvs-tcp-timeout", "ipvs-tcpfin-timeout",
            "ipvs-udp-timeout", "detect-local-mode", "pod-bridge-interface", "pod-interface-name-prefix",
            "cluster-cidr", "nodeport-addresses", "oom-score-adj", "conntrack-max-per-core", "conntrack-min",
            "conntrack-tcp-timeout-established", "conntrack-tcp-timeout-close-wait", "conntrack-tcp-be-liberal",
            "conntrack-udp-timeout", "conntrack-udp-timeout-stream", "config-sync-period", "healthz-port",
            "metrics-port", "logging-format", "log-flush-frequency", "v", "vmodule", "log-json-split-stream",
            "log-json-info-buffer-size", "version", "help",
        ]
        XCTAssertEqual(Set(KubeProxyFlag.all.map(\.name)), upstream)
        XCTAssertEqual(KubeProxyFlag.all.count, upstream.count, "a flag listed twice")
    }

    func testBareBooleanIsTrueAndNeverTakesTheNextArgument() throws {
        let line = try parse("--masquerade-all", "--dry-run", "--conntrack-tcp-be-liberal", "false")
        XCTAssertEqual(line.overrides.masqueradeAll, true)
        XCTAssertEqual(line.overrides.conntrackTCPBeLiberal, true)
        // pflag: "false" after a bare boolean is a positional argument, left for the rest of the parser.
        XCTAssertEqual(line.remaining, ["--dry-run", "false"])
    }

    func testBooleanWithValue() throws {
        XCTAssertEqual(try parse("--masquerade-all=false").overrides.masqueradeAll, false)
        XCTAssertEqual(try parse("--masquerade-all=true").overrides.masqueradeAll, true)
        XCTAssertEqual(try parse("--iptables-localhost-nodeports=0").overrides.iptablesLocalhostNodePorts, false)
        XCTAssertEqual(try parse("--bind-address-hard-fail=T").overrides.bindAddressHardFail, true)
        XCTAssertThrowsError(try parse("--masquerade-all=maybe")) {
            XCTAssertEqual("\($0)", "--masquerade-all: invalid argument \"maybe\": expected true or false")
        }
    }

    func testValueFlagsTakeEqualsOrTheNextArgument() throws {
        for args in [["--iptables-sync-period", "10s"], ["--iptables-sync-period=10s"]] {
            let line = try KubeProxyCommandLine.parse(args + ["--source", "x.yaml"])
            XCTAssertEqual(line.overrides.iptablesSyncPeriod, .seconds(10))
            XCTAssertEqual(line.remaining, ["--source", "x.yaml"])
        }
        // A value that looks like a flag is still the value, as in pflag.
        XCTAssertEqual(try parse("--hostname-override", "--weird").overrides.hostnameOverride, "--weird")
        XCTAssertThrowsError(try parse("--conntrack-min")) {
            XCTAssertEqual("\($0)", "--conntrack-min: flag needs an argument")
        }
    }

    func testVerbosityShorthandForms() throws {
        for args in [["-v", "4"], ["-v=4"], ["-v4"], ["--v=4"], ["--v", "4"]] {
            XCTAssertEqual(try KubeProxyCommandLine.parse(args).overrides.verbosity, 4, "\(args)")
        }
        XCTAssertThrowsError(try parse("-v", "loud")) {
            XCTAssertTrue("\($0)".hasPrefix("-v: invalid argument \"loud\""))
        }
    }

    func testUnderscoresAreDashesInNames() throws {
        XCTAssertEqual(try parse("--masquerade_all").overrides.masqueradeAll, true)
        XCTAssertEqual(try parse("--kube_api_burst=20").overrides.kubeAPIBurst, 20)
    }

    func testOwnFlagsAndDoubleDashPassThroughInOrder() throws {
        let line = try parse(
            "--source", "a", "--masquerade-all", "--backend", "libiptc", "--", "--masquerade-all=false")
        XCTAssertEqual(line.remaining, ["--source", "a", "--backend", "libiptc", "--", "--masquerade-all=false"])
        XCTAssertEqual(line.overrides.masqueradeAll, true)
        XCTAssertEqual(line.given, ["--masquerade-all"])
    }

    func testErrorsNameTheFlag() {
        XCTAssertThrowsError(try parse("--kube-api-qps", "fast")) {
            XCTAssertEqual("\($0)", "--kube-api-qps: invalid argument \"fast\": expected a number")
        }
        XCTAssertThrowsError(try parse("--conntrack-udp-timeout=5")) {
            XCTAssertTrue("\($0)".hasPrefix("--conntrack-udp-timeout: invalid argument \"5\""))
        }
        XCTAssertThrowsError(try parse("--bind-address=node-1")) {
            XCTAssertEqual("\($0)", "--bind-address: invalid argument \"node-1\": not a valid IP address")
        }
        XCTAssertThrowsError(try parse("--ipvs-tcp-timeout=soon")) {
            XCTAssertTrue("\($0)".hasPrefix("--ipvs-tcp-timeout: invalid argument \"soon\""))
        }
        XCTAssertEqual(
            problems("--iptables-masquerade-bit", "40"),
            ["--iptables-masquerade-bit: iptables.masqueradeBit: must be 0..31, got 40"])
        XCTAssertEqual(
            problems("--proxy-mode=ipvs"), ["--proxy-mode: mode: kube-natd implements iptables mode only, got \"ipvs\""]
        )
    }

    func testRepeatedFlagsLastWinsListsAppendGatesMerge() throws {
        let line = try parse(
            "-v=2", "-v=5", "--nodeport-addresses=10.0.0.0/8", "--nodeport-addresses", "192.168.0.0/16,primary",
            "--feature-gates=AllAlpha=true", "--feature-gates", "AllBeta=false,AllAlpha=false")
        XCTAssertEqual(line.overrides.verbosity, 5)
        XCTAssertEqual(line.overrides.nodePortAddresses, ["10.0.0.0/8", "192.168.0.0/16", "primary"])
        XCTAssertEqual(line.overrides.featureGates, ["AllAlpha": false, "AllBeta": false])
    }

    func testEffectiveFlagsReachTheConfiguration() throws {
        let c = try load(
            "--conntrack-max-per-core=0", "--conntrack-min", "1000", "--conntrack-tcp-timeout-established=2h",
            "--conntrack-tcp-timeout-close-wait", "30m", "--conntrack-tcp-be-liberal", "--conntrack-udp-timeout=30s",
            "--conntrack-udp-timeout-stream=2m", "--kube-api-qps=50", "--kube-api-burst", "100",
            "--kube-api-content-type=application/json", "--config-sync-period=5m", "--oom-score-adj=-500",
            "--bind-address-hard-fail", "--logging-format=json", "--log-flush-frequency=10s", "--vmodule=proxier*=4",
            "--feature-gates=PreferSameTrafficDistribution=true"
        ).configuration
        XCTAssertEqual(c.conntrack.maxPerCore, 0)
        XCTAssertEqual(c.conntrack.min, 1000)
        XCTAssertEqual(c.conntrack.tcpEstablishedTimeout, .hours(2))
        XCTAssertEqual(c.conntrack.tcpCloseWaitTimeout, .minutes(30))
        XCTAssertTrue(c.conntrack.tcpBeLiberal)
        XCTAssertEqual(c.conntrack.udpTimeout, .seconds(30))
        XCTAssertEqual(c.conntrack.udpStreamTimeout, .minutes(2))
        XCTAssertEqual(c.clientConnection.qps, 50)
        XCTAssertEqual(c.clientConnection.burst, 100)
        XCTAssertEqual(c.clientConnection.contentType, "application/json")
        XCTAssertEqual(c.configSyncPeriod, .minutes(5))
        XCTAssertEqual(c.oomScoreAdj, -500)
        XCTAssertTrue(c.bindAddressHardFail)
        XCTAssertEqual(c.logging.format, "json")
        XCTAssertEqual(c.logging.flushFrequency, .seconds(10))
        XCTAssertEqual(c.logging.vmodule, [.init(filePattern: "proxier*", verbosity: 4)])
        XCTAssertEqual(c.featureGates, ["PreferSameTrafficDistribution": true])
    }

    func testUnderConfigOnlyHostnameOverrideAndLoggingFlagsApply() throws {
        let loaded = try load(
            "--hostname-override=Flag-Node", "-v=5", "--masquerade-all", "--conntrack-min=5", "--healthz-port=0",
            config: Fixtures.minimal("hostnameOverride: file-node\nlogging: {verbosity: 1}"))
        let c = loaded.configuration
        XCTAssertEqual(c.hostnameOverride, "flag-node")
        XCTAssertEqual(c.logging.verbosity, 5)
        XCTAssertFalse(c.iptables.masqueradeAll)
        XCTAssertEqual(c.conntrack.min, 131072)
        XCTAssertEqual(c.healthzBindAddress, "0.0.0.0:10256")
        XCTAssertEqual(
            loaded.warnings.map(\.description),
            [
                "flag --masquerade-all is ignored because --config is given",
                "flag --conntrack-min is ignored because --config is given",
                "flag --healthz-port is ignored because --config is given",
            ])
    }

    func testDeprecatedPortFlagsCombineWithTheAddressAsUpstream() throws {
        XCTAssertEqual(try load("--healthz-port=0").configuration.healthzBindAddress, "")
        XCTAssertEqual(try load("--metrics-port", "0").configuration.metricsBindAddress, "")
        XCTAssertEqual(
            try load("--healthz-bind-address=10.1.2.3", "--healthz-port=1234").configuration.healthzBindAddress,
            "10.1.2.3:1234")
        // addressFromDeprecatedFlags appends the port only to a bare IP: with the default "0.0.0.0:10256" a
        // lone --healthz-port changes nothing, in kube-proxy as here.
        XCTAssertEqual(try load("--healthz-port=1234").configuration.healthzBindAddress, "0.0.0.0:10256")
        XCTAssertEqual(try load("--metrics-bind-address=").configuration.metricsBindAddress, "")
        XCTAssertEqual(problems("--metrics-port=70000"), ["--metrics-port: metrics-port: must be 0..65535, got 70000"])
    }

    func testNotApplicableAndDeprecatedFlagsAreToldOnce() throws {
        let line = try parse("--ipvs-scheduler=rr", "--ipvs-scheduler", "lc", "--profiling", "--healthz-port=1")
        XCTAssertEqual(line.notices.count, 3)
        XCTAssertTrue(line.notices[0].hasPrefix("flag --ipvs-scheduler has no effect in kube-natd: "))
        XCTAssertTrue(line.notices[1].hasPrefix("flag --profiling has no effect in kube-natd: "))
        XCTAssertTrue(line.notices[2].hasPrefix("flag --healthz-port has been deprecated"))
    }

    func testFeatureGatesValidatedAsUpstream() {
        XCTAssertEqual(
            problems("--feature-gates=NoSuchGate=true"),
            ["--feature-gates: featureGates.NoSuchGate: unrecognized feature gate, got \"NoSuchGate\""])
        XCTAssertEqual(
            problems("--feature-gates=TopologyAwareHints=false"),
            [
                "--feature-gates: featureGates.TopologyAwareHints: cannot set feature gate TopologyAwareHints to false, feature is locked to true, got false"
            ])
        XCTAssertEqual(problems("--feature-gates=TopologyAwareHints=true,AllBeta=true"), [])
        XCTAssertThrowsError(try parse("--feature-gates=AllAlpha")) {
            XCTAssertEqual("\($0)", "--feature-gates: invalid argument \"AllAlpha\": entries must be Name=true|false")
        }
        // The file's gates are checked the same way (kube-proxy's SetFromMap reads both), named by path.
        XCTAssertEqual(
            problems(config: Fixtures.minimal("featureGates: {Bogus: true}")),
            ["featureGates.Bogus: unrecognized feature gate, got \"Bogus\""])
    }

    func testModeFlags() throws {
        let line = try parse("--config", "c.yaml", "--cleanup", "--init-only=false", "--write-config-to=out.yaml", "-h")
        XCTAssertEqual(line.configFile, "c.yaml")
        XCTAssertTrue(line.cleanup)
        XCTAssertFalse(line.initOnly)
        XCTAssertEqual(line.writeConfigTo, "out.yaml")
        XCTAssertTrue(line.help)
        // --version has pflag's NoOptDefVal: a bare --version never takes the next argument.
        let v = try parse("--version", "raw")
        XCTAssertEqual(v.version, "true")
        XCTAssertEqual(v.remaining, ["raw"])
        XCTAssertEqual(try parse("--version=raw").version, "raw")
        XCTAssertNil(try parse("--version=false").version)
    }
}
