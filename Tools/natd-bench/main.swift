import CBenchFloor
import Daemon
import Foundation
import KubeModel
import KubeSource
import Netfilter
import ProxyConfig
import RuleCompiler
import Ruleset
import SyntheticCluster

/// Measurements and fixtures for `make bench` (Benchmarks/run.sh). Every subcommand prints one JSON object.
///
///   natd-bench compile SERVICES [RUNS]       full compile, render and one-endpoint incremental compile, in process
///   natd-bench generate SERVICES DIR [DIR2]  the synthetic cluster as DIR/cluster.json (a `kind: List`) and its
///                                            node's KubeProxyConfiguration beside DIR; DIR2 gets the same cluster with one endpoint of one Service changed
///   natd-bench load DIR [RUNS]               manifest load and decode time (what `kube-natd --once` does first)
///   natd-bench sync CONFIG DIR DIR2 [RUNS [libiptc|libnftnl]]   what the daemon does per sync, without process start, manifest
///                                            decode or host-mode detection: full compile + libiptc commit of
///                                            both tables (DIR, steady state), and a one-endpoint sync (DIR2 vs
///                                            DIR alternately) with the compiler's fragment cache warm, and the
///                                            daemon's periodic full sync (warm compiler, everything compared;
///                                            _reencode_ms: the same with every chain encoded again, as before #20)
///   natd-bench restart CONFIG DIR DIR2 [RUNS]  libnftnl, in a scratch namespace only: a new process's apply (fresh
///                                            backend object, full compile) onto tables holding DIR's rules with
///                                            DIR2's (one endpoint differs), against the same apply into empty
///                                            tables (`nft delete table` first); read/decide/send of each
///   natd-bench floor [RUNS]                  bare libiptc floor: iptc_init + refill one chain + iptc_commit,
///                                            IPv4 filter and nat, of the tables already in this namespace
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

func fail(_ s: String) -> Never {
    FileHandle.standardError.write(Data("natd-bench: \(s)\n".utf8))
    exit(2)
}

func usage() -> Never {
    fail(
        "usage: natd-bench compile SERVICES [RUNS] | generate SERVICES DIR [DIR2] | load DIR [RUNS] | sync CONFIG DIR DIR2 [RUNS [BACKEND]] | restart CONFIG DIR DIR2 [RUNS] | floor [RUNS]"
    )
}

/// The node the benchmark's clusters are generated for; `generate` writes the matching configuration.
let nodeName = "node-1"
let nodeIP = "192.168.0.2"
/// The generator's pod IPs are 10.128.0.0/9.
let clusterCIDR = "10.128.0.0/9"

let settings = NodeSettings(
    family: .ipv4, nodeName: nodeName, nodeIPs: [IPAddress(nodeIP)!],
    localDetector: .cidr(CIDR(clusterCIDR)!))

/// The one-endpoint change of run `run`: the first endpoint of one slice moves to a fresh address.
func changeOneEndpoint(_ slice: inout EndpointSlice, run: Int) {
    slice.endpoints[0].addresses = [IPAddress(bytes: [10, 127, UInt8(run & 0xFF), 1])!]
    slice.resourceVersion = "\(run + 2)"
}

func compileBench(_ n: Int, runs: Int) {
    let cluster = SyntheticCluster(services: n)
    var state = cluster.state
    var full: [Double] = []
    var render: [Double] = []
    var incr: [Double] = []
    var limits: [Double] = []
    var rules = 0
    var bytes = 0
    for run in 0...runs {  // run 0 is the warm-up
        let compiler = RuleCompiler(settings: settings)
        let t0 = now()
        var rs: Ruleset? = compiler.compile(state)
        let t1 = now()
        let text = TextRenderer.renderBytes(rs!)
        let t2 = now()
        // SyncPath's whole check of a ruleset compiled anew (the compile above already checked each Service)
        precondition(KernelLimits.violations(in: rs!).isEmpty)
        let checked = now() - t2
        rules = rs!.tables.reduce(0) { $0 + $1.ruleCount }
        // The daemon drops each result once committed, so the compiler patches its copy in place.
        rs = nil
        var slice = cluster.slices[run % cluster.slices.count]
        changeOneEndpoint(&slice, run: run)
        state.upsert(slice)
        let t3 = now()
        _ = compiler.compile(state)
        let t4 = now()
        precondition(
            compiler.lastStats.fragmentsCompiled == 1,
            "incremental compile re-derived \(compiler.lastStats.fragmentsCompiled) Services")
        if run > 0 {
            full.append(t1 - t0)
            render.append(t2 - t1)
            incr.append(t4 - t3)
            limits.append(checked)
        }
        bytes = text.count
    }
    print(
        String(
            format:
                "{\"services\":%d,\"rules\":%d,\"text_bytes\":%d,\"full_compile_ms\":%.2f,\"render_ms\":%.2f,\"incremental_compile_ms\":%.3f,\"limits_check_ms\":%.2f}",
            n, rules, bytes, median(full) * 1000, median(render) * 1000, median(incr) * 1000, median(limits) * 1000))
}

