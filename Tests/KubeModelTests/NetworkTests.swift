import XCTest

@testable import KubeModel

final class NetworkTests: XCTestCase {
    func testJoinedPortWritesHostPortAsGoJoinHostPort() {
        XCTAssertEqual(IPAddress("10.0.0.1")!.joined(port: 80), "10.0.0.1:80")
        XCTAssertEqual(IPAddress("0.0.0.0")!.joined(port: 0), "0.0.0.0:0")
        XCTAssertEqual(IPAddress("255.255.255.255")!.joined(port: 65535), "255.255.255.255:65535")
        XCTAssertEqual(IPAddress("203.0.113.40")!.joined(port: 9), "203.0.113.40:9")
        XCTAssertEqual(IPAddress("198.51.100.7")!.joined(port: 10000), "198.51.100.7:10000")
        XCTAssertEqual(IPAddress("fd00::1")!.joined(port: 8080), "[fd00::1]:8080")
        // Out of range ports are not rejected here (validation is elsewhere); they are written as Go would.
        XCTAssertEqual(IPAddress("10.0.0.1")!.joined(port: -1), "10.0.0.1:-1")
        XCTAssertEqual(IPAddress("10.0.0.1")!.joined(port: 70000), "10.0.0.1:70000")
    }

    func testJoinedPortMatchesDescriptionForEveryPortWidth() {
        let ip = IPAddress("10.128.7.99")!
        for port in [1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 12345, 65535] {
            XCTAssertEqual(ip.joined(port: port), ip.description + ":" + String(port))
        }
    }
}
