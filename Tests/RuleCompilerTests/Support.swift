import Foundation
import KubeModel
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// Builders for test clusters, in the conventions of upstream's proxier_test.go.
enum Fixture {
    static func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    static func service(_ ns: String, _ name: String, type: ServiceType = .clusterIP, clusterIP: String,
                        ports: [ServicePort] = [ServicePort(name: "p80", port: 80)],
                        externalIPs: [String] = [], lbIPs: [String] = [], sourceRanges: [String] = [],
                        etp: TrafficPolicy = .cluster, itp: TrafficPolicy = .cluster, hcnp: Int = 0,
                        affinity: Int? = nil, labels: [String: String] = [:]) -> Service {
        Service(name: ObjectName(namespace: ns, name: name), resourceVersion: "1", labels: labels, type: type,
                clusterIPs: clusterIP.split(separator: ",").map { ip(String($0)) }, ports: ports,
                externalIPs: externalIPs.map(ip), loadBalancerIngressIPs: lbIPs.map(ip),
                loadBalancerSourceRanges: sourceRanges.map { CIDR($0)! }, externalTrafficPolicy: etp,
                internalTrafficPolicy: itp, healthCheckNodePort: hcnp, sessionAffinityTimeout: affinity)
    }

    static func slice(_ ns: String, _ svc: String, suffix: String = "1", family: IPFamily = .ipv4,
                      ports: [EndpointPort] = [EndpointPort(name: "p80", port: 80)],
                      _ endpoints: [Endpoint]) -> EndpointSlice {
        EndpointSlice(name: ObjectName(namespace: ns, name: "\(svc)-\(suffix)"), serviceName: svc, resourceVersion: "1",
                      addressType: family, endpoints: endpoints, ports: ports)
    }

    static func ep(_ addr: String, node: String? = nil, ready: Bool? = nil, serving: Bool? = nil,
                   terminating: Bool? = nil) -> Endpoint {
        Endpoint(addresses: [ip(addr)], conditions: EndpointConditions(ready: ready, serving: serving, terminating: terminating),
                 nodeName: node)
    }

    /// `NewFakeProxier`'s settings: test-node, 192.168.0.2, cluster CIDR 10.0.0.0/8, nfacct counters present.
    static func settings(family: IPFamily = .ipv4, nfacct: Bool = true, layout: RuleLayout = .current) -> NodeSettings {
        NodeSettings(family: family, nodeName: "test-node",
                     nodeIPs: family == .ipv4 ? [ip("192.168.0.2")] : [ip("2001:db8::1")],
                     localDetector: .cidr(CIDR(family == .ipv4 ? "10.0.0.0/8" : "fd00:10::/64")!),
                     features: KernelFeatures(randomFully: false, nfacctCounters: nfacct), ruleLayout: layout)
    }

    static func compile(_ services: [Service], _ slices: [EndpointSlice], settings: NodeSettings = settings()) -> Ruleset {
        RuleCompiler(settings: settings).compile(ClusterState(services: services, slices: slices))
    }
}

/// Upstream's `sortIPTablesRules`: tables by name; KUBE-NODEPORTS, KUBE-SERVICES, then KUBE-* chains by
/// name; KUBE-NODEPORTS and KUBE-SERVICES rules stably sorted by comment, the "must be the last rule" last.
/// Base-chain jumps are not part of upstream's restore payload, so they are dropped.
func upstreamSorted(_ rs: Ruleset) -> String {
    func rank(_ name: String) -> Int { name == "KUBE-NODEPORTS" ? 0 : name == "KUBE-SERVICES" ? 1 : 2 }
    var tables = rs.tables.sorted { $0.table.rawValue < $1.table.rawValue }
    for t in tables.indices {
        tables[t].baseJumps = []
        tables[t].chains.sort { (rank($0.name), $0.name) < (rank($1.name), $1.name) }
        for c in tables[t].chains.indices where rank(tables[t].chains[c].name) < 2 {
            let rules = tables[t].chains[c].rules
            let indexed = rules.enumerated().map { ($0.offset, $0.element) }
            tables[t].chains[c].rules = indexed.sorted { a, b in
                let la = a.1.comment?.contains("must be the last rule") == true
                let lb = b.1.comment?.contains("must be the last rule") == true
                if la != lb { return lb }
                let ca = a.1.comment ?? "", cb = b.1.comment ?? ""
                return ca != cb ? ca < cb : a.0 < b.0
            }.map(\.1)
        }
    }
    return TextRenderer.render(Ruleset(family: rs.family, tables: tables))
}

