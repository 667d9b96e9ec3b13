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
    /// kube-proxy reads Service and endpoint addresses with `netutils.ParseIPSloppy` (Go's pre-1.17 ParseIP):
    /// octets with leading zeros are decimal. The reference here is inet_pton (strict) on the text with each
    /// octet's leading zeros removed.
    func testAgreesWithInetPtonOnOctetsWithLeadingZerosReadAsDecimal() {
        var cases = [
            "0.0.0.0", "255.255.255.255", "10.0.0.1", "1.2.3.4", "01.2.3.4", "1.2.3.04", "1.2.3.0", "1.2.3",
            "1.2.3.4.5", "256.1.1.1", "1.1.1.256", "1..1.1", ".1.1.1", "1.1.1.", "1.1.1.1 ", " 1.1.1.1", "",
            "1000.1.1.1", "1.2.3.4a", "a.b.c.d", "00.0.0.0", "0.00.0.0", "192.168.001.1", "fd00::1", "::ffff:1.2.3.4",
            "1.2.3.-4", "+1.2.3.4", "999.999.999.999", "255.255.255.2550", "0000255.1.1.1", "0256.1.1.1",
        ]
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789..0125")
        for _ in 0..<20000 {
            let n = Int.random(in: 1...16, using: &rng)
            cases.append(String((0..<n).map { _ in alphabet.randomElement(using: &rng)! }))
        }
        for s in cases {
            let expected = Self.sloppyReference(s)
            XCTAssertEqual(IPAddress.parseDottedQuad(s.utf8), expected, "\"\(s)\"")
            if let v = expected {
                XCTAssertEqual(IPAddress(s)?.description, IPAddress(bytes: withUnsafeBytes(of: v.bigEndian) { Array($0) })?.description)
            }
        }
    }

    func testLeadingZerosAreDecimalAsUpstreamTestBadIPs() {
        XCTAssertEqual(IPAddress("172.30.0.041")?.description, "172.30.0.41")
        XCTAssertEqual(IPAddress("192.168.099.022")?.description, "192.168.99.22")
        XCTAssertEqual(CIDR("203.0.113.000/025")?.description, "203.0.113.0/25")
        XCTAssertNil(IPAddress("1.2.3.0400"))
    }

    private static func sloppyReference(_ s: String) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0 >= "0" && $0 <= "9" } }) else {
            return nil
        }
        let stripped = parts.map { p -> String in
            let t = p.drop(while: { $0 == "0" })
            return t.isEmpty ? "0" : String(t)
        }.joined(separator: ".")
        var a = in_addr()
        return inet_pton(AF_INET, stripped, &a) == 1 ? UInt32(bigEndian: a.s_addr) : nil
    }
}
