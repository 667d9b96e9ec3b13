import Foundation
import XCTest

@testable import KubeModel

final class ServiceDecodingTests: XCTestCase {
    func testEveryServiceFieldIsRead() throws {
        let result = ObjectDecoder.decode(
            json(
                """
                {"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "web", "namespace": "ns1", "resourceVersion": "4711",
                              "labels": {"app": "web", "service.kubernetes.io/service-proxy-name": "other"}},
                 "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                          "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080},
                                    {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": "dns", "nodePort": 30053},
                                    {"name": "sctp", "protocol": "SCTP", "port": 9999}],
                          "externalIPs": ["192.0.2.1", "192.0.2.2"],
                          "loadBalancerSourceRanges": ["203.0.113.0/24", " 198.51.100.0/24 "],
                          "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local",
                          "healthCheckNodePort": 32000,
                          "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}},
                 "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}, {"ip": "198.51.100.8", "ipMode": "VIP"}]}}}
                """))
        XCTAssertEqual(result.issues, [])
        let s = try XCTUnwrap(result.service)
        XCTAssertEqual(s.name, ObjectName(namespace: "ns1", name: "web"))
        XCTAssertEqual(s.resourceVersion, "4711")
        XCTAssertEqual(s.labels, ["app": "web", "service.kubernetes.io/service-proxy-name": "other"])
        XCTAssertEqual(s.type, .loadBalancer)
        XCTAssertEqual(s.clusterIPs, [ip("10.96.0.10")])
        XCTAssertFalse(s.isHeadless)
        XCTAssertEqual(
            s.ports,
            [
                ServicePort(name: "http", protocol: .tcp, port: 80, targetPort: .int(8080), nodePort: 30080),
                ServicePort(name: "dns", protocol: .udp, port: 53, targetPort: .string("dns"), nodePort: 30053),
                ServicePort(name: "sctp", protocol: .sctp, port: 9999),
            ])
        XCTAssertEqual(s.externalIPs, [ip("192.0.2.1"), ip("192.0.2.2")])
        XCTAssertEqual(s.loadBalancerSourceRanges, [cidr("203.0.113.0/24"), cidr("198.51.100.0/24")])
        XCTAssertEqual(s.externalTrafficPolicy, .local)
        XCTAssertEqual(s.internalTrafficPolicy, .local)
        XCTAssertEqual(s.healthCheckNodePort, 32000)
        XCTAssertEqual(s.sessionAffinityTimeout, 600)
        XCTAssertEqual(s.loadBalancerIngressIPs, [ip("198.51.100.7"), ip("198.51.100.8")])
    }

    func testDefaultsForAMinimalService() throws {
        let result = ObjectDecoder.decode(
            json(
                #"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}"#
            ))
        XCTAssertEqual(result.issues, [])
        let s = try XCTUnwrap(result.service)
        XCTAssertEqual(s.name, ObjectName(namespace: "default", name: "web"))
        XCTAssertEqual(s.resourceVersion, "")
        XCTAssertEqual(s.labels, [:])
        XCTAssertEqual(s.type, .clusterIP)
        XCTAssertEqual(s.clusterIPs, [])
        XCTAssertFalse(s.isHeadless)
        XCTAssertEqual(s.ports, [ServicePort(name: "", protocol: .tcp, port: 80, targetPort: nil, nodePort: 0)])
        XCTAssertEqual(s.externalTrafficPolicy, .cluster)
        XCTAssertEqual(s.internalTrafficPolicy, .cluster)
        XCTAssertEqual(s.healthCheckNodePort, 0)
        XCTAssertNil(s.sessionAffinityTimeout)
        XCTAssertEqual(s.externalIPs, [])
        XCTAssertEqual(s.loadBalancerIngressIPs, [])
        XCTAssertEqual(s.loadBalancerSourceRanges, [])
    }

