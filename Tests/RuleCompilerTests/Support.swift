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
    static func settings(family: IPFamily = .ipv4, nfacct: Bool = true) -> NodeSettings {
        NodeSettings(family: family, nodeName: "test-node",
                     nodeIPs: family == .ipv4 ? [ip("192.168.0.2")] : [ip("2001:db8::1")],
                     localDetector: .cidr(CIDR(family == .ipv4 ? "10.0.0.0/8" : "fd00:10::/64")!),
                     features: KernelFeatures(randomFully: false, nfacctCounters: nfacct))
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