// MARK: generate

/// JSON string literal.
func q(_ s: String) -> String {
    var out = "\""
    for c in s.unicodeScalars {
        switch c {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        default: out.unicodeScalars.append(c)
        }
    }
    return out + "\""
}

/// A Service as `kubectl get svc -o json` prints it (the fields kube-natd reads).
func serviceJSON(_ s: Service) -> String {
    var spec: [String] = ["\"type\":\(q(s.type.rawValue))"]
    if let first = s.clusterIPs.first {
        spec.append("\"clusterIP\":\(q(first.description))")
        spec.append("\"clusterIPs\":[\(s.clusterIPs.map { q($0.description) }.joined(separator: ","))]")
    }
    let ports = s.ports.map { p -> String in
        var f = [
            "\"name\":\(q(p.name))", "\"protocol\":\(q(p.protocol.rawValue))", "\"port\":\(p.port)",
        ]
        switch p.targetPort {
        case .int(let i): f.append("\"targetPort\":\(i)")
        case .string(let n): f.append("\"targetPort\":\(q(n))")
        case nil: break
        }
        if p.nodePort != 0 { f.append("\"nodePort\":\(p.nodePort)") }
        return "{" + f.joined(separator: ",") + "}"
    }
    spec.append("\"ports\":[\(ports.joined(separator: ","))]")
    if !s.loadBalancerSourceRanges.isEmpty {
        spec.append(
            "\"loadBalancerSourceRanges\":[\(s.loadBalancerSourceRanges.map { q($0.description) }.joined(separator: ","))]"
        )
    }
    if s.type == .nodePort || s.type == .loadBalancer {
        spec.append("\"externalTrafficPolicy\":\(q(s.externalTrafficPolicy.rawValue))")
    }
    spec.append("\"internalTrafficPolicy\":\(q(s.internalTrafficPolicy.rawValue))")
    if s.healthCheckNodePort != 0 { spec.append("\"healthCheckNodePort\":\(s.healthCheckNodePort)") }
    if let t = s.sessionAffinityTimeout {
        spec.append(
            "\"sessionAffinity\":\"ClientIP\",\"sessionAffinityConfig\":{\"clientIP\":{\"timeoutSeconds\":\(t)}}"
        )
    } else {
        spec.append("\"sessionAffinity\":\"None\"")
    }
    var status = "{}"
    if !s.loadBalancerIngressIPs.isEmpty {
        status =
            "{\"loadBalancer\":{\"ingress\":[\(s.loadBalancerIngressIPs.map { "{\"ip\":\(q($0.description))}" }.joined(separator: ","))]}}"
    }
    return
        "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\(q(s.name.name)),\"namespace\":\(q(s.name.namespace)),"
        + "\"resourceVersion\":\(q(s.resourceVersion))},\"spec\":{\(spec.joined(separator: ","))},\"status\":\(status)}"
}

/// An EndpointSlice as `kubectl get endpointslices -o json` prints it.
func sliceJSON(_ s: EndpointSlice) -> String {
    let endpoints = s.endpoints.map { e -> String in
        var f = ["\"addresses\":[\(e.addresses.map { q($0.description) }.joined(separator: ","))]"]
        var c: [String] = []
        if let r = e.conditions.ready { c.append("\"ready\":\(r)") }
        if let r = e.conditions.serving { c.append("\"serving\":\(r)") }
        if let r = e.conditions.terminating { c.append("\"terminating\":\(r)") }
        f.append("\"conditions\":{\(c.joined(separator: ","))}")
        if let n = e.nodeName { f.append("\"nodeName\":\(q(n))") }
        return "{" + f.joined(separator: ",") + "}"
    }
    let ports = s.ports.map { p -> String in
        var f = ["\"protocol\":\(q(p.protocol.rawValue))"]
        if let n = p.name { f.append("\"name\":\(q(n))") }
        if let port = p.port { f.append("\"port\":\(port)") }
        return "{" + f.joined(separator: ",") + "}"
    }
    return
        "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\(q(s.name.name)),"
        + "\"namespace\":\(q(s.name.namespace)),\"resourceVersion\":\(q(s.resourceVersion)),"
        + "\"labels\":{\"kubernetes.io/service-name\":\(q(s.serviceName))}},\"addressType\":\"IPv4\","
        + "\"endpoints\":[\(endpoints.joined(separator: ","))],\"ports\":[\(ports.joined(separator: ","))]}"
}

