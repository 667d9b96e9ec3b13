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
//   nft-harness read     [--ip-family ...] [--read]          owned chains with digests, "family table chain rules digest"
//   nft-harness drift    --source PATH --config FILE [--ip-family ...] [--form F]
//                        exit 1 when a declared chain's digest read back differs from the expected one
//   nft-harness cleanup  [--ip-family ...] [--form F]
//   nft-harness canaries [--ip-family ...]
//   nft-harness dump     --family ipv4|ipv6 --table nat|filter|mangle   every rule in canonical text
//   nft-harness genid
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
    var table = "nat"

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
            case "--table": self.table = try value(arg)
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
    var status: Int32 = 0
    switch o.command {
    case "apply":
        guard let source = o.source else { throw Usage("apply needs --source") }
        var last = source
        var rulesets: [Ruleset] = []
        var step = 0
        for s in [source] + o.then {
            if s == "drift" {
                if try drift(backend, rulesets) > 0 { status = 1 }
                continue
            }
            if s.hasPrefix("wait:") {
                waitFor(String(s.dropFirst(5)))
                continue
            }
            if s != "same" { last = s }
            step += 1
            rulesets = try compile(o, source: last)
            if o.kubeletEnsured { addKubeletEnsured(&rulesets) }
            if o.injectBadRule && s == ([source] + o.then).last { injectBadRule(&rulesets) }
            let started = Date()
            let report = try backend.apply(rulesets)
            printReport(
                "apply \(step) (\(backend.form.rawValue) form) \(String(format: "%.4fs", Date().timeIntervalSince(started))) readKernel=\(backend.lastCallReadKernel) stampCurrent=\(backend.lastCallStampCurrent)",
                report)
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
