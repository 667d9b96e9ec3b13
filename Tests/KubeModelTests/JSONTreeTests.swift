import Foundation
import XCTest

@testable import KubeModel

final class JSONTreeTests: XCTestCase {
    private func parse(_ text: String) throws -> JSONValue { try JSONTree.parse(Data(text.utf8)) }

    func testValuesAndTheirCases() throws {
        let v = try parse(#"{"s":"x","i":-42,"d":1.5,"e":1e3,"t":true,"f":false,"n":null,"l":[1,"a",[]],"o":{}}"#)
        XCTAssertEqual(
            v,
            [
                "s": "x", "i": -42, "d": 1.5, "e": 1000.0, "t": true, "f": false, "n": .null, "l": [1, "a", []],
                "o": [:],
            ])
        XCTAssertEqual(v["i"], .int(-42))
        XCTAssertEqual(v["e"], .double(1000))
        XCTAssertEqual(v["n"], .null)
        XCTAssertNil(v["missing"])
    }

    func testIntegersThatFitAreIntsEverythingElseDoubles() throws {
        XCTAssertEqual(
            try parse("[9223372036854775807, -9223372036854775808, 9223372036854775808, -0, 80.0, 8e1, 0]"),
            [.int(.max), .int(.min), .double(9_223_372_036_854_775_808), .int(0), .double(80), .double(80), .int(0)])
    }

    func testIntegralDoublesReadAsIntegersButRenderAsNumbers() throws {
        XCTAssertEqual(try parse("80.0").integerValue, 80)
        XCTAssertNil(try parse("80.5").integerValue)
        XCTAssertNil(try parse("true").integerValue)
        XCTAssertEqual(try parse("80.5").rendered, "80.5")
        XCTAssertEqual(try parse("\"80\"").rendered, "\"80\"")
        XCTAssertEqual(try parse("1e300").rendered, NSNumber(value: 1e300).description)
    }

    func testEscapesAndUnicode() throws {
        let s = try parse(#""a\"b\\c\/d\n\t\u00e9\ud83d\ude00 é""#)
        XCTAssertEqual(s, .string("a\"b\\c/d\n\té😀 é"))
    }

    func testWhitespaceAroundAndEmptyContainers() throws {
        XCTAssertEqual(try parse(" \n\t[ ]\r\n"), [])
        XCTAssertEqual(try parse("{ }"), [:])
    }

    func testRepeatedKeyMeansItsLastValueAsInADictionary() throws {
        let o = try XCTUnwrap(try parse(#"{"a": 1, "b": 2, "a": "x"}"#).objectValue)
        XCTAssertEqual(o["a"], "x")
        XCTAssertEqual(o.count, 2)
        var seen: [String] = []
        o.forEach { key, value in seen.append("\(key)=\(value.rendered)") }
        XCTAssertEqual(seen, ["b=2", "a=\"x\""])
        XCTAssertEqual(o, ["b": 2, "a": "x"])
    }

    func testKeysSpelledWithEscapesOrLongOrNonASCIIReadTheSameAsPlainOnes() throws {
        let long = String(repeating: "k", count: 60)
        let v = try parse(
            #"[{"name": 1, "\#(long)": 1}, {"name": 2, "\#(long)": 2}, {"n\u0061me": 3}, {"námé": 4, "": 5}, {"nam": 6}, {"Aa": 7, "BB": 8}]"#
        )
        // "Aa" and "BB" hash alike.
        XCTAssertEqual(
            v,
            [
                ["name": 1, long: 1], ["name": 2, long: 2], ["name": 3], ["námé": 4, "": 5], ["nam": 6],
                ["Aa": 7, "BB": 8],
            ])
    }

    func testObjectsCompareWithoutRegardToKeyOrder() throws {
        XCTAssertEqual(try parse(#"{"a": 1, "b": [true]}"#), try parse(#"{"b": [true], "a": 1}"#))
        XCTAssertNotEqual(try parse(#"{"a": 1}"#), try parse(#"{"a": 1.0}"#))
    }

    func testStreamedListItemsComeWithTheKeysReadBeforeThem() throws {
        var seen: [(JSONValue, Int, String?)] = []
        let (tree, streamed) = try JSONTree.parse(Data(#"{"kind": "List", "items": [{"a": 1}, 2], "x": {}}"#.utf8)) {
            item, index, top in seen.append((item, index, top["kind"]?.stringValue))
        }
        XCTAssertTrue(streamed)
        XCTAssertEqual(tree, ["kind": "List", "x": [:]])
        XCTAssertEqual(seen.map(\.0), [["a": 1], 2])
        XCTAssertEqual(seen.map(\.1), [0, 1])
        XCTAssertEqual(seen.map(\.2), ["List", "List"])
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

    func testAManifest() throws {
        let text =
            #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default","labels":{"a":"b"}},"spec":{"clusterIP":"10.96.0.10","ports":[{"port":80,"targetPort":8080,"protocol":"TCP"}],"sessionAffinity":"None"}}"#
        XCTAssertEqual(
            try parse(text),
            [
                "apiVersion": "v1", "kind": "Service",
                "metadata": ["name": "web", "namespace": "default", "labels": ["a": "b"]],
                "spec": [
                    "clusterIP": "10.96.0.10", "ports": [["port": 80, "targetPort": 8080, "protocol": "TCP"]],
                    "sessionAffinity": "None",
                ],
            ])
    }
}