func writeCluster(services: [Service], slices: [EndpointSlice], dir: String) {
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    var out =
        "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"metadata\":{\"resourceVersion\":\"\"},\"items\":[\n"
    var items: [String] = services.map(serviceJSON)
    items += slices.map(sliceJSON)
    out += items.joined(separator: ",\n")
    out += "\n]}\n"
    do {
        try Data(out.utf8).write(to: URL(fileURLWithPath: dir + "/cluster.json"))
    } catch { fail("\(dir)/cluster.json: \(error)") }
}

let configYAML = """
    # Written by natd-bench generate: the node the synthetic cluster is generated for.
    apiVersion: kubeproxy.config.k8s.io/v1alpha1
    kind: KubeProxyConfiguration
    mode: iptables
    hostnameOverride: \(nodeName)
    bindAddress: \(nodeIP)
    clusterCIDR: \(clusterCIDR)
    detectLocalMode: ClusterCIDR
    iptables:
      masqueradeBit: 14
      localhostNodePorts: true

    """

/// Rendered rules of a manifest directory, to prove the files say what the generator holds.
func renderedFromManifests(_ dir: String) -> [UInt8] {
    let load: ManifestLoad
    do { load = try ManifestSource(path: dir).load() } catch { fail("\(dir): \(error)") }
    if !load.issues.isEmpty {
        fail("\(dir): \(load.issues.count) issues, first: \(load.issues[0].description)")
    }
    return TextRenderer.renderBytes(RuleCompiler(settings: settings).compile(load.clusterState))
}

func generate(_ n: Int, dir: String, changedDir: String?) {
    let cluster = SyntheticCluster(services: n, nodeName: nodeName)
    writeCluster(services: cluster.services, slices: cluster.slices, dir: dir)
    // Beside the manifest directory, not in it: the manifest reader would take it for a manifest.
    // (A URL, so a relative DIR without a slash means the current directory, not "/".)
    let configPath = URL(fileURLWithPath: dir).deletingLastPathComponent().appendingPathComponent("kube-proxy-config.yaml").path
    do { try configYAML.write(toFile: configPath, atomically: true, encoding: .utf8) } catch {
        fail("\(configPath): \(error)")
    }
    let expected = TextRenderer.renderBytes(RuleCompiler(settings: settings).compile(cluster.state))
    guard renderedFromManifests(dir) == expected else {
        fail("\(dir): manifests do not compile to the generator's rules")
    }
    var changedSlice = ""
    if let changedDir {
        var slices = cluster.slices
        changeOneEndpoint(&slices[0], run: 0)
        changedSlice = slices[0].name.description
        writeCluster(services: cluster.services, slices: slices, dir: changedDir)
        // `natd-bench sync` checks that DIR2 differs from DIR in exactly one Service's fragment.
    }
    print(
        "{\"services\":\(n),\"slices\":\(cluster.slices.count),\"dir\":\(q(dir)),\"config\":\(q(configPath)),\"changed_slice\":\(q(changedSlice)),\"verified\":true}"
    )
}

// MARK: load

func loadBench(_ dir: String, runs: Int) {
    var times: [Double] = []
    var services = 0
    for run in 0...runs {
        let t0 = now()
        let load: ManifestLoad
        do { load = try ManifestSource(path: dir).load() } catch { fail("\(dir): \(error)") }
        let t1 = now()
        if run > 0 { times.append(t1 - t0) }
        services = load.services.count
    }
    print(String(format: "{\"services\":%d,\"load_ms\":%.2f}", services, median(times) * 1000))
}

// MARK: sync

/// Resident set size now (VmRSS) and its peak (VmHWM), in kB.
func residentKB() -> (rss: Int, hwm: Int) {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else {
        return (0, 0)
    }
    func field(_ name: String) -> Int {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else {
            return 0
        }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0")
            ?? 0
    }
    return (field("VmRSS:"), field("VmHWM:"))
}

