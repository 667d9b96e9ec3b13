import Foundation
import KubeModel
import KubeSource
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// Broken objects are reported with file, object and field, and leave every other Service's rules intact.
final class BadInputTests: XCTestCase {
    let good = """
        apiVersion: v1
        kind: Service
        metadata: {name: good, namespace: ns1}
        spec:
          clusterIP: 172.30.0.41
          ports: [{name: p80, port: 80}]
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: good-1, namespace: ns1, labels: {kubernetes.io/service-name: good}}
        addressType: IPv4
        ports: [{name: p80, port: 80}]
        endpoints: [{addresses: [10.180.0.1]}, {addresses: [10.180.0.2]}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: lb, namespace: ns1}
        spec:
          type: LoadBalancer
          clusterIP: 172.30.0.42
          ports: [{name: p80, port: 80, nodePort: 30080}]
          loadBalancerSourceRanges: [203.0.113.0/25]
        status: {loadBalancer: {ingress: [{ip: 1.2.3.4}]}}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: lb-1, namespace: ns1, labels: {kubernetes.io/service-name: lb}}
        addressType: IPv4
        ports: [{name: p80, port: 80}]
        endpoints: [{addresses: [10.180.0.3]}]

        """

    func compile(_ yaml: String) -> (String, [DecodeIssue]) {
        let load = ManifestSource.decode(data: Data(yaml.utf8), source: "cluster.yaml")
        let rs = RuleCompiler(settings: Fixture.settings(nfacct: false)).compile(load.clusterState)
        return (TextRenderer.render(rs), load.issues)
    }

    func assertSkipped(_ bad: String, message: String, file: StaticString = #filePath, line: UInt = #line) {
        let (expected, cleanIssues) = compile(good)
        XCTAssertEqual(cleanIssues, [], file: file, line: line)
        let (actual, issues) = compile(good + "---\n" + bad)
        XCTAssertEqual(actual, expected, "the good Services' rules must be unchanged", file: file, line: line)
        XCTAssertTrue(issues.contains { $0.description.contains(message) },
                      "expected an issue containing \(message), got \(issues.map(\.description))", file: file, line: line)
    }

    func testClusterIPThatIsNotAnIPRejectsTheService() {
        assertSkipped("""
            apiVersion: v1
            kind: Service
            metadata: {name: bad, namespace: ns2}
            spec: {clusterIP: 300.1.2.3, ports: [{port: 80}]}
            """, message: "Service ns2/bad: spec.clusterIP")
    }

    func testPortZeroAndPortTooLargeRejectTheService() {
        assertSkipped("""
            apiVersion: v1
            kind: Service
            metadata: {name: zero, namespace: ns2}
            spec: {clusterIP: 172.30.0.99, ports: [{name: a, port: 81}, {name: b, port: 0}]}
            """, message: "Service ns2/zero: spec.ports[1].port: must be 1-65535, got 0")
        assertSkipped("""
            apiVersion: v1
            kind: Service
            metadata: {name: big, namespace: ns2}
            spec: {clusterIP: 172.30.0.99, ports: [{port: 70000}]}
            """, message: "Service ns2/big: spec.ports[0].port: must be 1-65535, got 70000")
    }

    func testUnknownProtocolRejectsTheService() {
        assertSkipped("""
            apiVersion: v1
            kind: Service
            metadata: {name: proto, namespace: ns2}
            spec: {clusterIP: 172.30.0.99, ports: [{port: 80, protocol: ICMP}]}
            """, message: "Service ns2/proto: spec.ports[0].protocol")
    }

    func testBadSourceRangeDropsOnlyThatRange() {
        let (_, issues) = compile(good.replacingOccurrences(of: "[203.0.113.0/25]", with: "[203.0.113.0/25, not-a-cidr]"))
        XCTAssertTrue(issues.contains { $0.description.contains("Service ns1/lb: spec.loadBalancerSourceRanges[1]") },
                      "\(issues.map(\.description))")
        XCTAssertEqual(compile(good.replacingOccurrences(of: "[203.0.113.0/25]", with: "[203.0.113.0/25, not-a-cidr]")).0,
                       compile(good).0)
    }

    func testEndpointOfTheWrongFamilyIsDropped() {
        let (text, issues) = compile(good.replacingOccurrences(of: "{addresses: [10.180.0.2]}", with: "{addresses: [\"fd00::2\"]}"))
        XCTAssertTrue(issues.contains { $0.description.contains("EndpointSlice ns1/good-1: endpoints[1].addresses[0]") },
                      "\(issues.map(\.description))")
        XCTAssertTrue(text.contains("10.180.0.1:80"))
        XCTAssertFalse(text.contains("fd00::2"))
    }

    func testMalformedYAMLDocumentLeavesTheOthers() {
        assertSkipped("apiVersion: v1\nkind: Service\nmetadata: {name: broken\n  spec: [", message: "cluster.yaml")
    }
}
