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

    /// `lastChange` names every chain an incremental compile added, removed or rewrote: every chain it does not
    /// name is in the previous result, with the same rules, in the same order among the unnamed ones.
    func testTheReportedChangeCoversEveryChainThatDiffers() {
        for layout in RuleLayout.allCases {
            let settings = F.settings(layout: layout)
            var rng = Rng(state: 0x0bad_cafe_f00d_0001)
            var state = ClusterState()
            for i in 0..<40 {
                state.upsert(service(i, &rng))
                state.upsert(slice(i, &rng))
            }
            let compiler = RuleCompiler(settings: settings)
            var previous = compiler.compile(state)
            XCTAssertTrue(compiler.lastChange.isEverything)
            var previousID = compiler.lastChange.id
            var incremental = 0
            var nonEmpty = 0
            for step in 0..<150 {
                let i = rng.next(40)
                switch rng.next(3) {
                case 0: state.upsert(service(i, &rng))
                default: state.upsert(slice(i, &rng))
                }
                let result = compiler.compile(state)
                let change = compiler.lastChange
                XCTAssertNotEqual(change.id, previousID)
                XCTAssertEqual(change.family, settings.family)
                if !change.isEverything {
                    incremental += 1
                    XCTAssertEqual(change.base, previousID, "\(layout) step \(step)")
                    for (t, table) in result.tables.enumerated() {
                        let touched = change.touched[table.table] ?? []
                        if !touched.isEmpty { nonEmpty += 1 }
                        let before = previous.tables[t].chains.filter { !touched.contains($0.name) }
                        let after = table.chains.filter { !touched.contains($0.name) }
                        XCTAssertTrue(before == after, "\(layout) step \(step) \(table.table): a changed chain is not named")
                        XCTAssertEqual(previous.tables[t].deletedChains, table.deletedChains)
                        XCTAssertEqual(previous.tables[t].baseJumps, table.baseJumps)
                    }
                }
                previous = result
                previousID = change.id
            }
            // the checks above ran, and on changes that touched something
            XCTAssertGreaterThan(incremental, 100, "\(layout)")
            XCTAssertGreaterThan(nonEmpty, 50, "\(layout)")
        }
    }

    /// The conntrack cleanup's frontends from the compiler's cache: of every Service they equal a fresh
    /// resolution; of the changed Services they hold every frontend those use, with the same serving endpoints
    /// (including those of other Services sharing the frontend), and nothing else.
    func testCachedUDPFrontendsEqualAFreshResolution() {
        let settings = F.settings()
        var rng = Rng(state: 0x5eed_0000_0000_0077)
        var state = ClusterState()
        for i in 0..<40 {
            state.upsert(service(i, &rng))
            state.upsert(slice(i, &rng))
        }
        let compiler = RuleCompiler(settings: settings)
        _ = compiler.compile(state)
        XCTAssertNil(compiler.lastChangedServices)
        XCTAssertEqual(compiler.cachedUDPFrontends(), RuleCompiler.udpFrontends(state, settings: settings))
        var partial = 0
        for step in 0..<80 {
            let i = rng.next(40)
            if rng.next(3) == 0 { state.upsert(service(i, &rng)) } else { state.upsert(slice(i, &rng)) }
            _ = compiler.compile(state)
            let all = RuleCompiler.udpFrontends(state, settings: settings)
            XCTAssertEqual(compiler.cachedUDPFrontends(), all, "step \(step)")
            // an upsert equal to what the state holds changes nothing
            guard let changed = compiler.lastChangedServices, !changed.isEmpty else { continue }
            XCTAssertEqual(changed, [ObjectName(namespace: "ns\(i % 3)", name: "svc\(i)")])
            let only = compiler.cachedUDPFrontends(only: changed)
            let mine = RuleCompiler.udpFrontends(
                ClusterState(services: changed.compactMap { state.services[$0] }, slices: Array(state.slices.values)),
                settings: settings)
            if !only.isEmpty { partial += 1 }
            for (f, serving) in only.byAddress { XCTAssertEqual(all.byAddress[f], serving, "step \(step) \(f)") }
            for (p, serving) in only.byNodePort { XCTAssertEqual(all.byNodePort[p], serving, "step \(step) \(p)") }
            for f in mine.byAddress.keys { XCTAssertNotNil(only.byAddress[f], "step \(step): \(f) left out") }
            for p in mine.byNodePort.keys { XCTAssertNotNil(only.byNodePort[p], "step \(step): \(p) left out") }
            XCTAssertLessThan(only.byAddress.count, max(1, all.byAddress.count), "step \(step): not only the changed")
        }
        XCTAssertGreaterThan(partial, 10)
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
