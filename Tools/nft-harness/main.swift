// nft-harness: drives the libnftnl backend for kernel tests (Tests/kernel/nftables.sh), inside throwaway
// network namespaces only; never run it in the host netns. Rules are compiled exactly as `kube-natd --once` does.
//
//   nft-harness apply    --source PATH --config FILE [--ip-family ipv4|ipv6|dual] [--form 1.8.7|1.8.9|1.8.10]
//                        [--random-fully yes|no] [--nfacct yes|no] [--rule-layout current|v1.23] [--read]
//                        [--then PATH|same]... [--inject-bad-rule]
//        One backend object applies the source, then each --then source in turn (same: the previous one
//        again), one report per apply. --read: dump the kernel every time (the stateless path).
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
    var randomFully = false
    var nfacct = false
    var layout = RuleLayout.current
    var read = false
    var then: [String] = []
    var injectBadRule = false
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
                guard let f = FamilySelection(rawValue: v) else { throw Usage("\(arg): ipv4, ipv6 or dual") }
                self.families = f.families
            case "--form":
                let v = try value(arg)
                guard let f = NftablesForm(name: v) else { throw Usage("--form: a release such as 1.8.7, 1.8.9, 1.8.10") }
                self.form = f
            case "--random-fully": self.randomFully = try value(arg) == "yes"
            case "--nfacct": self.nfacct = try value(arg) == "yes"
            case "--rule-layout":
                let v = try value(arg)
                guard let l = RuleLayout(rawValue: v) else { throw Usage("--rule-layout: current or v1.23") }
                self.layout = l
            case "--read": self.read = true
            case "--then": self.then.append(try value(arg))
            case "--inject-bad-rule": self.injectBadRule = true
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
    let features = KernelFeatures(randomFully: o.randomFully, nfacctCounters: o.nfacct)
    return o.families.map { family in
        RuleCompiler(settings: setup.settings(for: family, features: features)).compile(state)
    }
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
    switch o.command {
    case "apply":
        guard let source = o.source else { throw Usage("apply needs --source") }
        var sources = [source]
        for s in o.then { sources.append(s == "same" ? sources.last! : s) }
        for (i, s) in sources.enumerated() {
            var rulesets = try compile(o, source: s)
            if o.injectBadRule && i == sources.count - 1 { injectBadRule(&rulesets) }
            let started = Date()
            let report = try backend.apply(rulesets)
            printReport("apply \(i + 1) (\(backend.form.rawValue) form) \(String(format: "%.4fs", Date().timeIntervalSince(started)))", report)
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
        var drifted = 0
        for ruleset in try compile(o, source: source) {
            let want = try backend.expectedOwned(ruleset)
            let have = try backend.readOwned(family: ruleset.family)
            for (table, chains) in want.tables {
                for (name, d) in chains.sorted(by: { $0.key < $1.key }) where have.tables[table]?[name] != d {
                    let h = have.tables[table]?[name]
                    print("drift: \(ruleset.family.rawValue) \(table.rawValue) \(name): want \(d.ruleCount) rules, have \(h.map { "\($0.ruleCount)" } ?? "no chain")")
                    drifted += 1
                }
            }
        }
        if drifted > 0 { return 1 }
        print("no drift")
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
    return 0
}

do {
    exit(try run())
} catch {
    FileHandle.standardError.write(Data("nft-harness: \(error)\n".utf8))
    exit(1)
}
