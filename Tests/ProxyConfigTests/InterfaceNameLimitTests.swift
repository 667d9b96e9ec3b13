import XCTest

@testable import ProxyConfig

/// detectLocal's interface names end up as `-i NAME` / `-i PREFIX+` in rules; iptables stores them in IFNAMSIZ (16)
/// bytes with the NUL, so a longer one is refused with the configuration, not left to every sync.
final class InterfaceNameLimitTests: XCTestCase {
    private func problems(_ extra: String) -> [String] {
        do {
            _ = try KubeProxyConfiguration.parse(Fixtures.minimal(extra))
            return []
        } catch {
            return ((error as Error) as? ConfigurationError)?.problems.map(\.description) ?? ["\(error)"]
        }
    }

    func testABridgeInterfaceOfSixteenBytesIsRefusedAndFifteenTaken() {
        let fifteen = String(repeating: "b", count: 15)
        XCTAssertEqual(problems("detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: \(fifteen)"), [])
        XCTAssertEqual(
            problems("detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: \(fifteen)x"),
            ["detectLocal.bridgeInterface: must be at most 15 bytes (IFNAMSIZ), got \"\(fifteen)x\""])
    }

    func testAnInterfacePrefixLeavesRoomForThePlus() {
        let fourteen = String(repeating: "v", count: 14)
        XCTAssertEqual(problems("detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: \(fourteen)"), [])
        XCTAssertEqual(
            problems("detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: \(fourteen)v"),
            ["detectLocal.interfaceNamePrefix: must be at most 14 bytes (IFNAMSIZ, with the '+' the rules add), got \"\(fourteen)v\""])
    }

    func testAnotherModeIgnoresTheNames() {
        let long = String(repeating: "x", count: 40)
        XCTAssertEqual(problems("detectLocalMode: ClusterCIDR\nclusterCIDR: 10.0.0.0/8\ndetectLocal:\n  bridgeInterface: \(long)"), [])
    }
}
