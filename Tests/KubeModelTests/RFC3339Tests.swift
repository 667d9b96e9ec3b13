import Foundation
import XCTest

@testable import KubeModel

final class RFC3339Tests: XCTestCase {
    func testWholeSeconds() {
        XCTAssertEqual(RFC3339.parse("2026-11-22T10:00:00Z")?.timeIntervalSince1970, 1_795_341_600)
    }

    func testNanosecondFractionAsTheEndpointSliceControllerWritesIt() throws {
        let d = try XCTUnwrap(RFC3339.parse("2026-11-22T10:00:00.123456789Z"))
        XCTAssertEqual(d.timeIntervalSince1970, 1_795_341_600.123456789, accuracy: 1e-6)
        let ms = try XCTUnwrap(RFC3339.parse("2026-11-22T10:00:00.5Z"))
        XCTAssertEqual(ms.timeIntervalSince1970, 1_795_341_600.5, accuracy: 1e-9)
    }

    func testOffsets() {
        XCTAssertEqual(RFC3339.parse("2026-11-22T12:30:00+02:30")?.timeIntervalSince1970, 1_795_341_600)
        XCTAssertEqual(RFC3339.parse("2026-11-22T08:00:00-02:00")?.timeIntervalSince1970, 1_795_341_600)
    }

    func testRejectsMalformed() {
        for bad in ["", "2026-11-22", "2026-11-22T10:00:00", "2026-11-22T10:00:00.Z", "2026-13-22T10:00:00Z",
                    "2026-11-22T10:00:00Zjunk", "2026-11-22 10:00:00Z", "2026-11-22T25:00:00Z", "2026-11-22T10:00:00+0200"] {
            XCTAssertNil(RFC3339.parse(bad), bad)
        }
    }
}
