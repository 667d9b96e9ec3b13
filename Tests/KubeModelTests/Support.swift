import Foundation
import XCTest

@testable import KubeModel

/// Parses JSON text the way the manifest reader and the apiserver watcher do (`JSONTree`).
func json(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> JSONObject {
    do {
        guard case .object(let object) = try JSONTree.parse(Data(text.utf8)) else {
            XCTFail("not an object", file: file, line: line)
            return [:]
        }
        return object
    } catch {
        XCTFail("bad JSON in test: \(error)", file: file, line: line)
        return [:]
    }
}

/// Parses a JSON document of any shape.
func jsonDocument(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> JSONValue {
    do {
        return try JSONTree.parse(Data(text.utf8))
    } catch {
        XCTFail("bad JSON in test: \(error)", file: file, line: line)
        return .null
    }
}

/// Parses one YAML document the way the manifest reader does.
func yaml(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> JSONObject {
    let documents = YAMLTree.documents(text)
    guard documents.count == 1, case .success(.object(let object)) = documents[0].result else {
        XCTFail("expected one YAML object, got \(documents)", file: file, line: line)
        return [:]
    }
    return object
}

func ip(_ text: String) -> IPAddress { IPAddress(text)! }

func cidr(_ text: String) -> CIDR { CIDR(text)! }

/// The issues' descriptions, the form an operator reads.
func lines(_ result: DecodeResult) -> [String] { result.issues.map(\.description) }

/// A Service JSON object with `spec` fields spliced in.
func serviceJSON(spec: String = "", status: String = "", name: String = "web", namespace: String = "ns1")
    -> JSONObject
{
    let specBody = spec.isEmpty ? "" : ", \(spec)"
    let statusPart = status.isEmpty ? "" : ", \"status\": {\(status)}"
    return json(
        """
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "\(name)", "namespace": "\(namespace)"},
         "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]\(specBody)}\(statusPart)}
        """)
}
