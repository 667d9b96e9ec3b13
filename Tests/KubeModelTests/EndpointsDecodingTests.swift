import Foundation
import XCTest

@testable import KubeModel

final class EndpointSliceDecodingTests: XCTestCase {
    private func sliceJSON(
        addressType: String = "IPv4", endpoints: String, ports: String = #"[{"name": "http", "port": 8080}]"#
    ) -> JSONObject {
        json(
            """
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "web-abc12", "namespace": "ns1", "labels": {"kubernetes.io/service-name": "web"}},
             "addressType": "\(addressType)", "endpoints": \(endpoints), "ports": \(ports)}
            """)
    }

    func testEveryEndpointSliceFieldIsRead() throws {
        let result = ObjectDecoder.decode(
            json(
                """
                {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"name": "web-abc12", "namespace": "ns1", "resourceVersion": "99",
                              "labels": {"kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                              "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2024-05-01T10:00:00Z"}},
                 "addressType": "IPv4",
                 "endpoints": [
                   {"addresses": ["10.244.1.5"], "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": "node-a", "zone": "zone-1", "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "ns1"}},
                   {"addresses": ["10.244.2.6", "10.244.2.7"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                   {"addresses": ["10.244.3.8"]}
                 ],
                 "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"},
                           {"port": 9000}, {"name": "", "protocol": "SCTP"}]}
                """))
        XCTAssertEqual(result.issues, [])
        let slice = try XCTUnwrap(result.slice)
        guard case .endpointSlice = result.object else { return XCTFail("expected an EndpointSlice") }
        XCTAssertEqual(slice.name, ObjectName(namespace: "ns1", name: "web-abc12"))
        XCTAssertEqual(slice.serviceName, "web")
        XCTAssertEqual(slice.service, ObjectName(namespace: "ns1", name: "web"))
        XCTAssertEqual(slice.resourceVersion, "99")
        XCTAssertEqual(slice.addressType, .ipv4)
        XCTAssertEqual(slice.lastChangeTriggerTime, "2024-05-01T10:00:00Z")
        XCTAssertFalse(slice.fromEndpoints)
        XCTAssertEqual(
            slice.endpoints,
            [
                Endpoint(
                    addresses: [ip("10.244.1.5")],
                    conditions: EndpointConditions(ready: true, serving: true, terminating: false),
                    nodeName: "node-a", zone: "zone-1"),
                Endpoint(
                    addresses: [ip("10.244.2.6"), ip("10.244.2.7")],
                    conditions: EndpointConditions(ready: false, serving: true, terminating: true)),
                Endpoint(addresses: [ip("10.244.3.8")], conditions: EndpointConditions()),
            ])
        XCTAssertEqual(
            slice.ports,
            [
                EndpointPort(name: "http", port: 8080, protocol: .tcp),
                EndpointPort(name: "dns", port: 53, protocol: .udp),
                EndpointPort(name: nil, port: 9000, protocol: .tcp),
                EndpointPort(name: "", port: nil, protocol: .sctp),
            ])
    }

    func testTopologyHintsAreRead() throws {
        let result = ObjectDecoder.decode(
            sliceJSON(
                endpoints: """
                    [{"addresses": ["10.244.1.5"], "zone": "zone-a",
                      "hints": {"forZones": [{"name": "zone-a"}, {"name": "zone-b"}], "forNodes": [{"name": "node-a"}]}}]
                    """))
        XCTAssertEqual(result.issues, [])
        let endpoint = try XCTUnwrap(result.slice?.endpoints.first)
        XCTAssertEqual(endpoint.zoneHints, ["zone-a", "zone-b"])
        XCTAssertEqual(endpoint.nodeHints, ["node-a"])
    }

