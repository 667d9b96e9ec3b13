// netfilter-harness: applies hand-built Rulesets (every Match and Target case) with a chosen backend.
// Used by Tests/kernel/netfilter-backend.sh inside throwaway network namespaces; never run it in the host netns.
//
//   netfilter-harness apply   --family ipv4|ipv6 --backend libiptc|restore-legacy|restore-nft|dry-run [--variant 1|2|3] [--nfacct]
//                             [--ensured] [--lock-timeout-ms N] [--scale SERVICES] [--no-check] [--prefetch-gate PATH]
//   netfilter-harness cleanup --family ipv4|ipv6
//   netfilter-harness canary  --family ipv4|ipv6
//   netfilter-harness list    --family ipv4|ipv6 --table nat|filter|mangle
//   netfilter-harness drift   --family ipv4|ipv6 [--variant N]   (exit 1 if owned chains differ from the ruleset; any error exits 4)
//   netfilter-harness detect
import Foundation
import KubeModel
import Netfilter
import Ruleset

func ip(_ s: String) -> IPAddress { IPAddress(s)! }
func cidr(_ s: String) -> CIDR { CIDR(s)! }

/// Addresses of one family for the sample rules.
struct Addresses {
    var clusterIP: IPAddress
    var lbIP: IPAddress
    var podCIDR: CIDR
    var pod1: IPAddress
    var pod2: IPAddress
    var pod3: IPAddress

    init(_ family: IPFamily) {
        if family == .ipv4 {
            self.clusterIP = ip("172.30.0.41")
            self.lbIP = ip("1.2.3.4")
            self.podCIDR = cidr("10.244.0.0/16")
            self.pod1 = ip("10.244.1.2")
            self.pod2 = ip("10.244.2.3")
            self.pod3 = ip("10.244.3.4")
        } else {
            self.clusterIP = ip("fd00:30::41")
            self.lbIP = ip("2001:db8::1234")
            self.podCIDR = cidr("fd00:244::/64")
            self.pod1 = ip("fd00:244::2")
            self.pod2 = ip("fd00:244::3")
            self.pod3 = ip("fd00:244::4")
        }
    }
}

