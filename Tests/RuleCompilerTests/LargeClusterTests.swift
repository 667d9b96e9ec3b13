import KubeModel
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// Upstream's TestSyncProxyRulesLargeClusterMode: above 1000 endpoints the SVC->SEP and SEP comments go.
final class LargeClusterTests: XCTestCase {
    typealias F = Fixture

    func cluster(endpoints: Int) -> ([Service], [EndpointSlice]) {
        let svc = F.service("ns1", "svc1", clusterIP: "172.30.0.41")
        let eps = (0..<endpoints).map { F.ep("10.\($0 / 65536).\(($0 / 256) % 256).\($0 % 256)") }
        let svc3 = F.service("ns3", "svc3", clusterIP: "172.30.0.43", ports: [ServicePort(name: "p8081", port: 8081)])
        let ep3 = F.slice("ns3", "svc3", ports: [EndpointPort(name: "p8081", port: 8081)], [F.ep("203.0.113.4")])
        return ([svc, svc3], [F.slice("ns1", "svc1", eps), ep3])
    }

    func testAtTheThresholdEndpointRulesKeepComments() {
        let (s, e) = cluster(endpoints: 999)
        let text = TextRenderer.render(F.compile(s, e))
        XCTAssertTrue(text.contains("-A KUBE-SEP-DKGQUZGBKLTPAR56 -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80\n"))
        XCTAssertTrue(text.contains("-A KUBE-SEP-RUVVH7YV3PHQBDOS -m comment --comment ns3/svc3:p8081 -m tcp -p tcp -j DNAT --to-destination 203.0.113.4:8081\n"))
    }

    func testAboveTheThresholdEndpointRulesDropComments() {
        let (s, e) = cluster(endpoints: 1001)
        let rs = F.compile(s, e)
        let text = TextRenderer.render(rs)
        XCTAssertTrue(text.contains("-A KUBE-SEP-RUVVH7YV3PHQBDOS -m tcp -p tcp -j DNAT --to-destination 203.0.113.4:8081\n"))
        XCTAssertTrue(text.contains("-A KUBE-SEP-RUVVH7YV3PHQBDOS -s 203.0.113.4 -j KUBE-MARK-MASQ\n"))
        // Comments on the shared chains stay.
        XCTAssertTrue(text.contains("--comment \"ns3/svc3:p8081 cluster IP\""))
        XCTAssertFalse(text.contains("ns3/svc3:p8081 -> 203.0.113.4:8081"))
    }

    func testCrossingTheThresholdRecompilesCachedFragments() {
        let compiler = RuleCompiler(settings: F.settings())
        let (s, e) = cluster(endpoints: 999)
        var state = ClusterState(services: s, slices: e)
        _ = compiler.compile(state)
        var bigger = e[0]
        bigger.endpoints += (0..<5).map { F.ep("10.99.0.\($0)") }
        state.upsert(bigger)
        let text = TextRenderer.render(compiler.compile(state))
        // ns3/svc3 did not change, but the cluster crossed into large mode: its cached fragment must not be reused.
        XCTAssertFalse(text.contains("ns3/svc3:p8081 -> 203.0.113.4:8081"))
        XCTAssertEqual(compiler.lastStats.fragmentsCompiled, 2)
        XCTAssertTrue(compiler.lastStats.largeClusterMode)
    }

    /// The endpoint total must follow in-place patches too, or a second small step over the threshold is missed.
    func testCrossingTheThresholdInTwoIncrementalStepsMatchesAFreshCompile() {
        let compiler = RuleCompiler(settings: F.settings())
        let (s, e) = cluster(endpoints: 998)
        var state = ClusterState(services: s, slices: e)
        _ = compiler.compile(state)
        var slice = e[0]
        for step in 0..<2 {
            slice.endpoints.append(F.ep("10.99.0.\(step)"))
            state.upsert(slice)
            let result = compiler.compile(state)
            XCTAssertEqual(compiler.lastStats.endpoints, 1000 + step)
            XCTAssertEqual(result, RuleCompiler(settings: F.settings()).compile(state), "step \(step)")
        }
        XCTAssertTrue(compiler.lastStats.largeClusterMode)
    }

    func testOneEndpointChangeRecompilesOnlyThatService() {
        let compiler = RuleCompiler(settings: F.settings())
        let (services, slices) = UpstreamFixtureTests.overallCluster()
        var state = ClusterState(services: services, slices: slices)
        _ = compiler.compile(state)
        XCTAssertEqual(compiler.lastStats.fragmentsCompiled, 6)
        var s = slices[0]
        s.endpoints.append(F.ep("10.180.0.9"))
        state.upsert(s)
        let incremental = compiler.compile(state)
        XCTAssertEqual(compiler.lastStats.fragmentsCompiled, 1)
        XCTAssertEqual(incremental, RuleCompiler(settings: F.settings()).compile(state), "cached result equals a fresh compile")
    }
}