    func testIPv6Slice() throws {
        let result = ObjectDecoder.decode(
            sliceJSON(addressType: "IPv6", endpoints: #"[{"addresses": ["fd00:10:244::5"], "nodeName": "node-a"}]"#))
        XCTAssertEqual(result.issues, [])
        let slice = try XCTUnwrap(result.slice)
        XCTAssertEqual(slice.addressType, .ipv6)
        XCTAssertEqual(slice.endpoints.first?.addresses, [ip("fd00:10:244::5")])
    }

    func testFQDNSliceHasNoAddressTypeAndNoAddresses() throws {
        let result = ObjectDecoder.decode(
            sliceJSON(addressType: "FQDN", endpoints: #"[{"addresses": ["db.example.com"]}]"#))
        XCTAssertEqual(result.issues, [])
        let slice = try XCTUnwrap(result.slice)
        XCTAssertNil(slice.addressType)
        XCTAssertEqual(slice.endpoints.map(\.addresses), [[]])
    }

    func testMissingServiceNameLabelRejectsTheSlice() {
        let result = ObjectDecoder.decode(
            json(
                #"{"kind": "EndpointSlice", "metadata": {"name": "orphan", "namespace": "ns1"}, "addressType": "IPv4", "endpoints": []}"#
            ))
        XCTAssertEqual(
            result.object, .rejected(kind: "EndpointSlice", name: ObjectName(namespace: "ns1", name: "orphan")))
        XCTAssertEqual(
            lines(result), ["EndpointSlice ns1/orphan: metadata.labels[kubernetes.io/service-name]: required"])
    }

    func testUnknownOrMissingAddressTypeRejectsTheSlice() {
        let unknown = ObjectDecoder.decode(sliceJSON(addressType: "IPv5", endpoints: "[]"))
        XCTAssertEqual(
            lines(unknown), [#"EndpointSlice ns1/web-abc12: addressType: must be one of IPv4, IPv6, FQDN, got "IPv5""#])
        let missing = ObjectDecoder.decode(
            json(
                #"{"kind": "EndpointSlice", "metadata": {"name": "s", "namespace": "ns1", "labels": {"kubernetes.io/service-name": "web"}}}"#
            ))
        XCTAssertEqual(lines(missing), ["EndpointSlice ns1/s: addressType: required"])
    }

    func testEndpointWhoseAddressIsNotAnIPIsDropped() throws {
        let result = ObjectDecoder.decode(
            sliceJSON(endpoints: #"[{"addresses": ["10.244.1.300"]}, {"addresses": ["10.244.1.6"]}]"#))
        let slice = try XCTUnwrap(result.slice)
        XCTAssertEqual(slice.endpoints.map(\.addresses), [[ip("10.244.1.6")]])
        XCTAssertEqual(
            lines(result),
            [
                #"EndpointSlice ns1/web-abc12: endpoints[0].addresses[0]: not an IP address: "10.244.1.300"; endpoint dropped"#
            ])
        XCTAssertEqual(result.issues[0].severity, .warning)
    }

    func testEndpointOfTheWrongFamilyIsDropped() throws {
        let result = ObjectDecoder.decode(
            sliceJSON(endpoints: #"[{"addresses": ["10.244.1.5"]}, {"addresses": ["fd00::6"]}]"#))
        XCTAssertEqual(result.slice?.endpoints.map(\.addresses), [[ip("10.244.1.5")]])
        XCTAssertEqual(
            lines(result),
            [
                "EndpointSlice ns1/web-abc12: endpoints[1].addresses[0]: fd00::6 is not IPv4 as the slice's addressType; endpoint dropped"
            ])
    }

    func testBadSecondAddressDropsOnlyThatAddress() throws {
        let result = ObjectDecoder.decode(sliceJSON(endpoints: #"[{"addresses": ["10.244.1.5", "x"]}]"#))
        XCTAssertEqual(result.slice?.endpoints.map(\.addresses), [[ip("10.244.1.5")]])
        XCTAssertEqual(
            lines(result),
            [#"EndpointSlice ns1/web-abc12: endpoints[0].addresses[1]: not an IP address: "x"; address dropped"#])
    }

    func testEndpointWithoutAddressesIsDropped() throws {
        let result = ObjectDecoder.decode(sliceJSON(endpoints: #"[{"addresses": []}, {"nodeName": "n"}]"#))
        XCTAssertEqual(result.slice?.endpoints, [])
        XCTAssertEqual(
            lines(result),
            [
                "EndpointSlice ns1/web-abc12: endpoints[0].addresses: empty; endpoint dropped",
                "EndpointSlice ns1/web-abc12: endpoints[1].addresses: required; endpoint dropped",
            ])
    }

    func testPortOutOfRangeOrUnknownProtocolIsDropped() throws {
        let result = ObjectDecoder.decode(
            sliceJSON(
                endpoints: #"[{"addresses": ["10.244.1.5"]}]"#,
                ports:
                    #"[{"name": "a", "port": 0}, {"name": "b", "port": 80, "protocol": "ICMP"}, {"name": "c", "port": 81}]"#
            ))
        XCTAssertEqual(result.slice?.ports, [EndpointPort(name: "c", port: 81)])
        XCTAssertEqual(
            lines(result),
            [
                "EndpointSlice ns1/web-abc12: ports[0].port: must be 1-65535, got 0; port dropped",
                #"EndpointSlice ns1/web-abc12: ports[1].protocol: must be one of TCP, UDP, SCTP, got "ICMP"; port dropped"#,
            ])
    }

    func testWrongTypesRejectTheSlice() {
        let result = ObjectDecoder.decode(
            sliceJSON(endpoints: #"[{"addresses": "10.244.1.5", "conditions": {"ready": "true"}}]"#, ports: "{}"))
        XCTAssertNil(result.slice)
        XCTAssertEqual(
            lines(result),
            [
                "EndpointSlice ns1/web-abc12: endpoints[0].addresses: expected a list, got string",
                "EndpointSlice ns1/web-abc12: endpoints[0].conditions.ready: expected a boolean, got string",
                "EndpointSlice ns1/web-abc12: ports: expected a list, got object",
            ])
    }

    func testNumericConditionIsNotABoolean() {
        let result = ObjectDecoder.decode(
            sliceJSON(endpoints: #"[{"addresses": ["10.244.1.5"], "conditions": {"ready": 1}}]"#))
        XCTAssertEqual(
            lines(result),
            ["EndpointSlice ns1/web-abc12: endpoints[0].conditions.ready: expected a boolean, got number"])
    }

    func testV1beta1SliceIsIgnoredWithAWarning() {
        var object = sliceJSON(endpoints: "[]")
        object["apiVersion"] = "discovery.k8s.io/v1beta1"
        let result = ObjectDecoder.decode(object)
        XCTAssertEqual(result.object, .ignored(kind: "EndpointSlice"))
        XCTAssertEqual(
            lines(result),
            ["EndpointSlice ns1/web-abc12: apiVersion: unsupported apiVersion discovery.k8s.io/v1beta1, object ignored"]
        )
    }

    func testOtherKindsAreIgnored() {
        XCTAssertEqual(
            ObjectDecoder.decode(json(#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}"#)),
            DecodeResult(object: .ignored(kind: "Pod")))
    }
}

final class EndpointsConversionTests: XCTestCase {
    func testEndpointsBecomeOneSliceNamedLikeTheService() throws {
        let result = ObjectDecoder.decode(
            json(
                """
                {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": "web", "namespace": "ns1", "resourceVersion": "7",
                              "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2024-05-01T10:00:00Z"}},
                 "subsets": [{
                   "addresses": [{"ip": "10.244.1.5", "nodeName": "node-a", "targetRef": {"kind": "Pod", "name": "web-1"}},
                                 {"ip": "10.244.2.6", "hostname": "web-2"}],
                   "notReadyAddresses": [{"ip": "10.244.3.7", "nodeName": "node-c"}],
                   "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]
                 }]}
                """))
        XCTAssertEqual(result.issues, [])
        guard case .endpoints(let slice) = result.object else { return XCTFail("expected converted Endpoints") }
        XCTAssertEqual(
            slice,
            EndpointSlice(
                name: ObjectName(namespace: "ns1", name: "web"), serviceName: "web", resourceVersion: "7",
                addressType: .ipv4,
                endpoints: [
                    Endpoint(
                        addresses: [ip("10.244.1.5")], conditions: EndpointConditions(ready: true), nodeName: "node-a"),
                    Endpoint(addresses: [ip("10.244.2.6")], conditions: EndpointConditions(ready: true)),
                    Endpoint(
                        addresses: [ip("10.244.3.7")], conditions: EndpointConditions(ready: false), nodeName: "node-c"),
                ],
                ports: [
                    EndpointPort(name: "http", port: 8080, protocol: .tcp),
                    EndpointPort(name: "dns", port: 53, protocol: .udp),
                ],
                lastChangeTriggerTime: "2024-05-01T10:00:00Z", fromEndpoints: true))
    }

    func testSubsetsWithTheSamePortsAreMerged() throws {
        let result = ObjectDecoder.decode(
            json(
                """
                {"kind": "Endpoints", "metadata": {"name": "web", "namespace": "ns1"},
                 "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
                             {"notReadyAddresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80, "protocol": "TCP"}]}]}
                """))
        XCTAssertEqual(result.issues, [])
        XCTAssertEqual(result.slice?.endpoints.map(\.addresses), [[ip("10.0.0.1")], [ip("10.0.0.2")]])
        XCTAssertEqual(result.slice?.ports, [EndpointPort(name: nil, port: 80)])
    }

    func testSubsetWithDifferentPortsIsDroppedWithAWarning() throws {
        let result = ObjectDecoder.decode(
            json(
                """
                {"kind": "Endpoints", "metadata": {"name": "web", "namespace": "ns1"},
                 "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
                             {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 8080}]}]}
                """))
        XCTAssertEqual(result.slice?.endpoints.map(\.addresses), [[ip("10.0.0.1")]])
        XCTAssertEqual(
            lines(result),
            [
                "Endpoints ns1/web: subsets[1].ports: differ from subsets[0].ports; kube-natd converts an Endpoints to a single slice, subset dropped (use EndpointSlices)"
            ])
    }

    func testIPv6EndpointsAndMixedFamilies() throws {
        let result = ObjectDecoder.decode(
            json(
                """
                {"kind": "Endpoints", "metadata": {"name": "web", "namespace": "ns1"},
                 "subsets": [{"addresses": [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}, {"ip": "bogus"}, {"ip": "fd00::2"}],
                              "ports": [{"port": 80}]}]}
                """))
        let slice = try XCTUnwrap(result.slice)
        XCTAssertEqual(slice.addressType, .ipv6)
        XCTAssertEqual(slice.endpoints.map(\.addresses), [[ip("fd00::1")], [ip("fd00::2")]])
        XCTAssertEqual(
            lines(result),
            [
                "Endpoints ns1/web: subsets[0].addresses[1].ip: 10.0.0.1 is not IPv6 like the first address; address dropped",
                #"Endpoints ns1/web: subsets[0].addresses[2].ip: not an IP address: "bogus"; address dropped"#,
            ])
    }

    func testEndpointsWithoutSubsetsIsAnEmptySlice() throws {
        let result = ObjectDecoder.decode(
            json(#"{"kind": "Endpoints", "metadata": {"name": "web", "namespace": "ns1"}}"#))
        let slice = try XCTUnwrap(result.slice)
        XCTAssertEqual(slice.endpoints, [])
        XCTAssertEqual(slice.ports, [])
        XCTAssertTrue(slice.fromEndpoints)
    }

    func testEndpointsPortOutOfRangeIsDropped() throws {
        let result = ObjectDecoder.decode(
            json(
                #"{"kind": "Endpoints", "metadata": {"name": "web", "namespace": "ns1"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 99999}, {"port": 80}]}]}"#
            ))
        XCTAssertEqual(result.slice?.ports, [EndpointPort(name: nil, port: 80)])
        XCTAssertEqual(
            lines(result), ["Endpoints ns1/web: subsets[0].ports[0].port: must be 1-65535, got 99999; port dropped"])
    }

    func testEndpointsWithWrongTypesIsRejected() {
        let result = ObjectDecoder.decode(
            json(
                #"{"kind": "Endpoints", "metadata": {"name": "web", "namespace": "ns1"}, "subsets": [{"addresses": [{"ip": 10}]}]}"#
            ))
        XCTAssertEqual(result.object, .rejected(kind: "Endpoints", name: ObjectName(namespace: "ns1", name: "web")))
        XCTAssertEqual(lines(result), ["Endpoints ns1/web: subsets[0].addresses[0].ip: expected a string, got number"])
    }
}

final class DocumentDecodingTests: XCTestCase {
    func testServiceListItemsWithoutKindTakeItFromTheList() {
        let results = ObjectDecoder.decodeDocument(
            jsonDocument(
                """
                {"apiVersion": "v1", "kind": "ServiceList", "metadata": {"resourceVersion": "100"},
                 "items": [{"metadata": {"name": "a", "namespace": "ns1"}, "spec": {"clusterIP": "10.96.0.1"}},
                           {"metadata": {"name": "b", "namespace": "ns1"}, "spec": {"clusterIP": "10.96.0.2"}}]}
                """))
        XCTAssertEqual(results.compactMap(\.service).map(\.name.name), ["a", "b"])
    }

    func testKubectlListMixesKinds() {
        let results = ObjectDecoder.decodeDocument(
            jsonDocument(
                """
                {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
                 "items": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {}},
                           {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                            "metadata": {"name": "a-1", "labels": {"kubernetes.io/service-name": "a"}}},
                           {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "a"}},
                           {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
                           "junk"]}
                """))
        XCTAssertEqual(results.count, 5)
        XCTAssertNotNil(results[0].service)
        if case .endpointSlice = results[1].object {} else { XCTFail("expected a slice, got \(results[1].object)") }
        if case .endpoints = results[2].object {} else { XCTFail("expected Endpoints, got \(results[2].object)") }
        XCTAssertEqual(results[3].object, .ignored(kind: "ConfigMap"))
        XCTAssertEqual(lines(results[4]), ["List: items[4]: expected an object, got string"])
    }

    func testDecodeJSONBytes() {
        let results = ObjectDecoder.decodeJSON(
            Data(#"{"kind": "Service", "metadata": {"name": "a", "namespace": "ns1"}, "spec": {}}"#.utf8))
        XCTAssertEqual(results.compactMap(\.service).map(\.name.name), ["a"])
        let broken = ObjectDecoder.decodeJSON(Data(#"{"kind": "#.utf8))
        XCTAssertEqual(broken.count, 1)
        XCTAssertEqual(broken.first?.issues.first?.severity, .error)
        XCTAssertTrue(broken.first?.issues.first?.message.hasPrefix("malformed JSON") == true)
    }

    func testServiceNameLabelOfTheWrongTypeIsReportedOnce() {
        let result = ObjectDecoder.decode(
            json(
                #"{"kind": "EndpointSlice", "addressType": "IPv4", "metadata": {"name": "s", "namespace": "ns1", "labels": {"kubernetes.io/service-name": 5}}}"#
            ))
        XCTAssertNil(result.slice)
        XCTAssertEqual(
            lines(result),
            ["EndpointSlice ns1/s: metadata.labels[kubernetes.io/service-name]: expected a string, got number"])
    }

    func testDocumentThatIsNotAnObject() {
        XCTAssertEqual(ObjectDecoder.decodeDocument(["a", "b"]).flatMap(lines), ["expected an object, got list"])
        XCTAssertEqual(ObjectDecoder.decodeDocument(.null).count, 0)
    }
}
