import KubeModel
import Ruleset
import XCTest

@testable import Netfilter

/// Which UDP conntrack entries are stale, as upstream's `CleanStaleEntries` decides (reference §5).
final class StaleUDPEntryMatcherTests: XCTestCase {
    private func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    /// kube-dns: ClusterIP 10.96.0.53:53, LB VIP 1.2.3.4, external IP 5.6.7.8, NodePort 30053; endpoint 10.244.1.12.
    private func dns(serving: [String] = ["10.244.1.12"]) -> StaleUDPEntryMatcher {
        var f = UDPServiceFrontends(family: .ipv4)
        f.add(
            addresses: [ip("10.96.0.53"), ip("1.2.3.4"), ip("5.6.7.8")], port: 53, nodePort: 30053,
            serving: Set(serving.map(ip)))
        return StaleUDPEntryMatcher(f)
    }

    private func stale(_ m: StaleUDPEntryMatcher, _ dst: String, _ port: Int, reply: String) -> Bool {
        m.isStale(originalDestination: ip(dst), port: port, replySource: ip(reply))
    }

    func testEntryDNATedToAServingEndpointIsKept() {
        XCTAssertFalse(stale(dns(), "10.96.0.53", 53, reply: "10.244.1.12"))
    }

    func testEntryDNATedToAnEndpointThatNoLongerServesIsStale() {
        XCTAssertTrue(stale(dns(), "10.96.0.53", 53, reply: "10.244.9.9"))
    }

    func testEntryCreatedBeforeTheServiceHadEndpointsIsStale() {
        // Not DNATed at all: the reply comes "from" the ClusterIP itself (the 0 -> N case, kubernetes #48370).
        XCTAssertTrue(stale(dns(), "10.96.0.53", 53, reply: "10.96.0.53"))
    }

    func testLoadBalancerAndExternalIPFrontendsAreChecked() {
        XCTAssertTrue(stale(dns(), "1.2.3.4", 53, reply: "10.244.9.9"))
        XCTAssertTrue(stale(dns(), "5.6.7.8", 53, reply: "10.244.9.9"))
        XCTAssertFalse(stale(dns(), "1.2.3.4", 53, reply: "10.244.1.12"))
    }

    func testNodePortIsMatchedOnPortAloneWhateverTheDestination() {
        XCTAssertTrue(stale(dns(), "192.168.0.2", 30053, reply: "10.244.9.9"))
        XCTAssertTrue(stale(dns(), "127.0.0.1", 30053, reply: "10.244.9.9"))
        XCTAssertFalse(stale(dns(), "192.168.0.2", 30053, reply: "10.244.1.12"))
    }

    func testOtherPortsAndAddressesAreNeverTouched() {
        XCTAssertFalse(stale(dns(), "10.96.0.53", 54, reply: "10.244.9.9"))
        XCTAssertFalse(stale(dns(), "10.96.0.54", 53, reply: "10.244.9.9"))
        XCTAssertFalse(stale(dns(), "8.8.8.8", 53, reply: "8.8.8.8"))
    }

    func testAnyOfSeveralServingEndpointsKeepsTheEntry() {
        let m = dns(serving: ["10.244.1.12", "10.244.2.7"])
        XCTAssertFalse(stale(m, "10.96.0.53", 53, reply: "10.244.2.7"))
        XCTAssertTrue(stale(m, "10.96.0.53", 53, reply: "10.244.3.3"))
    }

    func testServicePortWithoutServingEndpointsIsSkipped() {
        // Deleting would not help (there is nowhere to send the flow) and upstream leaves such entries alone.
        let m = dns(serving: [])
        XCTAssertTrue(m.isEmpty)
        XCTAssertFalse(stale(m, "10.96.0.53", 53, reply: "10.244.9.9"))
        XCTAssertFalse(stale(m, "192.168.0.2", 30053, reply: "10.244.9.9"))
    }

    func testSharedFrontendKeepsTheEndpointsOfEveryServiceOnIt() {
        var f = UDPServiceFrontends(family: .ipv4)
        f.add(addresses: [ip("1.2.3.4")], port: 53, nodePort: 0, serving: [ip("10.244.1.1")])
        f.add(addresses: [ip("1.2.3.4")], port: 53, nodePort: 0, serving: [ip("10.244.2.2")])
        let m = StaleUDPEntryMatcher(f)
        XCTAssertFalse(stale(m, "1.2.3.4", 53, reply: "10.244.1.1"))
        XCTAssertFalse(stale(m, "1.2.3.4", 53, reply: "10.244.2.2"))
        XCTAssertTrue(stale(m, "1.2.3.4", 53, reply: "10.244.3.3"))
    }

    func testIPv6FrontendsUseAllOfTheAddress() {
        var f = UDPServiceFrontends(family: .ipv6)
        f.add(addresses: [ip("fd00:10:96::a")], port: 53, nodePort: 0, serving: [ip("fd00:10:244:1::c")])
        let m = StaleUDPEntryMatcher(f)
        XCTAssertFalse(stale(m, "fd00:10:96::a", 53, reply: "fd00:10:244:1::c"))
        XCTAssertTrue(stale(m, "fd00:10:96::a", 53, reply: "fd00:10:244:2::c"))
        // Same low 64 bits, other high half: another address.
        XCTAssertFalse(stale(m, "fd00:10:97::a", 53, reply: "fd00:10:244:2::c"))
        XCTAssertTrue(stale(m, "fd00:10:96::a", 53, reply: "fd00:10:245:1::c"))
    }

    func testMatcherReadsTheWordsTheShimHandsOver() {
        // The C shim passes IPv4 in the low 32 bits of `low`, host order: the layout of IPAddress.
        let m = dns()
        let clusterIP = StaleUDPEntryMatcher.Address(high: 0, low: 0x0A60_0035)
        XCTAssertFalse(m.isStale(clusterIP, 53, .init(high: 0, low: 0x0AF4_010C)))
        XCTAssertTrue(m.isStale(clusterIP, 53, .init(high: 0, low: 0x0AF4_0909)))
    }

    func testReconcilerDoesNotReadTheTableWhenNothingCanBeStale() {
        let report = UDPConntrackReconciler().reconcile(UDPServiceFrontends(family: .ipv4))
        XCTAssertFalse(report.scanned)
        XCTAssertEqual(report.deleted, 0)
        XCTAssertNil(report.error)
    }
}
