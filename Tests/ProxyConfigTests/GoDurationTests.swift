import XCTest

@testable import ProxyConfig

final class GoDurationTests: XCTestCase {
    func testParsesGoSyntax() {
        let cases: [(String, Int64)] = [
            ("0", 0), ("0s", 0), ("30s", 30_000_000_000), ("1m0s", 60_000_000_000), ("15m", 900_000_000_000),
            ("1h2m3.5s", 3_723_500_000_000), ("500ms", 500_000_000), ("1.5s", 1_500_000_000),
            ("10us", 10_000), ("10\u{00B5}s", 10_000), ("10\u{03BC}s", 10_000), ("7ns", 7), ("-1s", -1_000_000_000),
            ("+2s", 2_000_000_000), (".5s", 500_000_000), ("1.s", 1_000_000_000), ("24h0m0s", 86_400_000_000_000),
        ]
        for (text, ns) in cases {
            XCTAssertEqual(GoDuration(parsing: text)?.nanoseconds, ns, text)
        }
    }

    func testRejectsWhatGoRejects() {
        for text in ["", "abc", "30", "1x", "s", "-", ".s", "1h 2m", "99999999999999999999h"] {
            XCTAssertNil(GoDuration(parsing: text), text)
        }
    }

    func testPrintsAsGoDoes() {
        let cases: [(Int64, String)] = [
            (0, "0s"), (30_000_000_000, "30s"), (900_000_000_000, "15m0s"), (86_400_000_000_000, "24h0m0s"),
            (3_600_000_000_000, "1h0m0s"), (3_723_500_000_000, "1h2m3.5s"), (500_000_000, "500ms"),
            (1_500_000_000, "1.5s"), (1_500, "1.5\u{00B5}s"), (7, "7ns"), (-1_000_000_000, "-1s"),
            (60_000_000_000, "1m0s"),
        ]
        for (ns, text) in cases {
            XCTAssertEqual(GoDuration(nanoseconds: ns).description, text)
        }
    }

    func testPrintedFormParsesBack() {
        for ns: Int64 in [1, 999, 1_000, 1_234_567, 59_999_999_999, 3_601_000_000_001] {
            let d = GoDuration(nanoseconds: ns)
            XCTAssertEqual(GoDuration(parsing: d.description), d, d.description)
        }
    }

    func testConvertsToSecondsAndSwiftDuration() {
        XCTAssertEqual(GoDuration.milliseconds(1500).seconds, 1.5)
        XCTAssertEqual(GoDuration.seconds(30).duration, .seconds(30))
    }
}
