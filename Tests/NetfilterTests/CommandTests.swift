import XCTest

@testable import Netfilter

final class CommandTests: XCTestCase {
    func testCollectsStdoutStderrAndStatus() throws {
        let o = try Command.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        XCTAssertEqual(o.stdout, "out\n")
        XCTAssertEqual(o.stderr, "err\n")
        XCTAssertEqual(o.status, 3)
    }

    func testLargeInputRoundTripsWithoutDeadlock() throws {
        // Larger than any pipe buffer in both directions at once.
        let input = [UInt8]((0..<(4 << 20)).map { UInt8(ascii: "a") + UInt8($0 % 26) })
        let o = try Command.run(["cat"], input: input)
        XCTAssertEqual(o.status, 0)
        XCTAssertEqual(Array(o.stdout.utf8), input)
    }

    func testAChildThatIgnoresStdinDoesNotKillTheCaller() throws {
        let o = try Command.run(["true"], input: [UInt8](repeating: 0x41, count: 1 << 20))
        XCTAssertEqual(o.status, 0)
    }

    func testSignalledChildReportsShellStyleStatus() throws {
        XCTAssertEqual(try Command.run(["sh", "-c", "kill -9 $$"]).status, 137)
    }

    func testMissingToolIsANonZeroStatus() throws {
        XCTAssertEqual(try Command.run(["kube-natd-no-such-tool"]).status, 127)
    }
}
