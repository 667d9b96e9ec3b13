import KubeModel
import XCTest

@testable import RuleCompiler

/// How the slices of one Service merge into per-port endpoint lists (upstream's EndpointSliceCache).
final class EndpointResolutionTests: XCTestCase {
    private typealias F = Fixture
    private let key = EndpointResolution.Key(portName: "p80", proto: .tcp)

    private func resolve(_ slices: [EndpointSlice]) -> [EndpointInfo] {
        EndpointResolution.endpoints(slices: slices, family: .ipv4, nodeName: "test-node")[key]
    }

    func testListIsSortedByIPPortText() {
        let eps = resolve([F.slice("ns1", "svc1", [F.ep("10.0.0.9"), F.ep("10.0.0.10"), F.ep("10.0.0.2")])])
        XCTAssertEqual(eps.map(\.text), ["10.0.0.10:80", "10.0.0.2:80", "10.0.0.9:80"])
    }

    func testDuplicateKeepsTheLastOfNonTerminatingCopies() {
        let eps = resolve([
            F.slice("ns1", "svc1", suffix: "a", [F.ep("10.0.0.5", node: "other", ready: false)]),
            F.slice("ns1", "svc1", suffix: "b", [F.ep("10.0.0.5", node: "other", ready: true)]),
        ])
        XCTAssertEqual(eps.count, 1)
        XCTAssertTrue(eps[0].ready)
    }

    func testDuplicateKeepsTheNonTerminatingCopyWhicheverSliceComesFirst() {
        // A pod IP reused by a running pod while the terminating pod's endpoint is still listed (upstream's
        // endpointslicecache.go addEndpoints): the running one wins, in either slice order.
        let terminating = F.ep("10.0.0.7", node: "test-node", ready: false, serving: true, terminating: true)
        let running = F.ep("10.0.0.7", node: "other", ready: true)
        for (first, second) in [(terminating, running), (running, terminating)] {
            let eps = resolve([
                F.slice("ns1", "svc1", suffix: "a", [first, F.ep("10.0.0.3")]),
                F.slice("ns1", "svc1", suffix: "b", [second]),
            ])
            XCTAssertEqual(eps.map(\.text), ["10.0.0.3:80", "10.0.0.7:80"])
            XCTAssertTrue(eps[1].ready)
            XCTAssertFalse(eps[1].terminating)
            XCTAssertFalse(eps[1].isLocal, "locality no longer decides which copy is kept")
        }
    }

    func testDuplicateOfNonTerminatingCopiesKeepsTheLastAndOfTerminatingOnesTheFirst() {
        let eps = resolve([
            F.slice("ns1", "svc1", suffix: "a", [F.ep("10.0.0.7", node: "test-node", ready: true)]),
            F.slice("ns1", "svc1", suffix: "b", [F.ep("10.0.0.7", node: "other", ready: false)]),
        ])
        XCTAssertEqual(eps.count, 1)
        XCTAssertFalse(eps[0].isLocal)
        let term = resolve([
            F.slice("ns1", "svc1", suffix: "a", [F.ep("10.0.0.7", node: "test-node", ready: false, terminating: true)]),
            F.slice("ns1", "svc1", suffix: "b", [F.ep("10.0.0.7", node: "other", ready: false, terminating: true)]),
        ])
        XCTAssertEqual(term.count, 1)
        XCTAssertTrue(term[0].isLocal)
    }

    func testUnsetConditionsReadAsReadyAndServingAndNotTerminating() {
        // Upstream: ready = nil || *ready, serving = nil || *serving (not "serving = ready"), terminating = set && true.
        let eps = resolve([F.slice("ns1", "svc1", [
            F.ep("10.0.0.1"),
            F.ep("10.0.0.2", ready: false, terminating: true),
        ])])
        XCTAssertEqual(eps.map { [$0.ready, $0.serving, $0.terminating] }, [[true, true, false], [false, true, true]])
    }

    func testHintsAreCarriedToTheEndpoint() {
        let ep = Endpoint(addresses: [F.ip("10.0.0.1")], zoneHints: ["zone-a"], nodeHints: ["node-1", "node-2"])
        let eps = resolve([F.slice("ns1", "svc1", [ep])])
        XCTAssertEqual(eps.first?.zoneHints, ["zone-a"])
        XCTAssertEqual(eps.first?.nodeHints, ["node-1", "node-2"])
    }

    func testPortsAreKeptApartByNameAndProtocol() {
        let ports = [EndpointPort(name: "p80", port: 80), EndpointPort(name: "p80", port: 53, protocol: .udp)]
        let byPort = EndpointResolution.endpoints(
            slices: [F.slice("ns1", "svc1", ports: ports, [F.ep("10.0.0.1")])], family: .ipv4, nodeName: "test-node")
        XCTAssertEqual(byPort[key].map(\.text), ["10.0.0.1:80"])
        XCTAssertEqual(byPort[EndpointResolution.Key(portName: "p80", proto: .udp)].map(\.text), ["10.0.0.1:53"])
        XCTAssertEqual(byPort[EndpointResolution.Key(portName: "other", proto: .tcp)].map(\.text), [])
    }
}