/// `Golden/` in the source tree, where UPDATE_GOLDEN=1 writes (and then fails the run).
let goldenInSource = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

func golden(_ name: String) throws -> String {
    let url = Bundle.module.url(forResource: "Golden", withExtension: nil)!.appendingPathComponent(name)
    return try String(contentsOf: url, encoding: .utf8)
}

/// Line-by-line comparison with a readable first difference.
func assertSameLines(_ actual: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
    let a = actual.split(separator: "\n", omittingEmptySubsequences: false)
    let e = expected.split(separator: "\n", omittingEmptySubsequences: false)
    for i in 0..<max(a.count, e.count) {
        let x = i < a.count ? String(a[i]) : "<missing>"
        let y = i < e.count ? String(e[i]) : "<missing>"
        if x != y {
            XCTFail("line \(i + 1) differs:\n  actual:   \(x)\n  expected: \(y)\n--- actual ---\n\(actual)", file: file, line: line)
            return
        }
    }
}

/// kube-proxy 1.23's `sortIPTablesRules` (legacy-layout §7): per table, the chain lines sorted by name, then the
/// KUBE-NODEPORTS rules and the KUBE-SERVICES rules each grouped by the first word of their comment (the service
/// port name, or "kubernetes" for the tail rule) with the groups sorted, then every other chain's rules by chain
/// name. Rule order within a chain, and within a service's group, is kept: only the order Go's map iteration gave
/// the Services is taken out. Works on restore text, so the spec's verbatim expectations go through it as they are.
func legacySorted(_ text: String) -> String {
    var out: [String] = []
    var chains: [String] = []
    var rules: [(chain: String, line: String)] = []
    func firstCommentWord(_ line: String) -> String {
        guard let r = line.range(of: "--comment ") else { return "" }
        return String(line[r.upperBound...].drop { $0 == "\"" }.prefix { $0 != " " && $0 != "\"" })
    }
    func flush() {
        out += chains.sorted()
        for chain in ["KUBE-NODEPORTS", "KUBE-SERVICES"] {
            let mine = rules.filter { $0.chain == chain }.map(\.line)
            let groups = Dictionary(grouping: mine, by: firstCommentWord)
            for key in groups.keys.sorted() { out += groups[key]! }
        }
        let others = rules.filter { $0.chain != "KUBE-NODEPORTS" && $0.chain != "KUBE-SERVICES" }
        for chain in Set(others.map(\.chain)).sorted() { out += others.filter { $0.chain == chain }.map(\.line) }
        chains = []
        rules = []
    }
    for line in text.split(separator: "\n").map(String.init) {
        if line.hasPrefix(":") {
            chains.append(line)
        } else if line.hasPrefix("-A ") {
            rules.append((String(line.dropFirst(3).prefix { $0 != " " }), line))
        } else if line == "COMMIT" {
            flush()
            out.append(line)
        } else {
            out.append(line)
        }
    }
    return out.joined(separator: "\n") + "\n"
}

/// A Ruleset as upstream's restore payload: no base jumps (kube-proxy ensures them with `iptables -I`), no
/// ensured rules (kubelet's), no deleted fixed chains (kube-natd's switch-over cleanup).
func restorePayload(_ rs: Ruleset) -> Ruleset {
    var rs = rs
    for t in rs.tables.indices {
        rs.tables[t].baseJumps = []
        rs.tables[t].ensured = []
        rs.tables[t].deletedChains = []
    }
    return rs
}

/// Compares with a snapshot under `Golden/` (kube-natd's own earlier output, a change detector) whole.
/// UPDATE_GOLDEN=1 rewrites it in the source tree and then fails, so that the diff is reviewed before it is
/// committed: a run that writes its own expectations never passes.
func assertGolden(_ actual: String, _ path: String, file: StaticString = #filePath, line: UInt = #line) throws {
    if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
        let url = goldenInSource.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let old = try? String(contentsOf: url, encoding: .utf8)
        try actual.write(to: url, atomically: true, encoding: .utf8)
        XCTFail("UPDATE_GOLDEN=1 wrote \(url.path)\(old == actual ? " (unchanged)" : ""): review `git diff`, commit "
                + "what is right, and run again without UPDATE_GOLDEN.", file: file, line: line)
        return
    }
    let expected = try golden(path)
    if actual != expected {
        XCTFail("snapshot \(path) differs from kube-natd's earlier output", file: file, line: line)
        assertSameLines(actual, expected, file: file, line: line)
    }
}
