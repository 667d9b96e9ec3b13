import Foundation
import KubeModel
import KubeSource
import XCTest

final class ManifestSourceTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("manifests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    @discardableResult
    private func write(_ name: String, _ text: String) throws -> String {
        let url = directory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    private var root: String { directory.path }

    /// What `kubectl get svc,endpointslices,endpoints -n ns1 -o yaml` prints, trimmed.
    private let kubectlList = """
        apiVersion: v1
        items:
        - apiVersion: v1
          kind: Service
          metadata:
            annotations:
              kubectl.kubernetes.io/last-applied-configuration: |
                {"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},"name":"web","namespace":"ns1"}}
            creationTimestamp: "2024-05-01T10:00:00Z"
            managedFields:
            - apiVersion: v1
              fieldsType: FieldsV1
              fieldsV1:
                f:spec:
                  f:ports:
                    .: {}
                    k:{"port":80,"protocol":"TCP"}:
                      .: {}
                      f:port: {}
              manager: kubectl-client-side-apply
              operation: Update
              time: "2024-05-01T10:00:00Z"
            name: web
            namespace: ns1
            resourceVersion: "1234"
            uid: 6b1f3c1e-1111-2222-3333-444455556666
          spec:
            clusterIP: 10.96.0.50
            clusterIPs:
            - 10.96.0.50
            internalTrafficPolicy: Cluster
            ipFamilies:
            - IPv4
            ipFamilyPolicy: SingleStack
            ports:
            - name: http
              port: 80
              protocol: TCP
              targetPort: 8080
            selector:
              app: web
            sessionAffinity: None
            type: ClusterIP
          status:
            loadBalancer: {}
        - addressType: IPv4
          apiVersion: discovery.k8s.io/v1
          endpoints:
          - addresses:
            - 10.244.1.5
            conditions:
              ready: true
              serving: true
              terminating: false
            nodeName: node-a
            targetRef:
              kind: Pod
              name: web-7c9d8-abcde
              namespace: ns1
              uid: 0d6b1f3c-1111-2222-3333-444455556666
          kind: EndpointSlice
          metadata:
            annotations:
              endpoints.kubernetes.io/last-change-trigger-time: "2024-05-01T10:00:05Z"
            creationTimestamp: "2024-05-01T10:00:00Z"
            generateName: web-
            generation: 3
            labels:
              endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
              kubernetes.io/service-name: web
            name: web-x7k2p
            namespace: ns1
            ownerReferences:
            - apiVersion: v1
              blockOwnerDeletion: true
              controller: true
              kind: Service
              name: web
              uid: 6b1f3c1e-1111-2222-3333-444455556666
            resourceVersion: "1240"
          ports:
          - name: http
            port: 8080
            protocol: TCP
        - apiVersion: v1
          kind: Endpoints
          metadata:
            name: web
            namespace: ns1
            resourceVersion: "1239"
          subsets:
          - addresses:
            - ip: 10.244.9.9
            ports:
            - name: http
              port: 8080
              protocol: TCP
        kind: List
        metadata:
          resourceVersion: ""
        """

    func testKubectlListLoadsServicesSlicesAndEndpoints() throws {
        let file = try write("cluster.yaml", kubectlList)
        let load = try ManifestSource(path: file).load()
        XCTAssertEqual(load.issues, [])
        XCTAssertEqual(load.services.map(\.name), [ObjectName(namespace: "ns1", name: "web")])
        XCTAssertEqual(load.services.first?.resourceVersion, "1234")
        XCTAssertEqual(load.slices.map(\.name.name), ["web-x7k2p", "web"])
        XCTAssertEqual(load.slices.map(\.fromEndpoints), [false, true])
        XCTAssertEqual(load.slices.first?.lastChangeTriggerTime, "2024-05-01T10:00:05Z")

        // The Service has an EndpointSlice, so its Endpoints are not used.
        let state = load.clusterState
        let web = ObjectName(namespace: "ns1", name: "web")
        XCTAssertEqual(state.slices(for: web).map(\.name.name), ["web-x7k2p"])
        XCTAssertEqual(state.slices(for: web).first?.endpoints.first?.addresses, [IPAddress("10.244.1.5")!])
    }

    func testEndpointsAreUsedWhenNoSliceNamesTheService() throws {
        try write(
            "legacy.yaml",
            """
            apiVersion: v1
            kind: Service
            metadata: {name: old, namespace: ns2}
            spec: {clusterIP: 10.96.0.60, ports: [{port: 80}]}
            ---
            apiVersion: v1
            kind: Endpoints
            metadata: {name: old, namespace: ns2}
            subsets:
            - addresses: [{ip: 10.244.5.5}]
              ports: [{port: 8080}]
            """)
        let load = try ManifestSource(path: root).load()
        XCTAssertEqual(load.issues, [])
        let slices = load.clusterState.slices(for: ObjectName(namespace: "ns2", name: "old"))
        XCTAssertEqual(slices.count, 1)
        XCTAssertTrue(slices[0].fromEndpoints)
        XCTAssertEqual(slices[0].endpoints.first?.addresses, [IPAddress("10.244.5.5")!])
    }

    func testMalformedDocumentIsReportedAndTheOthersLoad() throws {
        let file = try write(
            "multi.yaml",
            """
            kind: Service
            metadata: {name: a, namespace: ns1}
            spec: {clusterIP: 10.96.0.1}
            ---
            kind: Service
            metadata: {name: b, namespace: ns1
            spec: {clusterIP: 10.96.0.2}
            ---
            kind: Service
            metadata: {name: c, namespace: ns1}
            spec: {clusterIP: 10.96.0.3, ports: [{port: 0}]}
            ---
            kind: Service
            metadata: {name: d, namespace: ns1}
            spec: {clusterIP: 10.96.0.4}
            """)
        let load = try ManifestSource(path: file).load()
        XCTAssertEqual(load.services.map(\.name.name), ["a", "d"])
        XCTAssertEqual(load.errors.count, 2)
        XCTAssertTrue(
            load.issues[0].description.hasPrefix("\(file) (document 2): malformed YAML at line "),
            load.issues[0].description)
        XCTAssertEqual(
            load.issues[1].description,
            "\(file) (document 3): Service ns1/c: spec.ports[0].port: must be 1-65535, got 0")
        XCTAssertEqual(load.issues[1].source, "\(file) (document 3)")
    }

    func testSingleDocumentIssuesNameOnlyTheFile() throws {
        let file = try write(
            "one.json",
            #"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "w", "namespace": "ns1"}, "spec": {"externalIPs": ["x"]}}"#
        )
        let load = try ManifestSource(path: file).load()
        XCTAssertEqual(load.services.count, 1)
        XCTAssertEqual(
            load.issues.map(\.description),
            [#"\#(file): Service ns1/w: spec.externalIPs[0]: not an IP address: "x"; entry dropped"#])
    }

    func testMalformedJSONIsOneError() throws {
        let file = try write("broken.json", #"{"kind": "Service", "metadata": "#)
        let load = try ManifestSource(path: file).load()
        XCTAssertEqual(load.services, [])
        XCTAssertEqual(load.issues.count, 1)
        XCTAssertEqual(load.issues[0].severity, .error)
        XCTAssertEqual(load.issues[0].source, file)
        XCTAssertTrue(load.issues[0].message.hasPrefix("malformed JSON"), load.issues[0].message)
    }

    private let svcA = #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"ns"},"spec":{"clusterIP":"10.96.0.1","ports":[{"port":80}]}}"#
    private let svcB = #"{"metadata":{"name":"b","namespace":"ns"},"spec":{"clusterIP":"10.96.0.2","ports":[{"port":81}]}}"#

    func testJSONListItemsBeforeTheListKindStillDecode() throws {
        let file = try write("late-kind.json", #"{"items":["# + svcA + "," + svcB + #"],"kind":"ServiceList","apiVersion":"v1"}"#)
        let load = try ManifestSource(path: file).load()
        XCTAssertEqual(load.services.map(\.name.name), ["a", "b"])  // b takes its kind from ServiceList
        XCTAssertEqual(load.issues, [])
    }

    func testJSONTypedListStreamsItemsWithTheListKind() throws {
        let file = try write("typed.json", #"{"kind":"ServiceList","apiVersion":"v1","items":["# + svcA + "," + svcB + "]}")
        let load = try ManifestSource(path: file).load()
        XCTAssertEqual(load.services.map(\.name.name), ["a", "b"])
    }

    func testJSONListWithAnItemThatIsNotAnObjectNamesItsIndex() throws {
        let file = try write("bad-item.json", #"{"kind":"List","apiVersion":"v1","items":["# + svcA + ",42]}")
        let load = try ManifestSource(path: file).load()
        XCTAssertEqual(load.services.map(\.name.name), ["a"])
        XCTAssertEqual(load.issues.map(\.description), ["\(file): List: items[1]: expected an object, got number"])
    }

    func testMalformedJSONAfterGoodListItemsRejectsTheWholeFile() throws {
        let file = try write("truncated.json", #"{"kind":"List","apiVersion":"v1","items":["# + svcA + ",{\"kind\":")
        let load = try ManifestSource(path: file).load()
        XCTAssertEqual(load.services, [])
        XCTAssertEqual(load.issues.count, 1)
        XCTAssertTrue(load.issues[0].message.hasPrefix("malformed JSON: "), load.issues[0].message)
    }

    func testObjectWithItemsThatIsNotAListDecodesAsBefore() throws {
        let file = try write("not-a-list.json", #"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"items":[1,2]}"#)
        let streamed = try ManifestSource(path: file).load()
        let whole = ObjectDecoder.decodeDocument(try JSONTree.parse(Data(contentsOf: URL(fileURLWithPath: file))))
        XCTAssertEqual(streamed.issues.map(\.message), whole.flatMap(\.issues).map(\.message))
        XCTAssertEqual(streamed.services, [])
    }

    func testDirectoryIsReadSortedOneLevelDeepSkippingHiddenAndOtherFiles() throws {
        let service = { (name: String) in
            #"{"kind": "Service", "metadata": {"name": "\#(name)", "namespace": "ns1"}, "spec": {}}"#
        }
        try write("b.json", service("b"))
        try write("a.yml", "kind: Service\nmetadata: {name: a, namespace: ns1}\n")
        try write("sub/c.yaml", "kind: Service\nmetadata: {name: c, namespace: ns1}\n")
        try write("sub/deeper/d.yaml", "kind: Service\nmetadata: {name: d, namespace: ns1}\n")
        try write("..data/e.yaml", "kind: Service\nmetadata: {name: e, namespace: ns1}\n")
        try write("README.md", "not a manifest")
        XCTAssertEqual(
            try ManifestSource.files(at: root), [root + "/a.yml", root + "/b.json", root + "/sub/c.yaml"])
        let load = try ManifestSource(path: root).load()
        XCTAssertEqual(load.services.map(\.name.name), ["a", "b", "c"])
        XCTAssertEqual(load.issues, [])
    }

    func testMissingPathThrows() {
        XCTAssertThrowsError(try ManifestSource(path: root + "/nope").load()) { error in
            XCTAssertEqual(
                error as? ManifestError, .unreadable(path: root + "/nope", reason: "no such file or directory"))
        }
    }

    func testRepeatedObjectReplacesTheEarlierOneWithAWarning() throws {
        let first = try write(
            "1.yaml", "kind: Service\nmetadata: {name: a, namespace: ns1}\nspec: {clusterIP: 10.96.0.1}\n")
        let second = try write(
            "2.yaml", "kind: Service\nmetadata: {name: a, namespace: ns1}\nspec: {clusterIP: 10.96.0.2}\n")
        let load = try ManifestSource(path: root).load()
        XCTAssertEqual(load.services.map(\.clusterIPs), [[IPAddress("10.96.0.2")!]])
        XCTAssertEqual(
            load.issues.map(\.description), ["\(second): Service ns1/a: defined again; replaces the one from \(first)"])
    }

    func testIPv6ObjectsLoad() throws {
        try write(
            "v6.yaml",
            """
            apiVersion: v1
            kind: Service
            metadata: {name: web6, namespace: ns6}
            spec:
              clusterIP: fd00:10:96::6
              ipFamilies: [IPv6]
              ports: [{name: http, port: 80}]
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata:
              name: web6-abcde
              namespace: ns6
              labels: {kubernetes.io/service-name: web6}
            addressType: IPv6
            endpoints:
            - addresses: ["fd00:10:244::7"]
              conditions: {ready: true}
            ports: [{name: http, port: 8080}]
            """)
        let load = try ManifestSource(path: root).load()
        XCTAssertEqual(load.issues, [])
        XCTAssertEqual(load.services.first?.clusterIPs, [IPAddress("fd00:10:96::6")!])
        XCTAssertEqual(load.slices.first?.addressType, .ipv6)
        XCTAssertEqual(load.slices.first?.endpoints.first?.addresses, [IPAddress("fd00:10:244::7")!])
    }

    func testKubectlJSONListOfManyServicesLoads() throws {
        // KUBE_NATD_MANIFEST_SERVICES=30000 measures the 30k-Service case by hand.
        let count = ProcessInfo.processInfo.environment["KUBE_NATD_MANIFEST_SERVICES"].flatMap { Int($0) } ?? 5000
        var items: [String] = []
        items.reserveCapacity(count)
        for i in 0..<count {
            items.append(
                #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"svc-\#(i)","namespace":"ns\#(i % 50)","resourceVersion":"\#(i)","managedFields":[{"manager":"kubectl","operation":"Update"}]},"spec":{"clusterIP":"10.\#(96 + i / 65536).\#((i / 256) % 256).\#(i % 256)","ports":[{"name":"http","port":80,"protocol":"TCP","targetPort":8080}],"type":"ClusterIP"}}"#
            )
        }
        let file = try write(
            "big.json", #"{"apiVersion":"v1","kind":"List","items":[\#(items.joined(separator: ","))]}"#)
        let load = try ManifestSource(path: file).load()
        XCTAssertEqual(load.services.count, count)
        XCTAssertEqual(load.issues, [])
        XCTAssertEqual(load.clusterState.services.count, count)
        XCTAssertEqual(load.services.map(\.name.name), (0..<count).map { "svc-\($0)" })
    }

    /// List items are decoded on a second thread in batches: results and issues must come out exactly as a
    /// sequential decode of the whole document gives them, in item order, across many batches.
    func testLongListDecodesInItemOrderWithIssuesInPlace() throws {
        var items: [String] = []
        for i in 0..<2000 {
            switch i % 97 {
            case 13: items.append("42")
            case 41: items.append(#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad-\#(i)","namespace":"ns"},"spec":{"clusterIP":"10.96.0.1","ports":[{"port":"eighty"}]}}"#)
            case 77: items.append(#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"dup","namespace":"ns"},"spec":{"clusterIP":"10.96.0.9","ports":[{"port":\#(1 + i % 1000)}]}}"#)
            default:
                items.append(#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"svc-\#(i)","namespace":"ns"},"spec":{"clusterIP":"10.96.\#(i / 256).\#(i % 256)","ports":[{"port":80}]}}"#)
            }
        }
        let text = #"{"apiVersion":"v1","kind":"List","items":[\#(items.joined(separator: ","))]}"#
        let file = try write("long.json", text)
        let load = try ManifestSource(path: file).load()
        let whole = ObjectDecoder.decodeDocument(try JSONTree.parse(Data(text.utf8)))
        XCTAssertEqual(whole.count, 2000)
        XCTAssertEqual(load.issues.map(\.message).filter { !$0.contains("replaces") },
                       whole.flatMap(\.issues).map(\.message))
        let names = whole.compactMap(\.service).map(\.name.name)
        var seen = Set<String>()
        XCTAssertEqual(load.services.map(\.name.name), names.filter { seen.insert($0).inserted })
        XCTAssertGreaterThan(load.issues.filter { $0.severity == .error }.count, 40)
    }

    func testDecodeFromDataWithoutAFile() {
        let load = ManifestSource.decode(
            data: Data("kind: Pod\nmetadata: {name: p}\n---\nkind: Service\nmetadata: {name: s}\n".utf8),
            source: "<stdin>")
        XCTAssertEqual(load.services.map(\.name), [ObjectName(namespace: "default", name: "s")])
        XCTAssertEqual(load.issues, [])
    }
}
