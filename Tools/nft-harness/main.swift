// nft-harness: drives the libnftnl backend for kernel tests (Tests/kernel/nftables.sh), inside throwaway
// network namespaces only; never run it in the host netns. Rules are compiled exactly as `kube-natd --once` does.
//
//   nft-harness apply    --source PATH --config FILE [--ip-family ipv4|ipv6|dual] [--form 1.8.7|1.8.9|1.8.10]
//                        [--random-fully auto|yes|no] [--nfacct auto|yes|no] [--rule-layout current|v1.23] [--read]
//                        [--then PATH|same]... [--inject-bad-rule]
//        One backend object applies the source, then each --then step in turn: a source (same: the previous
//        one again), `drift` (readOwned vs expectedOwned of the last source), `wait:PATH` (until PATH exists,
//        at most 60 s: a test changes the kernel meanwhile). --read: dump the kernel every time (stateless).
//        --kubelet-ensured: also ensure kubelet's v1.23 rules (KUBE-MARK-DROP, KUBE-FIREWALL and its jumps).
//        --evolve: as the daemon, one compiler per family and one cluster state that each step's source is
//        upserted into (objects it lacks removed), each apply told the compiler's change; each report adds
//        "chains encoded=N reused=M" and the shim's "chains indexed=N planned=M incremental=BOOL".
//        A step `full:PATH` (or `full:same`) applies as the daemon's full sync does: the compiler's change marked
//        `asFullSync` (encoded from the change, compared whole with the kernel).
//   nft-harness read     [--ip-family ...] [--read]          owned chains with digests, "family table chain rules digest"
//   nft-harness drift    --source PATH --config FILE [--ip-family ...] [--form F]
//                        exit 1 when a declared chain's digest read back differs from the expected one
//   nft-harness cleanup  [--ip-family ...] [--form F]
//   nft-harness canaries [--ip-family ...]
//   nft-harness dump     --family ipv4|ipv6 --table nat|filter|mangle   every rule in canonical text
//   nft-harness genid
//   Any command: --fault POINT[:FIRST[:COUNT]] (repeatable) makes calls FIRST.. (default 1) of POINT fail COUNT
//   times (default 1): batch-erestart (the batch comes back ERESTART unsent), batch-enobufs (sent, replies lost),
//   dump-intr (a dump ends interrupted). Prints "faults: POINT=hits ..." at the end. --keep-going: a failed apply
//   step prints "apply N failed: ERROR" and the next step runs (exit 1 at the end).
import CNftables
import Daemon
import Foundation
import KubeModel
import Netfilter
import ProxyConfig
import RuleCompiler
import Ruleset

struct Options {
    var command = ""
    var source: String?
    var config: String?
    var families: [IPFamily] = [.ipv4]
    var form: NftablesForm?
    var randomFully = FeatureChoice.auto
    var nfacct = FeatureChoice.auto
    var layout = RuleLayout.current
    var read = false
    var then: [String] = []
    var injectBadRule = false
    var kubeletEnsured = false
    var evolve = false
    var table = "nat"
    var faults: [(point: Int32, name: String, first: UInt32, count: UInt32)] = []
    var keepGoing = false