/// A steady-state apply must find every table already in its wanted state (else the series measures a rewrite).
func expectUnchanged(_ report: ApplyReport) throws {
    for t in report.tables where t.committed {
        fail("steady-state apply of \(t.table.rawValue) was not a no-op: \(report)")
    }
    if report.messages > 0 { fail("steady-state apply sent \(report.messages) netlink messages: \(report)") }
}

func makeBackend(_ name: String) -> KernelBackend {
    switch name {
    case "libiptc": return LibiptcBackend()
    // every table encoded whole on every apply (the per-chain encodings off): the libiptc "before" of #20
    case "libiptc-whole":
        let b = LibiptcBackend()
        b.keepsEncodings = false
        return b
    case "libnftnl": return NftablesBackend()
    default: fail("unknown backend \(name): libiptc, libiptc-whole or libnftnl")
    }
}

func syncBench(config: String, dir: String, changedDir: String, runs: Int, backendName: String) {
    let setup: NodeSetup
    do { setup = try NodeSetup.load(configPath: config, overrides: ConfigOverrides()) } catch {
        fail("\(config): \(error)")
    }
    // As `kube-natd --once --random-fully no`, so the kernel ends up with the same rules.
    let settings = setup.settings(
        for: .ipv4, features: KernelFeatures(randomFully: false, nfacctCounters: false))
    let base: ClusterState
    let changed: ClusterState
    var loads: [Double] = []
    do {
        let t0 = now()
        base = try ManifestSource(path: dir).load().clusterState
        let t1 = now()
        changed = try ManifestSource(path: changedDir).load().clusterState
        loads = [t1 - t0, now() - t1]
    } catch { fail("\(error)") }
    let backend = makeBackend(backendName)
    var steady: [Double] = []
    var steadyCompile: [Double] = []
    var oneEndpoint: [Double] = []
    var oneCompile: [Double] = []
    var oneEncode: [Double] = []
    var oneDecide: [Double] = []
    var oneCommit: [Double] = []
    // Steady state: a fresh compiler each time (a full compile), the same rules already in the kernel. As the
    // daemon's first sync after a restart: the tables are read on the second core while the compile runs.
    var serial: [Double] = []
    for run in 0...runs {
        let t0 = now()
        backend.prefetch(families: [.ipv4])
        let rs = RuleCompiler(settings: settings).compile(base)
        let t1 = now()
        do { try expectUnchanged(backend.apply([rs])) } catch { fail("apply: \(error)") }
        let t2 = now()
        if run > 0 {
            steady.append(t2 - t0)
            steadyCompile.append(t1 - t0)
        }
    }
    // The same without the read ahead: compile, then the apply reads and compares (the daemon's periodic sync
    // when nothing changed, but with a full compile).
    for run in 0...runs {
        let t0 = now()
        let rs = RuleCompiler(settings: settings).compile(base)
        do { try expectUnchanged(backend.apply([rs])) } catch { fail("apply: \(error)") }
        if run > 0 { serial.append(now() - t0) }
    }
    // One endpoint changes between syncs: the daemon's compiler keeps its fragment cache.
    // The daemon keeps one ClusterState and upserts what the watch delivers: here, the one slice DIR2 changes.
    let differing = changed.slices.values.filter { base.slices[$0.name] != $0 }
    guard differing.count == 1, let changedSlice = differing.first, let baseSlice = base.slices[changedSlice.name]
    else { fail("\(changedDir): expected exactly one EndpointSlice to differ from \(dir), found \(differing.count)") }
    var state = base
    let compiler = RuleCompiler(settings: settings)
    // As the daemon's SyncPath: the compiler's change goes with the ruleset, so a backend can redo only that.
    do { _ = try backend.apply([compiler.compile(state)], changes: [compiler.lastChange]) } catch { fail("apply: \(error)") }
    for run in 0...runs {
        state.upsert(run % 2 == 0 ? changedSlice : baseSlice)
        let t0 = now()
        let rs = compiler.compile(state)
        let t1 = now()
        let report: ApplyReport
        do { report = try backend.apply([rs], changes: [compiler.lastChange]) } catch { fail("apply: \(error)") }
        let t2 = now()
        if compiler.lastStats.fragmentsCompiled != 1 {
            fail("one-endpoint sync recompiled \(compiler.lastStats.fragmentsCompiled) Services")
        }
        if run > 0 {
            oneEndpoint.append(t2 - t0)
            oneCompile.append(t1 - t0)
            // Where an apply's time goes (the backend's own account; for libnftnl: read = 0 while its model is
            // current, decide = the plan over every chain, commit = the batch's round trip through the kernel).
            // libiptc: per table, summed; decide = iptc_init + building the new table.
            oneEncode.append(report.tables.map(\.encodeSeconds).reduce(0, +))
            oneDecide.append(report.tables.map(\.buildSeconds).reduce(0, +))
            oneCommit.append(report.tables.map(\.commitSeconds).reduce(0, +))
        }
    }
    // The daemon's periodic full sync: the same compiler (its cache warm), its change marked as a full sync
    // (`asFullSync`, as SyncPath hands it): the encoder redoes only what the compiler touched, the shim compares
    // everything with the kernel; nothing differs, nothing is written. Beside it, in the same runs, the way full
    // syncs went before (`asEverything`: the change's base dropped, every chain encoded and hashed again).
    state.upsert(baseSlice)
    var periodic: [Double] = []
    var periodicReencode: [Double] = []
    do { _ = try backend.apply([compiler.compile(state)], changes: [compiler.lastChange]) } catch { fail("apply: \(error)") }
    for run in 0...runs {
        for reencode in [false, true] {
            let t0 = now()
            let rs = compiler.compile(state)
            let change = reencode ? compiler.lastChange.asEverything : compiler.lastChange.asFullSync
            do { try expectUnchanged(backend.apply([rs], changes: [change])) } catch { fail("apply: \(error)") }
            if run > 0 { reencode ? periodicReencode.append(now() - t0) : periodic.append(now() - t0) }
        }
    }
    // Leave the base rules in place, as the other measurements expect.
    do { _ = try backend.apply([compiler.compile(state)]) } catch { fail("apply: \(error)") }
    let mem = residentKB()
    print(
        String(
            format:
                "{\"load_ms\":%.1f,\"sync_steady_ms\":%.2f,\"sync_steady_serial_ms\":%.2f,\"sync_steady_compile_ms\":%.2f,\"sync_one_endpoint_ms\":%.2f,\"sync_one_endpoint_compile_ms\":%.3f,\"sync_one_endpoint_encode_ms\":%.2f,\"sync_one_endpoint_decide_ms\":%.2f,\"sync_one_endpoint_commit_ms\":%.2f,\"sync_periodic_full_ms\":%.2f,\"sync_periodic_full_reencode_ms\":%.2f,\"rss_after_syncs_kb\":%d,\"peak_rss_kb\":%d}",
            loads.min()! * 1000, median(steady) * 1000, median(serial) * 1000, median(steadyCompile) * 1000, median(oneEndpoint) * 1000,
            median(oneCompile) * 1000, median(oneEncode) * 1000, median(oneDecide) * 1000, median(oneCommit) * 1000,
            median(periodic) * 1000, median(periodicReencode) * 1000, mem.rss, mem.hwm))
}

