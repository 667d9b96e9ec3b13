import KubeModel
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// The cached, in-place-patched result must always equal a fresh compile of the same state.
final class IncrementalCompileTests: XCTestCase {
    typealias F = Fixture

    struct Rng {
        var state: UInt64
        mutating func next(_ n: Int) -> Int {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return Int(state % UInt64(n))
        }
    }

    func service(_ i: Int, _ rng: inout Rng) -> Service {
        let kinds: [ServiceType] = [.clusterIP, .nodePort, .loadBalancer]
        let type = kinds[rng.next(3)]
        var ports = [ServicePort(name: "p80", port: 80, nodePort: type == .clusterIP ? 0 : 30000 + i)]
        if rng.next(3) == 0 { ports.append(ServicePort(name: "p81", protocol: .udp, port: 81)) }
        return F.service("ns\(i % 3)", "svc\(i)", type: type, clusterIP: "172.30.\(i / 200).\(i % 200)", ports: ports,
                         lbIPs: type == .loadBalancer ? ["1.2.\(i / 200).\(i % 200)"] : [],
                         sourceRanges: rng.next(2) == 0 && type == .loadBalancer ? ["203.0.113.0/24"] : [],
                         etp: rng.next(4) == 0 ? .local : .cluster, itp: rng.next(6) == 0 ? .local : .cluster,
                         affinity: rng.next(5) == 0 ? 600 : nil)
    }

    func slice(_ i: Int, _ rng: inout Rng) -> EndpointSlice {
        let n = rng.next(4)
        let eps = (0..<n).map { e in
            F.ep("10.\(i % 250).\(e).\(rng.next(250))", node: rng.next(2) == 0 ? "test-node" : "other",
                 ready: rng.next(5) == 0 ? false : nil, serving: true, terminating: rng.next(5) == 0)
        }
        return F.slice("ns\(i % 3)", "svc\(i)",
                       ports: [EndpointPort(name: "p80", port: 8080), EndpointPort(name: "p81", port: 8081, protocol: .udp)], eps)
    }

    func testRandomChangesGiveTheSameRulesAsAFreshCompile() {
        assertRandomChangesGiveTheSameRulesAsAFreshCompile(layout: .current)
    }

    func testRandomChangesGiveTheSameRulesAsAFreshCompileInTheV123Layout() {
        assertRandomChangesGiveTheSameRulesAsAFreshCompile(layout: .v1_23)
    }

    func assertRandomChangesGiveTheSameRulesAsAFreshCompile(layout: RuleLayout) {
        let settings = F.settings(layout: layout)
        var rng = Rng(state: 0x1234_5678_9abc_def1)
        var state = ClusterState()
        for i in 0..<40 {
            state.upsert(service(i, &rng))
            state.upsert(slice(i, &rng))
        }
        let compiler = RuleCompiler(settings: settings)
        _ = compiler.compile(state)
        for step in 0..<150 {
            let i = rng.next(45)
            switch rng.next(6) {
            case 0: state.upsert(service(i, &rng))
            case 1: state.removeService(ObjectName(namespace: "ns\(i % 3)", name: "svc\(i)"))
            case 2: state.removeSlice(ObjectName(namespace: "ns\(i % 3)", name: "svc\(i)-1"))
            default: state.upsert(slice(i, &rng))
            }
            if rng.next(4) == 0 { state.upsert(slice(rng.next(45), &rng)) }
            let incremental = compiler.compile(state)
            let fresh = RuleCompiler(settings: settings).compile(state)
            if incremental != fresh {
                XCTFail("\(layout) step \(step): incremental result differs from a fresh compile")
                assertSameLines(TextRenderer.render(incremental), TextRenderer.render(fresh))
                return
            }
            XCTAssertEqual(compiler.lastStats.services, RuleCompiler(settings: settings).compileStats(state).services)
        }
    }

    func testAnUnchangedStateRecompilesNothing() {
        let (services, slices) = UpstreamFixtureTests.overallCluster()
        let state = ClusterState(services: services, slices: slices)
        for layout in RuleLayout.allCases {
            let compiler = RuleCompiler(settings: F.settings(layout: layout))
            let first = compiler.compile(state)
            XCTAssertEqual(compiler.compile(state), first)
            XCTAssertEqual(compiler.lastStats.fragmentsCompiled, 0)
        }
    }

    func testAnotherStateLineageIsNotMistakenForAChange() {
        for layout in RuleLayout.allCases {
            let compiler = RuleCompiler(settings: F.settings(layout: layout))
            let (services, slices) = UpstreamFixtureTests.overallCluster()
            _ = compiler.compile(ClusterState(services: services, slices: slices))
            let other = ClusterState(services: Array(services.prefix(2)), slices: Array(slices.prefix(2)))
            XCTAssertEqual(compiler.compile(other), RuleCompiler(settings: F.settings(layout: layout)).compile(other))
        }
    }
}

extension RuleCompiler {
    func compileStats(_ state: ClusterState) -> CompileStats {
        _ = compile(state)
        return lastStats
    }
}