    init(_ args: [String]) throws {
        var it = args.makeIterator()
        guard let command = it.next() else { throw Usage("missing command") }
        self.command = command
        func value(_ flag: String) throws -> String {
            guard let v = it.next() else { throw Usage("\(flag) needs a value") }
            return v
        }
        while let arg = it.next() {
            switch arg {
            case "--source": self.source = try value(arg)
            case "--config": self.config = try value(arg)
            case "--ip-family", "--family":
                let v = try value(arg)
                guard let f = FamilySelection(rawValue: v), let families = f.explicitFamilies else {
                    throw Usage("\(arg): ipv4, ipv6 or dual")
                }
                self.families = families
            case "--form":
                let v = try value(arg)
                guard let f = NftablesForm(name: v) else { throw Usage("--form: a release such as 1.8.7, 1.8.9, 1.8.10") }
                self.form = f
            case "--random-fully", "--nfacct":
                let v = try value(arg)
                guard let c = FeatureChoice(rawValue: v) else { throw Usage("\(arg): auto, yes or no") }
                if arg == "--nfacct" { self.nfacct = c } else { self.randomFully = c }
            case "--rule-layout":
                let v = try value(arg)
                guard let l = RuleLayout(rawValue: v) else { throw Usage("--rule-layout: current or v1.23") }
                self.layout = l
            case "--read": self.read = true
            case "--then": self.then.append(try value(arg))
            case "--inject-bad-rule": self.injectBadRule = true
            case "--kubelet-ensured": self.kubeletEnsured = true
            case "--evolve": self.evolve = true
            case "--table": self.table = try value(arg)
            case "--keep-going": self.keepGoing = true
            case "--fault":
                let parts = try value(arg).split(separator: ":").map(String.init)
                let points: [String: Int32] = [
                    "batch-erestart": Int32(KNFT_FAULT_BATCH_ERESTART), "batch-enobufs": Int32(KNFT_FAULT_BATCH_ENOBUFS),
                    "dump-intr": Int32(KNFT_FAULT_DUMP_INTR),
                ]
                guard let name = parts.first, let point = points[name], parts.count <= 3,
                    let first = parts.count > 1 ? UInt32(parts[1]) : 1, let count = parts.count > 2 ? UInt32(parts[2]) : 1
                else { throw Usage("--fault: batch-erestart|batch-enobufs|dump-intr[:FIRST[:COUNT]]") }
                self.faults.append((point, name, first, count))
            default: throw Usage("unknown argument \(arg)")
            }
        }
    }
}

struct Usage: Error, CustomStringConvertible {
    var description: String
    init(_ s: String) { self.description = s }
}

/// The rulesets `kube-natd --once` would apply for this source and config.
func compile(_ o: Options, source: String) throws -> [Ruleset] {
    var setup = try NodeSetup.load(configPath: o.config, overrides: ConfigOverrides())
    setup.ruleLayout = o.layout
    let state = try ManifestInput.load(source).clusterState
    // As kube-natd --once: auto creates the nfacct objects and writes the matches of those that exist.
    let features = KernelFeatures.decide(randomFully: o.randomFully, nfacctCounters: o.nfacct, create: true)
    return o.families.map { family in
        RuleCompiler(settings: setup.settings(for: family, features: features)).compile(state)
    }
}

/// The daemon's way (`--evolve`): one state that sources are merged into, one compiler per family that
/// patches its last result, and the change each compile reports.
final class Evolving {
    var state = ClusterState()
    var compilers: [RuleCompiler] = []

    init(_ o: Options) throws {
        var setup = try NodeSetup.load(configPath: o.config, overrides: ConfigOverrides())
        setup.ruleLayout = o.layout
        let features = KernelFeatures.decide(randomFully: o.randomFully, nfacctCounters: o.nfacct)
        self.compilers = o.families.map { RuleCompiler(settings: setup.settings(for: $0, features: features)) }
    }

    /// Makes the state hold exactly the source's objects, changing only those that differ.
    func merge(_ source: String) throws {
        let next = try ManifestInput.load(source).clusterState
        for name in self.state.slices.keys where next.slices[name] == nil { self.state.removeSlice(name) }
        for name in self.state.services.keys where next.services[name] == nil { self.state.removeService(name) }
        for (name, s) in next.services where self.state.services[name] != s { self.state.upsert(s) }
        for (name, s) in next.slices where self.state.slices[name] != s { self.state.upsert(s) }
    }

    func compile() -> ([Ruleset], [RulesetChange]) {
        (self.compilers.map { $0.compile(self.state) }, self.compilers.map(\.lastChange))
    }
}

