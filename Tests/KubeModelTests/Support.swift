import Foundation
import XCTest

@testable import KubeModel

/// Parses JSON text the way the apiserver watcher will (JSONSerialization, NSNumber numbers).
func json(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [String: Any] {
    do {
        let tree = try JSONSerialization.jsonObject(with: Data(text.utf8))
        guard let object = tree as? [String: Any] else {
            XCTFail("not an object", file: file, line: line)
            return [:]
        }
        return object
    } catch {
        XCTFail("bad JSON in test: \(error)", file: file, line: line)
        return [:]
    }
}

/// Parses one YAML document the way the manifest reader does.
func yaml(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [String: Any] {
    let documents = YAMLTree.documents(text)
    guard documents.count == 1, case .success(let tree) = documents[0].result,
        let object = tree as? [String: Any]
    else {
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
func serviceJSON(spec: String = "", status: String = "", name: String = "web", namespace: String = "ns1") -> [String:
    Any]
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