    func testEmptyNamespaceAndEmptyEnumsTakeDefaults() throws {
        let s = try XCTUnwrap(
            ObjectDecoder.decode(
                json(
                    """
                    {"kind": "Service", "metadata": {"name": "web", "namespace": ""},
                     "spec": {"type": "", "clusterIP": "", "externalTrafficPolicy": "", "sessionAffinity": "None",
                              "ports": [{"port": 80, "protocol": ""}]}}
                    """)
            ).service)
        XCTAssertEqual(s.name.namespace, "default")
        XCTAssertEqual(s.type, .clusterIP)
        XCTAssertEqual(s.clusterIPs, [])
        XCTAssertEqual(s.ports[0].protocol, .tcp)
        XCTAssertNil(s.sessionAffinityTimeout)
    }

    func testClientIPAffinityDefaultsTo10800Seconds() throws {
        let s = try XCTUnwrap(ObjectDecoder.decode(serviceJSON(spec: #""sessionAffinity": "ClientIP""#)).service)
        XCTAssertEqual(s.sessionAffinityTimeout, 10800)
    }

    func testClusterIPNoneIsHeadless() throws {
        let s = try XCTUnwrap(
            ObjectDecoder.decode(
                json(
                    #"{"kind": "Service", "metadata": {"name": "db"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}"#
                )
            ).service)
        XCTAssertTrue(s.isHeadless)
        XCTAssertEqual(s.clusterIPs, [])
    }

    func testClusterIPNoneWithoutClusterIPsIsHeadless() throws {
        let s = try XCTUnwrap(
            ObjectDecoder.decode(
                json(#"{"kind": "Service", "metadata": {"name": "db"}, "spec": {"clusterIP": "None"}}"#)
            )
            .service)
        XCTAssertTrue(s.isHeadless)
    }

    func testDualStackClusterIPsKeepTheirOrder() throws {
        let s = try XCTUnwrap(
            ObjectDecoder.decode(
                serviceJSON(spec: #""clusterIPs": ["fd00:10:96::a", "10.96.0.10"], "ipFamilies": ["IPv6", "IPv4"]"#)
            ).service)
        XCTAssertEqual(s.clusterIPs, [ip("fd00:10:96::a"), ip("10.96.0.10")])
    }

    func testClusterIPsWinOverAMismatchedClusterIP() throws {
        let result = ObjectDecoder.decode(serviceJSON(spec: #""clusterIPs": ["10.96.0.11"]"#))
        XCTAssertEqual(result.service?.clusterIPs, [ip("10.96.0.11")])
        XCTAssertEqual(
            lines(result),
            [
                #"Service ns1/web: spec.clusterIP: "10.96.0.10" differs from spec.clusterIPs[0] "10.96.0.11"; using spec.clusterIPs"#
            ])
    }

    func testIPv6Service() throws {
        let result = ObjectDecoder.decode(
            json(
                """
                {"kind": "Service", "metadata": {"name": "web6", "namespace": "ns6"},
                 "spec": {"type": "LoadBalancer", "clusterIP": "fd00:10:96::1", "ports": [{"port": 443, "nodePort": 31443}],
                          "externalIPs": ["2001:db8::1"], "loadBalancerSourceRanges": ["2001:db8:1::/48"]},
                 "status": {"loadBalancer": {"ingress": [{"ip": "2001:db8:2::5"}]}}}
                """))
        XCTAssertEqual(result.issues, [])
        let s = try XCTUnwrap(result.service)
        XCTAssertEqual(s.clusterIPs, [ip("fd00:10:96::1")])
        XCTAssertEqual(s.externalIPs, [ip("2001:db8::1")])
        XCTAssertEqual(s.loadBalancerSourceRanges, [cidr("2001:db8:1::/48")])
        XCTAssertEqual(s.loadBalancerIngressIPs, [ip("2001:db8:2::5")])
    }

    func testIngressWithIPModeProxyOrOnlyAHostnameIsSkipped() throws {
        let result = ObjectDecoder.decode(
            serviceJSON(
                spec: #""type": "LoadBalancer""#,
                status: """
                    "loadBalancer": {"ingress": [{"ip": "198.51.100.1", "ipMode": "Proxy"},
                                                 {"hostname": "lb.example.com"},
                                                 {"ip": "198.51.100.2"}]}
                    """))
        XCTAssertEqual(result.issues, [])
        XCTAssertEqual(result.service?.loadBalancerIngressIPs, [ip("198.51.100.2")])
    }

    func testTargetPortNumberWrittenAsStringIsANumber() throws {
        let s = try XCTUnwrap(
            ObjectDecoder.decode(serviceJSON(spec: #""ports": [{"port": 80, "targetPort": "8080"}]"#)).service)
        XCTAssertEqual(s.ports[0].targetPort, .int(8080))
    }

    func testTopologyModeAndTrafficDistribution() throws {
        let result = ObjectDecoder.decode(
            json(
                """
                {"kind": "Service",
                 "metadata": {"name": "web", "namespace": "ns1",
                              "annotations": {"service.kubernetes.io/topology-aware-hints": "auto"}},
                 "spec": {"trafficDistribution": "PreferClose"}}
                """))
        XCTAssertEqual(result.issues, [])
        XCTAssertEqual(result.service?.topologyMode, "auto")
        XCTAssertEqual(result.service?.trafficDistribution, "PreferClose")

        let current = ObjectDecoder.decode(
            json(
                """
                {"kind": "Service",
                 "metadata": {"name": "web", "annotations": {"service.kubernetes.io/topology-mode": "Auto",
                                                              "service.kubernetes.io/topology-aware-hints": "disabled"}}}
                """))
        XCTAssertEqual(current.service?.topologyMode, "Auto")
        XCTAssertNil(current.service?.trafficDistribution)
    }

    func testHugePortNumberDoesNotWrap() {
        let result = ObjectDecoder.decode(serviceJSON(spec: #""ports": [{"port": 18446744073709551615}]"#))
        XCTAssertNil(result.service)
        XCTAssertEqual(result.issues.map(\.fieldPath), ["spec.ports[0].port"])
        XCTAssertFalse(result.issues[0].message.contains("-"), result.issues[0].message)
    }

    // MARK: - Rejections

    func testPortZeroRejectsTheService() {
        let result = ObjectDecoder.decode(
            serviceJSON(spec: #""ports": [{"name": "a", "port": 80}, {"name": "b", "port": 0}]"#))
        XCTAssertEqual(result.object, .rejected(kind: "Service", name: ObjectName(namespace: "ns1", name: "web")))
        XCTAssertEqual(lines(result), ["Service ns1/web: spec.ports[1].port: must be 1-65535, got 0"])
        XCTAssertEqual(result.issues[0].severity, .error)
        XCTAssertEqual(result.issues[0].kind, "Service")
        XCTAssertEqual(result.issues[0].object, ObjectName(namespace: "ns1", name: "web"))
        XCTAssertEqual(result.issues[0].fieldPath, "spec.ports[1].port")
        XCTAssertEqual(result.issues[0].message, "must be 1-65535, got 0")
    }

    func testPortAbove65535RejectsTheService() {
        let result = ObjectDecoder.decode(serviceJSON(spec: #""ports": [{"port": 65536}]"#))
        XCTAssertNil(result.service)
        XCTAssertEqual(lines(result), ["Service ns1/web: spec.ports[0].port: must be 1-65535, got 65536"])
    }

    func testMissingPortRejectsTheService() {
        let result = ObjectDecoder.decode(serviceJSON(spec: #""ports": [{"name": "http"}]"#))
        XCTAssertNil(result.service)
        XCTAssertEqual(lines(result), ["Service ns1/web: spec.ports[0].port: required"])
    }

    func testUnknownProtocolRejectsTheService() {
        let result = ObjectDecoder.decode(serviceJSON(spec: #""ports": [{"port": 80, "protocol": "tcp"}]"#))
        XCTAssertNil(result.service)
        XCTAssertEqual(
            lines(result), [#"Service ns1/web: spec.ports[0].protocol: must be one of TCP, UDP, SCTP, got "tcp""#])
    }

    func testNodePortOutOfRangeRejectsTheService() {
        let result = ObjectDecoder.decode(
            serviceJSON(spec: #""type": "NodePort", "ports": [{"port": 80, "nodePort": 70000}]"#))
        XCTAssertNil(result.service)
        XCTAssertEqual(lines(result), ["Service ns1/web: spec.ports[0].nodePort: must be 1-65535, got 70000"])
    }

    func testClusterIPThatIsNotAnIPRejectsTheService() {
        let result = ObjectDecoder.decode(
            json(
                #"{"kind": "Service", "metadata": {"name": "web", "namespace": "ns1"}, "spec": {"clusterIP": "10.96.0.300"}}"#
            ))
        XCTAssertNil(result.service)
        XCTAssertEqual(lines(result), [#"Service ns1/web: spec.clusterIP: not an IP address: "10.96.0.300""#])
    }

    func testBadSecondClusterIPRejectsTheService() {
        let result = ObjectDecoder.decode(serviceJSON(spec: #""clusterIPs": ["10.96.0.10", "fd00::zz"]"#))
        XCTAssertNil(result.service)
        XCTAssertEqual(lines(result), [#"Service ns1/web: spec.clusterIPs[1]: not an IP address: "fd00::zz""#])
    }

    func testUnknownTypeRejectsTheService() {
        let result = ObjectDecoder.decode(serviceJSON(spec: #""type": "Nodeport""#))
        XCTAssertNil(result.service)
        XCTAssertEqual(
            lines(result),
            [
                #"Service ns1/web: spec.type: must be one of ClusterIP, NodePort, LoadBalancer, ExternalName, got "Nodeport""#
            ])
    }

    func testTrafficPolicyOtherThanClusterOrLocalRejectsTheService() {
        let result = ObjectDecoder.decode(
            serviceJSON(spec: #""externalTrafficPolicy": "OnlyLocal", "internalTrafficPolicy": "local""#))
        XCTAssertNil(result.service)
        XCTAssertEqual(
            lines(result),
            [
                #"Service ns1/web: spec.externalTrafficPolicy: must be Cluster or Local, got "OnlyLocal""#,
                #"Service ns1/web: spec.internalTrafficPolicy: must be Cluster or Local, got "local""#,
            ])
    }

    func testAffinityTimeoutOutOfRangeRejectsTheService() {
        let result = ObjectDecoder.decode(
            serviceJSON(
                spec: #""sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}"#))
        XCTAssertNil(result.service)
        XCTAssertEqual(
            lines(result),
            ["Service ns1/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be 1-86400, got 0"])
    }

    func testUnknownSessionAffinityRejectsTheService() {
        let result = ObjectDecoder.decode(serviceJSON(spec: #""sessionAffinity": "Cookie""#))
        XCTAssertNil(result.service)
        XCTAssertEqual(
            lines(result), [#"Service ns1/web: spec.sessionAffinity: must be None or ClientIP, got "Cookie""#])
    }

    func testHealthCheckNodePortOutOfRangeRejectsTheService() {
        let result = ObjectDecoder.decode(serviceJSON(spec: #""healthCheckNodePort": -1"#))
        XCTAssertNil(result.service)
        XCTAssertEqual(lines(result), ["Service ns1/web: spec.healthCheckNodePort: must be 1-65535, got -1"])
    }

    func testMissingNameRejectsTheObject() {
        let result = ObjectDecoder.decode(json(#"{"kind": "Service", "metadata": {"namespace": "ns1"}, "spec": {}}"#))
        XCTAssertEqual(result.object, .rejected(kind: "Service", name: nil))
        XCTAssertEqual(lines(result), ["Service: metadata.name: required"])
    }

    func testMissingKindRejectsTheObject() {
        let result = ObjectDecoder.decode(json(#"{"metadata": {"name": "web"}}"#))
        XCTAssertEqual(result.object, .rejected(kind: "", name: nil))
        XCTAssertEqual(lines(result), ["kind: required"])
    }

    func testEveryErrorIsReportedNotOnlyTheFirst() {
        let result = ObjectDecoder.decode(
            serviceJSON(spec: #""ports": [{"port": 0}, {"port": 80, "protocol": "ICMP"}], "type": "Weird""#))
        XCTAssertEqual(result.issues.count, 3)
        XCTAssertTrue(result.issues.allSatisfy { $0.severity == .error })
    }

    // MARK: - Dropped entries

    func testBadSourceRangeIsDroppedAndTheRestKept() throws {
        let result = ObjectDecoder.decode(
            serviceJSON(
                spec: #""loadBalancerSourceRanges": ["10.0.0.0/8", "10.0.0.0/33", " 192.168.0.0/16\t", "nonsense"]"#))
        let s = try XCTUnwrap(result.service)
        XCTAssertEqual(s.loadBalancerSourceRanges, [cidr("10.0.0.0/8"), cidr("192.168.0.0/16")])
        XCTAssertEqual(
            lines(result),
            [
                #"Service ns1/web: spec.loadBalancerSourceRanges[1]: not a CIDR: "10.0.0.0/33"; entry dropped"#,
                #"Service ns1/web: spec.loadBalancerSourceRanges[3]: not a CIDR: "nonsense"; entry dropped"#,
            ])
        XCTAssertTrue(result.issues.allSatisfy { $0.severity == .warning })
    }

    func testBadExternalIPIsDropped() throws {
        let result = ObjectDecoder.decode(serviceJSON(spec: #""externalIPs": ["192.0.2.300", "192.0.2.1"]"#))
        XCTAssertEqual(result.service?.externalIPs, [ip("192.0.2.1")])
        XCTAssertEqual(
            lines(result), [#"Service ns1/web: spec.externalIPs[0]: not an IP address: "192.0.2.300"; entry dropped"#])
    }

    func testBadIngressIPIsDropped() throws {
        let result = ObjectDecoder.decode(
            serviceJSON(status: #""loadBalancer": {"ingress": [{"ip": "lb"}, {"ip": "198.51.100.3"}]}"#))
        XCTAssertEqual(result.service?.loadBalancerIngressIPs, [ip("198.51.100.3")])
        XCTAssertEqual(
            lines(result),
            [#"Service ns1/web: status.loadBalancer.ingress[0].ip: not an IP address: "lb"; entry dropped"#])
    }

    func testRepeatedPortNameIsDropped() throws {
        let result = ObjectDecoder.decode(
            serviceJSON(spec: #""ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]"#))
        XCTAssertEqual(result.service?.ports.map(\.port), [80])
        XCTAssertEqual(
            lines(result), [#"Service ns1/web: spec.ports[1]: port name "http" repeats spec.ports[0]; entry dropped"#])
    }

    func testBadTargetPortIsOnlyAWarning() throws {
        let result = ObjectDecoder.decode(serviceJSON(spec: #""ports": [{"port": 80, "targetPort": 70000}]"#))
        XCTAssertEqual(result.service?.ports[0].targetPort, nil)
        XCTAssertEqual(
            lines(result), ["Service ns1/web: spec.ports[0].targetPort: must be 1-65535, got 70000; ignored"])
    }

    // MARK: - Wrong JSON types

    func testStringWhereAListIsExpected() {
        let result = ObjectDecoder.decode(serviceJSON(spec: #""externalIPs": "192.0.2.1""#))
        XCTAssertNil(result.service)
        XCTAssertEqual(lines(result), ["Service ns1/web: spec.externalIPs: expected a list, got string"])
    }

    func testPortsNotAListRejects() {
        let result = ObjectDecoder.decode(
            json(
                #"{"kind": "Service", "metadata": {"name": "web", "namespace": "ns1"}, "spec": {"ports": {"port": 80}}}"#
            ))
        XCTAssertEqual(lines(result), ["Service ns1/web: spec.ports: expected a list, got object"])
    }

    func testPortAsStringOrBooleanOrFraction() {
        let result = ObjectDecoder.decode(
            serviceJSON(
                spec:
                    #""ports": [{"name": "a", "port": "80"}, {"name": "b", "port": true}, {"name": "c", "port": 80.5}]"#
            ))
        XCTAssertNil(result.service)
        XCTAssertEqual(
            lines(result),
            [
                "Service ns1/web: spec.ports[0].port: expected an integer, got string",
                "Service ns1/web: spec.ports[1].port: expected an integer, got boolean",
                "Service ns1/web: spec.ports[2].port: expected an integer, got 80.5",
            ])
    }

    func testSpecNotAnObject() {
        let result = ObjectDecoder.decode(json(#"{"kind": "Service", "metadata": {"name": "web"}, "spec": []}"#))
        XCTAssertEqual(lines(result), ["Service default/web: spec: expected an object, got list"])
    }

    func testMetadataNotAnObject() {
        let result = ObjectDecoder.decode(json(#"{"kind": "Service", "metadata": "web"}"#))
        XCTAssertEqual(
            lines(result), ["Service: metadata: expected an object, got string", "Service: metadata.name: required"])
    }

    func testLabelValueNotAString() {
        let result = ObjectDecoder.decode(
            json(
                #"{"kind": "Service", "metadata": {"name": "web", "namespace": "ns1", "labels": {"v": 2}}, "spec": {}}"#
            ))
        XCTAssertNil(result.service)
        XCTAssertEqual(lines(result), ["Service ns1/web: metadata.labels[v]: expected a string, got number"])
    }

    func testNullFieldsMeanUnset() throws {
        let s = try XCTUnwrap(
            ObjectDecoder.decode(
                json(
                    #"{"kind": "Service", "metadata": {"name": "web", "labels": null}, "spec": {"ports": null, "externalIPs": null, "type": null}, "status": null}"#
                )
            ).service)
        XCTAssertEqual(s.ports, [])
        XCTAssertEqual(s.type, .clusterIP)
    }

    func testYAMLScalarsDecodeLikeJSON() throws {
        let result = ObjectDecoder.decode(
            yaml(
                """
                apiVersion: v1
                kind: Service
                metadata:
                  name: web
                  namespace: ns1
                  resourceVersion: 12
                  creationTimestamp: 2024-01-02T03:04:05Z
                  labels:
                    app: web
                spec:
                  clusterIP: 10.96.0.10
                  ports:
                  - port: 80
                    targetPort: http
                    nodePort: ~
                  sessionAffinity: ClientIP
                  sessionAffinityConfig:
                    clientIP:
                      timeoutSeconds: 60
                """))
        XCTAssertEqual(result.issues, [])
        let s = try XCTUnwrap(result.service)
        XCTAssertEqual(s.resourceVersion, "12")
        XCTAssertEqual(s.ports, [ServicePort(port: 80, targetPort: .string("http"))])
        XCTAssertEqual(s.sessionAffinityTimeout, 60)
    }

    func testYAMLPortWrittenAsBooleanIsRejected() {
        let result = ObjectDecoder.decode(
            yaml(
                """
                kind: Service
                metadata: {name: web, namespace: ns1}
                spec:
                  ports:
                  - port: yes
                """))
        XCTAssertEqual(lines(result), ["Service ns1/web: spec.ports[0].port: expected an integer, got boolean"])
    }

    func testKubectlShapedServiceWithManagedFields() throws {
        let result = ObjectDecoder.decode(
            json(
                """
                {
                  "apiVersion": "v1",
                  "kind": "Service",
                  "metadata": {
                    "annotations": {
                      "kubectl.kubernetes.io/last-applied-configuration": "{\\"apiVersion\\":\\"v1\\",\\"kind\\":\\"Service\\"}\\n"
                    },
                    "creationTimestamp": "2024-05-01T10:00:00Z",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                    "managedFields": [
                      {"apiVersion": "v1", "fieldsType": "FieldsV1",
                       "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:component": {}}},
                                    "f:spec": {"f:ports": {"k:{\\"port\\":443,\\"protocol\\":\\"TCP\\"}": {".": {}}}}},
                       "manager": "kube-apiserver", "operation": "Update", "time": "2024-05-01T10:00:00Z"}
                    ],
                    "name": "kubernetes",
                    "namespace": "default",
                    "resourceVersion": "197",
                    "uid": "0c6a4e6c-6a4c-4b9b-9c1e-3b7c2d1f0a11"
                  },
                  "spec": {
                    "clusterIP": "10.96.0.1",
                    "clusterIPs": ["10.96.0.1"],
                    "internalTrafficPolicy": "Cluster",
                    "ipFamilies": ["IPv4"],
                    "ipFamilyPolicy": "SingleStack",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                    "sessionAffinity": "None",
                    "type": "ClusterIP"
                  },
                  "status": {"loadBalancer": {}}
                }
                """))
        XCTAssertEqual(result.issues, [])
        let s = try XCTUnwrap(result.service)
        XCTAssertEqual(s.name, ObjectName(namespace: "default", name: "kubernetes"))
        XCTAssertEqual(s.resourceVersion, "197")
        XCTAssertEqual(s.ports, [ServicePort(name: "https", port: 443, targetPort: .int(6443))])
        XCTAssertEqual(s.clusterIPs, [ip("10.96.0.1")])
    }
}