// MARK: restart

/// Deletes the nat and filter tables of this namespace's IPv4 nf_tables (the bench runs in a scratch namespace).
func deleteTables() {
    for table in ["nat", "filter"] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/nft")
        p.arguments = ["delete", "table", "ip", table]
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { fail("nft: \(error)") }
        p.waitUntilExit()
    }
}

/// A new process's apply, as `kube-natd --once` or a restarted daemon does it (a fresh backend object: no model,
/// no index; a full compile with the read ahead on another thread), onto tables holding DIR's rules with DIR2's,
/// against the same into empty tables. The parts are the shim's own account of the last attempt.
func restartBench(config: String, dir: String, changedDir: String, runs: Int) {
    let setup: NodeSetup
    do { setup = try NodeSetup.load(configPath: config, overrides: ConfigOverrides()) } catch { fail("\(config): \(error)") }
    let settings = setup.settings(for: .ipv4, features: KernelFeatures(randomFully: false, nfacctCounters: false))
    let base: ClusterState
    let changed: ClusterState
    do {
        base = try ManifestSource(path: dir).load().clusterState
        changed = try ManifestSource(path: changedDir).load().clusterState
    } catch { fail("\(error)") }
    struct Run {
        var total = 0.0, compile = 0.0, apply = 0.0, read = 0.0, decide = 0.0, send = 0.0
        var messages = 0
    }
    /// One new-process apply of `state`: prefetch, full compile, apply (everything changed, as at a start).
    func newProcess(_ state: ClusterState) -> Run {
        let backend = NftablesBackend()
        var r = Run()
        let t0 = now()
        backend.prefetch(families: [.ipv4])
        let compiler = RuleCompiler(settings: settings)
        let rs = compiler.compile(state)
        let t1 = now()
        let report: ApplyReport
        do { report = try backend.apply([rs], changes: [compiler.lastChange.asEverything]) } catch { fail("apply: \(error)") }
        let t2 = now()
        r.total = t2 - t0
        r.compile = t1 - t0
        r.apply = t2 - t1
        r.read = report.tables.first?.initSeconds ?? 0
        r.decide = report.tables.first?.buildSeconds ?? 0
        r.send = report.tables.first?.commitSeconds ?? 0
        r.messages = report.messages
        return r
    }
    var empty: [Run] = []
    var restart: [Run] = []
    for run in 0...runs {
        deleteTables()
        let e = newProcess(base)
        let r = newProcess(changed)
        if r.messages == 0 || r.messages > 20 { fail("restart with one endpoint changed sent \(r.messages) messages") }
        _ = newProcess(base)  // back to DIR's rules for the next run
        if run > 0 {
            empty.append(e)
            restart.append(r)
        }
    }
    func m(_ xs: [Run], _ f: (Run) -> Double) -> Double { median(xs.map(f)) * 1000 }
    print(
        String(
            format:
                "{\"empty_total_ms\":%.1f,\"empty_apply_ms\":%.1f,\"empty_read_ms\":%.1f,\"empty_decide_ms\":%.1f,\"empty_send_ms\":%.1f,\"restart_total_ms\":%.1f,\"restart_compile_ms\":%.1f,\"restart_apply_ms\":%.1f,\"restart_read_ms\":%.1f,\"restart_decide_ms\":%.1f,\"restart_send_ms\":%.1f,\"restart_messages\":%d,\"restart_over_empty\":%.2f}",
            m(empty, \.total), m(empty, \.apply), m(empty, \.read), m(empty, \.decide), m(empty, \.send),
            m(restart, \.total), m(restart, \.compile), m(restart, \.apply), m(restart, \.read), m(restart, \.decide),
            m(restart, \.send), restart.last?.messages ?? 0, m(restart, \.total) / m(empty, \.total)))
}