/// kubelet's rules the v1.23 layout relies on, as kube-natd ensures them (`--ensured`).
func ensuredRules(_ table: Table) -> [EnsuredRule] {
    switch table {
    case .nat: return [EnsuredRule(chain: Ownership.kubeletMarkDrop, rule: Rule([], .markOr(0x8000)))]
    case .filter:
        return [
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
    case .mangle: return []
    }
}

func sampleRuleset(family: IPFamily, variant: Int, nfacct: Bool, ensured: Bool = false) -> Ruleset {
    let a = Addresses(family)
    let svcComment = "ns1/svc1:p80 cluster IP"
    var forward = Chain(
        "KUBE-FORWARD",
        [
            Rule([.conntrackState([.invalid], negated: false)], .drop),
            Rule(
                [.comment("kubernetes forwarding rules"), .mark(value: 0x4000, mask: 0x4000, negated: false)], .accept),
            Rule(
                [
                    .comment("kubernetes forwarding conntrack rule"),
                    .conntrackState([.related, .established], negated: false),
                ],
                .accept),
        ])
    if nfacct { forward.rules.append(Rule([.nfacct(name: "knat-test")], .none)) }
    let filter = TableRuleset(
        table: .filter,
        chains: [
            Chain(
                "KUBE-SERVICES",
                [
                    Rule(
                        [
                            .comment("ns2/svc2:p80 has no endpoints"), .proto(.tcp),
                            .destination(.ip(a.clusterIP), negated: false),
                            .destinationPort(80),
                        ], .reject)
                ]),
            Chain(
                "KUBE-EXTERNAL-SERVICES",
                [
                    Rule(
                        [
                            .comment("ns2/svc2:p80 has no endpoints"), .addrTypeLocal(.destination), .proto(.tcp),
                            .destinationPort(30080),
                        ], .reject)
                ]),
            forward,
            Chain(
                "KUBE-NODEPORTS",
                [
                    Rule(
                        [.comment("ns1/svc1:p80 health check node port"), .proto(.tcp), .destinationPort(30000)],
                        .accept)
                ]),
            Chain(
                "KUBE-PROXY-FIREWALL",
                [
                    Rule(
                        [
                            .comment("ns1/svc1:p80 traffic not accepted by KUBE-FW-AAAAAAAAAAAAAAAA"), .proto(.tcp),
                            .destination(.ip(a.lbIP), negated: false), .destinationPort(80),
                        ], .drop)
                ]),
        ],
        baseJumps: Ownership.upstreamJumps(.filter))

    let sep1 = "KUBE-SEP-AAAAAAAAAAAAAAA1"
    let sep2 = "KUBE-SEP-AAAAAAAAAAAAAAA2"
    let sep3 = "KUBE-SEP-AAAAAAAAAAAAAAA3"
    let svc = "KUBE-SVC-AAAAAAAAAAAAAAAA"
    let ext = "KUBE-EXT-AAAAAAAAAAAAAAAA"
    let fw = "KUBE-FW-AAAAAAAAAAAAAAAA"
    let svl = "KUBE-SVL-AAAAAAAAAAAAAAAA"
    var svcRules = [
        Rule(
            [
                .comment(svcComment), .proto(.tcp), .destination(.ip(a.clusterIP), negated: false),
                .destinationPort(80),
                .source(.cidr(a.podCIDR), negated: true),
            ], .jump("KUBE-MARK-MASQ")),
        Rule(
            [.comment("ns1/svc1:p80 -> \(a.pod1.joined(port: 8080))"), .recentCheck(name: sep1, seconds: 10800)],
            .jump(sep1)),
    ]
    var chains: [Chain] = []
    if variant == 1 {
        svcRules += [
            Rule(
                [
                    .comment("ns1/svc1:p80 -> \(a.pod1.joined(port: 8080))"),
                    .statisticRandom(probability: "0.3333333333"),
                ],
                .jump(sep1)),
            Rule(
                [
                    .comment("ns1/svc1:p80 -> \(a.pod2.joined(port: 8080))"),
                    .statisticRandom(probability: "0.5000000000"),
                ],
                .jump(sep2)),
            Rule([.comment("ns1/svc1:p80 -> \(a.pod3.joined(port: 9))")], .jump(sep3)),
        ]
    } else {
        svcRules += [
            Rule(
                [
                    .comment("ns1/svc1:p80 -> \(a.pod1.joined(port: 8080))"),
                    .statisticRandom(probability: "0.5000000000"),
                ],
                .jump(sep1)),
            Rule([.comment("ns1/svc1:p80 -> \(a.pod3.joined(port: 9))")], .jump(sep3)),
        ]
    }
    chains.append(
        Chain(
            "KUBE-SERVICES",
            [
                Rule(
                    [
                        .comment(svcComment), .proto(.tcp), .destination(.ip(a.clusterIP), negated: false),
                        .destinationPort(80),
                    ],
                    .jump(svc)),
                Rule(
                    [
                        .comment("ns1/svc1:p80 loadbalancer IP"), .proto(.tcp),
                        .destination(.ip(a.lbIP), negated: false),
                        .destinationPort(80),
                    ], .jump(fw)),
                Rule(
                    [
                        .comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain"),
                        .addrTypeLocal(.destination),
                    ], .jump("KUBE-NODEPORTS")),
            ]))
    chains.append(
        Chain(
            "KUBE-NODEPORTS",
            [
                Rule([.comment("ns1/svc1:p80"), .proto(.tcp), .destinationPort(30080)], .jump(ext))
            ]))
    chains.append(
        Chain(
            "KUBE-POSTROUTING",
            [
                Rule([.mark(value: 0x4000, mask: 0x4000, negated: true)], .return),
                Rule([], .markXor(0x4000)),
                Rule([.comment("kubernetes service traffic requiring SNAT")], .masquerade(randomFully: variant == 1)),
            ]))
    chains.append(Chain("KUBE-MARK-MASQ", [Rule([], .markOr(0x4000))]))
    chains.append(Chain(svc, svcRules))
    chains.append(
        Chain(
            ext,
            [
                Rule(
                    [
                        .comment("pod traffic for ns1/svc1:p80 external destinations"),
                        .source(.cidr(a.podCIDR), negated: false),
                    ],
                    .jump(svc)),
                Rule(
                    [
                        .comment("masquerade LOCAL traffic for ns1/svc1:p80 external destinations"),
                        .addrTypeLocal(.source),
                    ],
                    .jump("KUBE-MARK-MASQ")),
                Rule([.inInterface("eth+", negated: false)], .return),
                Rule([.inInterface("lo", negated: true), .destination(.cidr(a.podCIDR), negated: true)], .accept),
                Rule([.conntrackState([.new, .dnat], negated: true)], .return),
                Rule(
                    [.comment("route LOCAL traffic for ns1/svc1:p80 external destinations"), .addrTypeLocal(.source)],
                    .jump(variant == 1 ? svc : svl)),
            ]))
    chains.append(
        Chain(
            fw,
            [
                Rule(
                    [.comment("ns1/svc1:p80 loadbalancer IP"), .source(.cidr(a.podCIDR), negated: false)], .jump(ext)),
                Rule([.comment("other traffic to ns1/svc1:p80 will be dropped by KUBE-PROXY-FIREWALL")], .none),
            ]))
    chains.append(
        Chain(
            sep1,
            [
                Rule([.comment("ns1/svc1:p80"), .source(.ip(a.pod1), negated: false)], .jump("KUBE-MARK-MASQ")),
                Rule([.comment("ns1/svc1:p80"), .recentSet(name: sep1), .proto(.tcp)], .dnat(a.pod1, port: 8080)),
            ]))
    if variant == 1 {
        chains.append(
            Chain(
                sep2,
                [
                    Rule([.comment("ns1/svc1:p80"), .source(.ip(a.pod2), negated: false)], .jump("KUBE-MARK-MASQ")),
                    Rule([.comment("ns1/svc1:p80"), .proto(.udp), .destinationPort(53)], .dnat(a.pod2, port: 8080)),
                ]))
    } else {
        chains.append(Chain(svl, [Rule([.comment("ns1/svc1:p80 -> \(a.pod1.joined(port: 8080))")], .jump(sep1))]))
    }
    chains.append(
        Chain(
            sep3,
            [
                Rule([.comment("ns1/svc1:p80"), .source(.ip(a.pod3), negated: false)], .jump("KUBE-MARK-MASQ")),
                Rule([.comment("ns1/svc1:p80"), .proto(.sctp), .destinationPort(9)], .dnat(a.pod3, port: 9)),
            ]))
    let nat = TableRuleset(
        table: .nat, chains: chains, baseJumps: Ownership.upstreamJumps(.nat),
        deletedChains: variant == 1 ? [] : ["KUBE-SEP-GONEGONEGONEGONE"])
    var broken = nat
    var filtered = filter
    if ensured {
        broken.ensured = ensuredRules(.nat)
        filtered.ensured = ensuredRules(.filter)
    }
    if variant == 3 {
        // A rule jumping to a chain nobody declared: the whole table must be refused, the old rules kept.
        broken.chains[0].rules.insert(Rule([.comment("broken")], .jump("KUBE-SVC-MISSINGMISSINGMI")), at: 1)
    }
    return Ruleset(family: family, tables: [filtered, broken])
}

/// A kube-proxy-shaped ruleset with `count` ClusterIP Services of 3 endpoints each (~13 nat rules per Service).
func scaleRuleset(family: IPFamily, count: Int) -> Ruleset {
    let a = Addresses(family)
    func address(_ base: IPAddress, _ n: Int) -> IPAddress {
        var b = base.bytes
        b[b.count - 2] = UInt8(truncatingIfNeeded: n >> 8)
        b[b.count - 1] = UInt8(truncatingIfNeeded: n)
        if b.count == 4 { b[b.count - 3] = UInt8(truncatingIfNeeded: n >> 16) }
        return IPAddress(bytes: b)!
    }
    func hash(_ s: String) -> String {
        var h: UInt64 = 14_695_981_039_346_656_037
        for c in s.utf8 { h = (h ^ UInt64(c)) &* 1_099_511_628_211 }
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        return String((0..<16).map { alphabet[Int((h >> UInt64(($0 * 4) % 60)) & 31)] })
    }
    var services: [Rule] = []
    var chains: [Chain] = []
    for i in 0..<count {
        let name = "ns\(i % 50)/svc\(i):http"
        let svc = "KUBE-SVC-" + hash(name)
        let vip = address(a.clusterIP, i)
        let match: [Match] = [
            .comment("\(name) cluster IP"), .proto(.tcp), .destination(.ip(vip), negated: false),
            .destinationPort(80),
        ]
        services.append(Rule(match, .jump(svc)))
        var rules = [Rule(match + [.source(.cidr(a.podCIDR), negated: true)], .jump("KUBE-MARK-MASQ"))]
        var seps: [Chain] = []
        for e in 0..<3 {
            let pod = address(a.pod1, i * 3 + e)
            let sep = "KUBE-SEP-" + hash(name + "\(e)")
            var m: [Match] = [.comment("\(name) -> \(pod.joined(port: 8080))")]
            if e < 2 { m.append(.statisticRandom(probability: e == 0 ? "0.3333333333" : "0.5000000000")) }
            rules.append(Rule(m, .jump(sep)))
            seps.append(
                Chain(
                    sep,
                    [
                        Rule([.comment(name), .source(.ip(pod), negated: false)], .jump("KUBE-MARK-MASQ")),
                        Rule([.comment(name), .proto(.tcp)], .dnat(pod, port: 8080)),
                    ]))
        }
        chains.append(Chain(svc, rules))
        chains += seps
    }
    services.append(
        Rule(
            [
                .comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain"),
                .addrTypeLocal(.destination),
            ], .jump("KUBE-NODEPORTS")))
    let fixed = [
        Chain("KUBE-SERVICES", services),
        Chain("KUBE-NODEPORTS"),
        Chain(
            "KUBE-POSTROUTING",
            [
                Rule([.mark(value: 0x4000, mask: 0x4000, negated: true)], .return),
                Rule([], .markXor(0x4000)),
                Rule([.comment("kubernetes service traffic requiring SNAT")], .masquerade(randomFully: true)),
            ]),
        Chain("KUBE-MARK-MASQ", [Rule([], .markOr(0x4000))]),
    ]
    let nat = TableRuleset(table: .nat, chains: fixed + chains, baseJumps: Ownership.upstreamJumps(.nat))
    return Ruleset(family: family, tables: [nat])
}

struct Options {
    var command = ""
    var family = IPFamily.ipv4
    var backend = "libiptc"
    var variant = 1
    var table = Table.nat
    var nfacct = false
    /// Adds kubelet's rules as ensured rules (the v1.23 layout's).
    var ensured = false
    var lockTimeoutMilliseconds: Int32 = 5000
    var scale = 0
    /// libiptc only: skip the raw-read check (always the libiptc path).
    var noCheck = false
    /// libiptc only: take snapshots, create PATH.ready, wait (at most 20 s) for PATH to exist, then apply.
    var prefetchGate: String?
}

func parse() -> Options {
    var o = Options()
    var args = Array(CommandLine.arguments.dropFirst())
    guard !args.isEmpty else { usage() }
    o.command = args.removeFirst()
    while !args.isEmpty {
        let flag = args.removeFirst()
        if flag == "--nfacct" {
            o.nfacct = true
            continue
        }
        if flag == "--no-check" {
            o.noCheck = true
            continue
        }
        if flag == "--ensured" {
            o.ensured = true
            continue
        }
        guard !args.isEmpty else { usage() }
        let value = args.removeFirst()
        switch flag {
        case "--family": o.family = value == "ipv6" ? .ipv6 : .ipv4
        case "--backend": o.backend = value
        case "--variant": o.variant = Int(value) ?? 1
        case "--table": o.table = Table(rawValue: value) ?? .nat
        case "--scale": o.scale = Int(value) ?? 0
        case "--lock-timeout-ms": o.lockTimeoutMilliseconds = Int32(value) ?? 5000
        case "--prefetch-gate": o.prefetchGate = value
        default: usage()
        }
    }
    return o
}

func usage() -> Never {
    FileHandle.standardError.write(
        "usage: netfilter-harness apply|cleanup|canary|list|detect [--family ipv4|ipv6] [--backend libiptc|restore-legacy|restore-nft|dry-run] [--variant 1|2|3] [--table T] [--nfacct] [--ensured] [--lock-timeout-ms N] [--scale SERVICES] [--no-check] [--prefetch-gate PATH]\n"
            .data(using: .utf8)!)
    exit(2)
}

let options = parse()
do {
    switch options.command {
    case "apply":
        let ruleset =
            options.scale > 0
            ? scaleRuleset(family: options.family, count: options.scale)
            : sampleRuleset(
                family: options.family, variant: options.variant, nfacct: options.nfacct, ensured: options.ensured)
        let started = DispatchTime.now()
        defer {
            let ms = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e6
            if options.scale > 0 {
                FileHandle.standardError.write(
                    "apply: \(ruleset.tables.reduce(0) { $0 + $1.ruleCount }) rules in \(Int(ms)) ms\n".data(
                        using: .utf8)!)
            }
        }
        let backend: KernelBackend
        switch options.backend {
        case "restore-legacy": backend = RestoreBackend(mode: .legacy)
        case "restore-nft": backend = RestoreBackend(mode: .nft)
        case "dry-run": backend = TextBackend(rendersText: true)
        default:
            let libiptc = LibiptcBackend(lockTimeoutMilliseconds: options.lockTimeoutMilliseconds)
            libiptc.checkFirst = !options.noCheck
            if let gate = options.prefetchGate {
                let snapshots = LibiptcBackend.takeSnapshots(
                    family: options.family, tables: ruleset.tables.map(\.table))
                libiptc.usePrefetched(snapshots, family: options.family)
                _ = FileManager.default.createFile(atPath: gate + ".ready", contents: nil)
                var waited = 0
                while !FileManager.default.fileExists(atPath: gate) && waited < 2000 {
                    usleep(10_000)
                    waited += 1
                }
            }
            backend = libiptc
        }
        let report = try backend.apply([ruleset])
        if options.backend == "dry-run" {
            print(report.text ?? "", terminator: "")
        } else {
            FileHandle.standardError.write((report.description + "\n").data(using: .utf8)!)
        }
    case "cleanup":
        for r in try Cleanup.run(families: [options.family]) {
            FileHandle.standardError.write((r.description + "\n").data(using: .utf8)!)
        }
    case "canary":
        let r = try LibiptcBackend().createCanaries(family: options.family)
        FileHandle.standardError.write((r.description + "\n").data(using: .utf8)!)
    case "list":
        for c in try TableReader.chains(family: options.family, table: options.table) {
            print("\(c.name)\t\(c.isBuiltin ? "builtin" : "user")\t\(c.ruleCount)\t\(String(c.digest, radix: 16))")
        }
    case "drift":
        // Compares the kernel's owned chains with what the sample ruleset says they must hold.
        let ruleset = sampleRuleset(family: options.family, variant: options.variant, nfacct: options.nfacct)
        var drifted = 0
        for table in ruleset.tables {
            let live = Dictionary(
                try TableReader.chains(family: options.family, table: table.table).map { ($0.name, $0) },
                uniquingKeysWith: { a, _ in a })
            for want in try TableReader.expectedChains(family: options.family, table: table) {
                let have = live[want.name]
                if have?.digest != want.digest || have?.ruleCount != want.ruleCount {
                    drifted += 1
                    print(
                        "drift: \(table.table.rawValue) \(want.name): want \(want.ruleCount) rules/\(String(want.digest, radix: 16)), have \(have.map { "\($0.ruleCount) rules/\(String($0.digest, radix: 16))" } ?? "no chain")"
                    )
                }
            }
        }
        print("drift: \(drifted) chain(s) differ")
        if drifted > 0 { exit(1) }
    case "detect":
        let d = HostModeDetector.detect()
        print("\(d.mode.rawValue)\t\(d.reason)")
    default:
        usage()
    }
} catch {
    FileHandle.standardError.write("netfilter-harness: \(error)\n".data(using: .utf8)!)
    exit(4)  // not 1: `drift` exits 1 when it finds drift, and a test must tell a failure from a finding
}
