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

    func testDuplicateKeepsTheFirstCopyWhenNoneIsLocal() {
        let eps = resolve([
            F.slice("ns1", "svc1", suffix: "a", [F.ep("10.0.0.5", node: "other", ready: false)]),
            F.slice("ns1", "svc1", suffix: "b", [F.ep("10.0.0.5", node: "other", ready: true)]),
        ])
        XCTAssertEqual(eps.count, 1)
        XCTAssertFalse(eps[0].ready)
    }

    func testDuplicateKeepsTheLastLocalCopy() {
        let eps = resolve([
            F.slice("ns1", "svc1", suffix: "a", [F.ep("10.0.0.7", node: "test-node", ready: true), F.ep("10.0.0.3")]),
            F.slice("ns1", "svc1", suffix: "b", [F.ep("10.0.0.7", node: "test-node", ready: false)]),
            F.slice("ns1", "svc1", suffix: "c", [F.ep("10.0.0.7", node: "other", ready: true)]),
        ])
        XCTAssertEqual(eps.map(\.text), ["10.0.0.3:80", "10.0.0.7:80"])
        XCTAssertTrue(eps[1].isLocal)
        XCTAssertFalse(eps[1].ready)
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