// MARK: floor

/// The chains refilled: small, present in every ruleset kube-natd writes, and touched by no packet here.
let floorChains = [("filter", "KUBE-FORWARD"), ("nat", "KUBE-POSTROUTING")]

func floorBench(runs: Int) {
    var total: [Double] = []
    var perTable: [String: [Double]] = [:]
    var message = [CChar](repeating: 0, count: 512)
    for run in 0...runs {
        var sum = 0.0
        for (table, chain) in floorChains {
            var initSeconds = 0.0
            var commitSeconds = 0.0
            var refilled: UInt32 = 0
            let t0 = now()
            let rc = knat_floor_round(
                table, chain, &initSeconds, &commitSeconds, &refilled, &message, UInt(message.count))
            let t1 = now()
            if rc != 0 { fail(String(cString: message)) }
            sum += t1 - t0
            if run > 0 { perTable[table, default: []].append(t1 - t0) }
        }
        if run > 0 { total.append(sum) }
    }
    print(
        String(
            format: "{\"floor_ms\":%.2f,\"floor_filter_ms\":%.2f,\"floor_nat_ms\":%.2f}",
            median(total) * 1000, median(perTable["filter"]!) * 1000, median(perTable["nat"]!) * 1000))
}

let args = CommandLine.arguments
guard args.count >= 2 else { usage() }
switch args[1] {
case "compile":
    guard args.count >= 3, let n = Int(args[2]) else { usage() }
    compileBench(n, runs: args.count > 3 ? Int(args[3]) ?? 5 : 5)
case "generate":
    guard args.count >= 4, let n = Int(args[2]) else { usage() }
    generate(n, dir: args[3], changedDir: args.count > 4 ? args[4] : nil)
case "load":
    guard args.count >= 3 else { usage() }
    loadBench(args[2], runs: args.count > 3 ? Int(args[3]) ?? 5 : 5)
case "sync":
    guard args.count >= 5 else { usage() }
    syncBench(
        config: args[2], dir: args[3], changedDir: args[4], runs: args.count > 5 ? Int(args[5]) ?? 5 : 5,
        backendName: args.count > 6 ? args[6] : "libiptc")
case "restart":
    guard args.count >= 5 else { usage() }
    restartBench(config: args[2], dir: args[3], changedDir: args[4], runs: args.count > 5 ? Int(args[5]) ?? 5 : 5)
case "floor":
    floorBench(runs: args.count > 2 ? Int(args[2]) ?? 5 : 5)
default:
    usage()
}
