import Foundation
import XCTest

@testable import KubeModel

final class YAMLTreeTests: XCTestCase {
    func testScalarsBecomeTheValuesJSONWouldGive() throws {
        let documents = YAMLTree.documents(
            """
            int: 80
            quoted: "80"
            bool: true
            float: 1.5
            null1: null
            null2: ~
            time: 2024-01-02T03:04:05Z
            text: hello
            list: [1, two]
            """)
        XCTAssertEqual(documents.count, 1)
        XCTAssertEqual(
            try documents[0].result.get(),
            [
                "int": .int(80), "quoted": "80", "bool": true, "float": .double(1.5), "null1": .null, "null2": .null,
                "time": "2024-01-02T03:04:05Z", "text": "hello", "list": [1, "two"],
            ])
    }

    func testYAMLSpellingsOfNumbersAndBooleans() throws {
        let documents = YAMLTree.documents(
            """
            hex: 0x1F
            octal: 0o17
            exp: 1e3
            whole: 80.0
            upper: TRUE
            inf: .inf
            """)
        let tree = try documents[0].result.get()
        XCTAssertEqual(tree["hex"], .int(31))
        XCTAssertEqual(tree["octal"], .int(15))
        XCTAssertEqual(tree["whole"], .double(80))
        XCTAssertEqual(tree["whole"]?.integerValue, 80)
        XCTAssertEqual(tree["upper"], .bool(true))
        XCTAssertEqual(tree["inf"], .double(.infinity))
        XCTAssertEqual(tree["exp"]?.typeName, "number")
    }

    func testRepeatedKeyMakesTheDocumentMalformed() {
        // Yams refuses the document; JSON (parsed by JSONTree) takes the last value instead.
        let documents = YAMLTree.documents("a: 1\nb: 2\na: 3\n")
        XCTAssertThrowsError(try documents[0].result.get()) {
            XCTAssertTrue("\($0)".contains("duplicated key"), "\($0)")
        }
    }

    func testMultiDocumentStreamSkipsEmptyDocuments() {
        let documents = YAMLTree.documents(
            """
            ---
            a: 1
            ---
            # only a comment
            ---
            b: 2
            ...
            --- {c: 3}
            """)
        XCTAssertEqual(documents.map(\.index), [1, 2, 3])
        XCTAssertEqual(documents.map(\.line), [2, 6, 8])
        XCTAssertEqual(
            documents.compactMap { try? $0.result.get() }, [["a": 1], ["b": 2], ["c": 3]])
    }

    func testMalformedDocumentDoesNotHideTheOthers() {
        let documents = YAMLTree.documents(
            """
            a: 1
            ---
            b: [unclosed
            c: 2
            ---
            d: 4
            """)
        XCTAssertEqual(documents.count, 3)
        XCTAssertNotNil(try? documents[0].result.get())
        XCTAssertNotNil(try? documents[2].result.get())
        guard case .failure(let error) = documents[1].result else { return XCTFail("document 2 should fail") }
        XCTAssertEqual(error.line, 4)
        XCTAssertTrue(error.description.hasPrefix("malformed YAML at line 4: "), error.description)
    }

    func testAnchorsAndAliasesAreResolved() throws {
        let tree = try YAMLTree.documents(
            """
            base: &p {port: 80}
            ports: [*p]
            """)[0].result.get()
        XCTAssertEqual(tree["ports"], [["port": 80]])
    }

    func testCRLFLineEndingsAndSeparators() {
        let documents = YAMLTree.documents("a: 1\r\n---\r\nb: 2\r\n")
        XCTAssertEqual(documents.count, 2)
    }
}