/// kubelet's rules the v1.23 layout relies on, as `EnsuredRule`s (KUBE-FIREWALL's only where the ruleset does not
/// declare that chain itself).
func addKubeletEnsured(_ rulesets: inout [Ruleset]) {
    for i in rulesets.indices {
        for t in rulesets[i].tables.indices {
            switch rulesets[i].tables[t].table {
            case .nat:
                rulesets[i].tables[t].ensured.append(
                    EnsuredRule(chain: Ownership.kubeletMarkDrop, rule: Rule([], .markOr(0x8000))))
            case .filter where rulesets[i].tables[t].chain(named: Ownership.kubeletFirewall) == nil:
                rulesets[i].tables[t].ensured += [
                    EnsuredRule(
                        chain: Ownership.kubeletFirewall,
                        rule: Rule(
                            [
                                .comment("kubernetes firewall for dropping marked packets"),
                                .mark(value: 0x8000, mask: 0x8000, negated: false),
                            ], .drop)),
                    EnsuredRule(chain: "INPUT", rule: Rule([], .jump(Ownership.kubeletFirewall))),
                    EnsuredRule(chain: "OUTPUT", rule: Rule([], .jump(Ownership.kubeletFirewall))),
                ]
            default: break
            }
        }
    }
}

/// Waits (at most 60 s) until the file exists.
func waitFor(_ path: String) {
    for _ in 0..<600 where !FileManager.default.fileExists(atPath: path) { usleep(100_000) }
}

/// readOwned against expectedOwned for the declared chains; prints each difference, returns their count.
func drift(_ backend: NftablesBackend, _ rulesets: [Ruleset]) throws -> Int {
    var drifted = 0
    for ruleset in rulesets {
        let want = try backend.expectedOwned(ruleset)
        let have = try backend.readOwned(family: ruleset.family)
        for (table, chains) in want.tables {
            for (name, d) in chains.sorted(by: { $0.key < $1.key }) where have.tables[table]?[name] != d {
                let h = have.tables[table]?[name]
                print(
                    "drift: \(ruleset.family.rawValue) \(table.rawValue) \(name): want \(d.ruleCount) rules, have "
                        + (h.map { "\($0.ruleCount) (digest \($0.digest == d.digest ? "same" : "differs"))" } ?? "no chain"))
                drifted += 1
            }
        }
    }
    print(drifted == 0 ? "no drift (readKernel=\(backend.lastCallReadKernel))" : "\(drifted) chain(s) drifted (readKernel=\(backend.lastCallReadKernel))")
    return drifted
}

/// A rule the kernel refuses (a jump to a chain that does not exist), appended to nat KUBE-SERVICES.
func injectBadRule(_ rulesets: inout [Ruleset]) {
    for i in rulesets.indices {
        guard let t = rulesets[i].tables.firstIndex(where: { $0.table == .nat }),
            let c = rulesets[i].tables[t].chains.firstIndex(where: { $0.name == "KUBE-SERVICES" })
        else { continue }
        rulesets[i].tables[t].chains[c].rules.append(Rule([.comment("bad")], .jump("KUBE-SVC-MISSINGMISSINGMI")))
    }
}

func printReport(_ label: String, _ r: ApplyReport) {
    let t = r.tables.first
    print(
        "\(label): messages=\(r.messages) batches=\(r.batches) attempts=\(t?.attempts ?? 0) "
            + String(format: "read=%.4fs decide=%.4fs send=%.4fs encode=%.4fs", t?.initSeconds ?? 0,
                     t?.buildSeconds ?? 0, t?.commitSeconds ?? 0, t?.encodeSeconds ?? 0))
    for t in r.tables {
        print(
            "  \(t.family.rawValue) \(t.table.rawValue): created=\(t.chainsCreated) rewritten=\(t.chainsFlushed) "
                + "unchanged=\(t.chainsUnchanged) deleted=\(t.chainsDeleted) rules=\(t.rulesAppended) "
                + "jumpsInserted=\(t.jumpsInserted) rulesDeleted=\(t.rulesDeleted) committed=\(t.committed)"
                + (t.warnings.isEmpty ? "" : " warnings=\(t.warnings)"))
    }
}

