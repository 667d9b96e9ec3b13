import Foundation
import XCTest

@testable import KubeModel

final class YAMLTreeTests: XCTestCase {
    func testScalarsBecomeTheTypesJSONSerializationWouldGive() throws {
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
        let tree = try XCTUnwrap(try documents[0].result.get() as? [String: Any])
        XCTAssertEqual(tree["int"] as? Int, 80)
        XCTAssertTrue(type(of: tree["int"]!) == Int.self)
        XCTAssertEqual(tree["quoted"] as? String, "80")
        XCTAssertTrue(type(of: tree["bool"]!) == Bool.self)
        XCTAssertEqual(tree["float"] as? Double, 1.5)
        XCTAssertTrue(tree["null1"] is NSNull)
        XCTAssertTrue(tree["null2"] is NSNull)
        XCTAssertEqual(tree["time"] as? String, "2024-01-02T03:04:05Z")
        XCTAssertEqual(tree["text"] as? String, "hello")
        let list = try XCTUnwrap(tree["list"] as? [Any])
        XCTAssertEqual(list[0] as? Int, 1)
        XCTAssertEqual(list[1] as? String, "two")
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
            documents.compactMap { (try? $0.result.get()) as? [String: Int] }, [["a": 1], ["b": 2], ["c": 3]])
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
        let tree = try XCTUnwrap(
            try YAMLTree.documents(
                """
                base: &p {port: 80}
                ports: [*p]
                """)[0].result.get() as? [String: Any])
        let ports = try XCTUnwrap(tree["ports"] as? [[String: Any]])
        XCTAssertEqual(ports[0]["port"] as? Int, 80)
    }

    func testCRLFLineEndingsAndSeparators() {
        let documents = YAMLTree.documents("a: 1\r\n---\r\nb: 2\r\n")
        XCTAssertEqual(documents.count, 2)
    }
}
