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

final class DottedQuadTests: XCTestCase {
    /// The byte-level IPv4 reader must accept exactly what inet_pton(AF_INET) accepts, with the same value.
    func testAgreesWithInetPton() {
        var cases = [
            "0.0.0.0", "255.255.255.255", "10.0.0.1", "1.2.3.4", "01.2.3.4", "1.2.3.04", "1.2.3.0", "1.2.3",
            "1.2.3.4.5", "256.1.1.1", "1.1.1.256", "1..1.1", ".1.1.1", "1.1.1.", "1.1.1.1 ", " 1.1.1.1", "",
            "1000.1.1.1", "1.2.3.4a", "a.b.c.d", "00.0.0.0", "0.00.0.0", "192.168.001.1", "fd00::1", "::ffff:1.2.3.4",
            "1.2.3.-4", "+1.2.3.4", "999.999.999.999", "255.255.255.2550",
        ]
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789..0125")
        for _ in 0..<20000 {
            let n = Int.random(in: 1...16, using: &rng)
            cases.append(String((0..<n).map { _ in alphabet.randomElement(using: &rng)! }))
        }
        for s in cases {
            var a = in_addr()
            let pton = inet_pton(AF_INET, s, &a) == 1 ? UInt32(bigEndian: a.s_addr) : nil
            XCTAssertEqual(IPAddress.parseDottedQuad(s.utf8), pton, "\"\(s)\"")
            if let v = pton {
                XCTAssertEqual(IPAddress(s)?.description, IPAddress(bytes: withUnsafeBytes(of: v.bigEndian) { Array($0) })?.description)
            }
        }
    }
}
