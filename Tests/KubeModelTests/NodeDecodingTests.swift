import Foundation
import XCTest

@testable import KubeModel

final class NodeDecodingTests: XCTestCase {
    /// A Node as a 1.31 apiserver serves it (kind cluster, trimmed of images and conditions' times).
    let wireNode = """
        {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": "node-a", "resourceVersion": "8812", "uid": "3f0c",
                      "labels": {"kubernetes.io/hostname": "node-a", "topology.kubernetes.io/zone": "eu-west-1a"},
                      "deletionTimestamp": "2026-11-22T10:00:00Z"},
         "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
                  "taints": [{"key": "ToBeDeletedByClusterAutoscaler", "value": "1732269600", "effect": "NoSchedule"},
                             {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]},
         "status": {"addresses": [{"type": "InternalIP", "address": "192.168.10.11"},
                                  {"type": "InternalIP", "address": "fd00::11"},
                                  {"type": "ExternalIP", "address": "203.0.113.7"},
                                  {"type": "Hostname", "address": "node-a"}],
                    "conditions": [{"type": "Ready", "status": "True"}]}}
        """

    func testEveryNodeFieldIsRead() throws {
        let result = ObjectDecoder.decode(json(wireNode))
        XCTAssertEqual(result.issues, [])
        let node = try XCTUnwrap(result.node)
        XCTAssertEqual(node.name, "node-a")
        XCTAssertEqual(node.resourceVersion, "8812")
        XCTAssertEqual(node.labels, ["kubernetes.io/hostname": "node-a", "topology.kubernetes.io/zone": "eu-west-1a"])
        XCTAssertEqual(node.zone, "eu-west-1a")
        XCTAssertEqual(node.deletionTimestamp, "2026-11-22T10:00:00Z")
        XCTAssertEqual(
            node.taints,
            [
                NodeTaint(key: "ToBeDeletedByClusterAutoscaler", value: "1732269600", effect: "NoSchedule"),
                NodeTaint(key: "node.kubernetes.io/unschedulable", value: "", effect: "NoSchedule"),
            ])
        XCTAssertEqual(node.podCIDRs, [CIDR("10.244.1.0/24")!, CIDR("fd00:10:244:1::/64")!])
        XCTAssertEqual(
            node.addresses,
            [
                NodeAddress(type: "InternalIP", address: ip("192.168.10.11")),
                NodeAddress(type: "InternalIP", address: ip("fd00::11")),
                NodeAddress(type: "ExternalIP", address: ip("203.0.113.7")),
            ], "the Hostname entry is a name, not an address: not read, and no issue")
    }

    func testTheSameNodeDecodesFromYAML() throws {
        let text = """
            apiVersion: v1
            kind: Node
            metadata:
              name: node-a
              resourceVersion: 8812
              labels: {topology.kubernetes.io/zone: eu-west-1a}
            spec:
              podCIDR: 10.244.1.0/24
              taints:
              - {key: ToBeDeletedByClusterAutoscaler, value: "1732269600", effect: NoSchedule}
            status:
              addresses:
              - {type: InternalIP, address: 192.168.10.11}
            """
        let result = ObjectDecoder.decode(yaml(text))
        XCTAssertEqual(result.issues, [])
        let node = try XCTUnwrap(result.node)
        XCTAssertEqual(node.resourceVersion, "8812")
        XCTAssertEqual(node.zone, "eu-west-1a")
        XCTAssertNil(node.deletionTimestamp)
        XCTAssertEqual(node.podCIDRs, [CIDR("10.244.1.0/24")!], "spec.podCIDR stands in when podCIDRs is unset")
        XCTAssertEqual(node.taints, [NodeTaint(key: "ToBeDeletedByClusterAutoscaler", value: "1732269600", effect: "NoSchedule")])
        XCTAssertEqual(node.addresses, [NodeAddress(type: "InternalIP", address: ip("192.168.10.11"))])
    }

    func testBadEntriesAreDroppedWithAnIssueNamingNodeAndField() throws {
        let result = ObjectDecoder.decode(
            json(
                """
                {"kind": "Node", "metadata": {"name": "node-b"},
                 "spec": {"podCIDRs": ["10.244.2.0/24", "10.244.2.0/33"], "taints": [{"effect": "NoSchedule"}]},
                 "status": {"addresses": [{"type": "InternalIP", "address": "192.168.10.300"},
                                          {"type": "ExternalIP", "address": " 203.0.113.8 "}]}}
                """))
        let node = try XCTUnwrap(result.node, "entry problems never reject the Node")
        XCTAssertEqual(node.podCIDRs, [CIDR("10.244.2.0/24")!])
        XCTAssertEqual(node.taints, [])
        XCTAssertEqual(node.addresses, [NodeAddress(type: "ExternalIP", address: ip("203.0.113.8"))])
        XCTAssertEqual(
            result.issues.map(\.description),
            [
                "Node node-b: spec.taints[0].key: required; taint dropped",
                "Node node-b: spec.podCIDRs[1]: not a CIDR: \"10.244.2.0/33\"; entry dropped",
                "Node node-b: status.addresses[0].address: not an IP address: \"192.168.10.300\"; entry dropped",
            ])
        XCTAssertTrue(result.issues.allSatisfy { $0.severity == .warning })
    }

    func testWrongTypesRejectTheNodeAndAMissingNameSaysSo() {
        let wrong = ObjectDecoder.decode(
            json(#"{"kind": "Node", "metadata": {"name": "node-c", "labels": {"a": 1}}, "spec": {"taints": "none"}}"#))
        XCTAssertNil(wrong.node)
        XCTAssertEqual(wrong.object, .rejected(kind: "Node", name: ObjectName(namespace: "", name: "node-c")))
        XCTAssertEqual(
            wrong.issues.map(\.description),
            [
                "Node node-c: metadata.labels[a]: expected a string, got number",
                "Node node-c: spec.taints: expected a list, got string",
            ])
        let nameless = ObjectDecoder.decode(json(#"{"kind": "Node", "metadata": {}}"#))
        XCTAssertEqual(nameless.object, .rejected(kind: "Node", name: nil))
        XCTAssertEqual(nameless.issues.map(\.description), ["Node: metadata.name: required"])
    }

    func testANodeListDecodesItsItemsAsNodes() {
        let results = ObjectDecoder.decodeDocument(
            jsonDocument(
                #"{"kind": "NodeList", "apiVersion": "v1", "items": [{"metadata": {"name": "n1"}}, {"metadata": {"name": "n2"}}]}"#
            ))
        XCTAssertEqual(results.compactMap(\.node).map(\.name), ["n1", "n2"])
        let other = ObjectDecoder.decode(json(#"{"kind": "Node", "apiVersion": "v2", "metadata": {"name": "n"}}"#))
        XCTAssertEqual(other.object, .ignored(kind: "Node"))
    }
}
