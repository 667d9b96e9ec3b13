import Foundation
import XCTest

@testable import KubeModel

final class JSONTreeTests: XCTestCase {
    private func parse(_ text: String) throws -> Any { try JSONTree.parse(Data(text.utf8)) }

    func testValuesAndTheirSwiftTypes() throws {
        let v = try XCTUnwrap(
            try parse(#"{"s":"x","i":-42,"d":1.5,"e":1e3,"t":true,"f":false,"n":null,"l":[1,"a",[]],"o":{}}"#)
                as? [String: Any])
        XCTAssertEqual(v["s"] as? String, "x")
        XCTAssertTrue(type(of: v["i"]!) == Int.self)
        XCTAssertEqual(v["i"] as? Int, -42)
        XCTAssertEqual(v["d"] as? Double, 1.5)
        XCTAssertEqual(v["e"] as? Double, 1000)
        XCTAssertTrue(type(of: v["t"]!) == Bool.self)
        XCTAssertEqual(v["f"] as? Bool, false)
        XCTAssertTrue(v["n"]! is NSNull)
        XCTAssertEqual((v["l"] as? [Any])?.count, 3)
        XCTAssertEqual((v["o"] as? [String: Any])?.count, 0)
    }

    func testIntegersPastIntAreDoubles() throws {
        let v = try XCTUnwrap(try parse("[9223372036854775807, 9223372036854775808]") as? [Any])
        XCTAssertEqual(v[0] as? Int, Int.max)
        XCTAssertTrue(type(of: v[1]) == Double.self)
    }

    func testEscapesAndUnicode() throws {
        let s = try parse(#""a\"b\\c\/d\n\t\u00e9\ud83d\ude00 é""#) as? String
        XCTAssertEqual(s, "a\"b\\c/d\n\té😀 é")
    }

    func testWhitespaceAroundAndEmptyContainers() throws {
        XCTAssertEqual((try parse(" \n\t[ ]\r\n") as? [Any])?.count, 0)
        XCTAssertEqual((try parse("{ }") as? [String: Any])?.count, 0)
    }

    func testErrorsSayWhatAndWhere() {
        let cases: [(String, String)] = [
            ("", "unexpected end of text at line 1, column 1"),
            ("{\"a\":1,}", "expected a string key at line 1, column 8"),
            ("[1 2]", "expected ',' or ']' in a list at line 1, column 4"),
            ("{\"a\" 1}", "expected ':' after a key at line 1, column 6"),
            ("\"abc", "unterminated string at line 1, column 5"),
            ("[01]", "expected ',' or ']' in a list at line 1, column 3"),
            ("[1.]", "invalid number at line 1, column 4"),
            ("tru", "invalid literal at line 1, column 1"),
            ("{}\n x", "unexpected data after the JSON value at line 2, column 2"),
            ("\"\\ud800\"", "unpaired surrogate in \\u escape at line 1, column 8"),
            ("\"a\nb\"", "control character in a string at line 1, column 3"),
            ("[\"\\q\"]", "invalid escape '\\q' at line 1, column 5"),
        ]
        for (text, want) in cases {
            XCTAssertThrowsError(try parse(text), text) { XCTAssertEqual("\($0)", want, text) }
        }
    }

    func testInvalidUTF8IsRefused() {
        XCTAssertThrowsError(try JSONTree.parse(Data([0x22, 0xFF, 0x22])))
    }

    func testDeepNestingIsRefusedNotACrash() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        XCTAssertThrowsError(try parse(deep)) { XCTAssertTrue("\($0)".hasPrefix("nested deeper than 256 levels")) }
    }

    func testSameTreeAsJSONSerializationForAManifest() throws {
        let text = #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default","labels":{"a":"b"}},"spec":{"clusterIP":"10.96.0.10","ports":[{"port":80,"targetPort":8080,"protocol":"TCP"}],"sessionAffinity":"None"}}"#
        let mine = try XCTUnwrap(try parse(text) as? [String: Any])
        let theirs = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        XCTAssertEqual(NSDictionary(dictionary: mine), NSDictionary(dictionary: theirs))
    }
}