func run() throws -> Int32 {
    let o = try Options(Array(CommandLine.arguments.dropFirst()))
    let backend = NftablesBackend(form: o.form)
    backend.alwaysRead = o.read
    for f in o.faults { knft_test_fault(f.point, f.first, f.count) }
    defer {
        if !o.faults.isEmpty {
            print("faults: " + o.faults.map { "\($0.name)=\(knft_test_fault_hits($0.point))" }.joined(separator: " "))
        }
    }
    var status: Int32 = 0
    switch o.command {
    case "apply":
        guard let source = o.source else { throw Usage("apply needs --source") }
        var last = source
        var rulesets: [Ruleset] = []
        var step = 0
        let evolving = o.evolve ? try Evolving(o) : nil
        for raw in [source] + o.then {
            let full = raw.hasPrefix("full:")
            let s = full ? String(raw.dropFirst(5)) : raw
            if s == "drift" {
                if try drift(backend, rulesets) > 0 { status = 1 }
                continue
            }
            if s.hasPrefix("wait:") {
                fflush(stdout)  // the test waiting for the steps so far reads them from a file
                waitFor(String(s.dropFirst(5)))
                continue
            }
            if s != "same" { last = s }
            step += 1
            var changes: [RulesetChange] = []
            if let evolving {
                try evolving.merge(last)
                (rulesets, changes) = evolving.compile()
                if full { changes = changes.map(\.asFullSync) }
            } else {
                rulesets = try compile(o, source: last)
            }
            if o.kubeletEnsured { addKubeletEnsured(&rulesets) }
            if o.injectBadRule && raw == ([source] + o.then).last { injectBadRule(&rulesets) }
            let started = Date()
            let report: ApplyReport
            do { report = try backend.apply(rulesets, changes: changes) } catch where o.keepGoing {
                print("apply \(step) failed: \(error)")
                status = 1
                continue
            }
            printReport(
                "apply \(step) (\(backend.form.rawValue) form) \(String(format: "%.4fs", Date().timeIntervalSince(started))) readKernel=\(backend.lastCallReadKernel) stampCurrent=\(backend.lastCallStampCurrent)",
                report)
            if evolving != nil {
                print("  chains encoded=\(backend.lastChainsEncoded) reused=\(backend.lastChainsReused)")
                print("  chains indexed=\(backend.lastChainsIndexed) planned=\(backend.lastChainsPlanned) incremental=\(backend.lastPlanIncremental)")
            }
        }
    case "read":
        for family in o.families {
            let state = try backend.readOwned(family: family)
            for (table, chains) in state.tables.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                for (name, d) in chains.sorted(by: { $0.key < $1.key }) {
                    print("\(family.rawValue) \(table.rawValue) \(name) \(d.ruleCount) \(String(d.digest, radix: 16))")
                }
            }
        }
    case "drift":
        guard let source = o.source else { throw Usage("drift needs --source") }
        var rulesets = try compile(o, source: source)
        if o.kubeletEnsured { addKubeletEnsured(&rulesets) }
        if try drift(backend, rulesets) > 0 { return 1 }
    case "cleanup":
        printReport("cleanup", try backend.cleanup(families: o.families))
    case "canaries":
        for family in o.families { try backend.ensureCanaries(family: family) }
    case "dump":
        guard let family = o.families.first, o.families.count == 1 else { throw Usage("dump needs one --family") }
        print(try backend.dump(family: family, table: o.table), terminator: "")
    case "genid":
        print(try backend.generation())
    default:
        throw Usage("unknown command \(o.command)")
    }
    return status
}

do {
    exit(try run())
} catch {
    FileHandle.standardError.write(Data("nft-harness: \(error)\n".utf8))
    exit(1)
}
