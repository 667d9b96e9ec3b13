import Foundation
import KubeModel
import Logging
import XCTest

@testable import KubeSource

final class ClusterStoreTests: XCTestCase {
    func svc(_ name: String, _ ip: String, port: Int = 80) -> Service {
        Service(name: ObjectName(namespace: "ns", name: name), clusterIPs: [IPAddress(ip)!], ports: [ServicePort(port: port)])
    }

    func ok(_ s: Service) -> DecodeResult { DecodeResult(object: .service(s)) }

    func invalid(_ name: String) -> DecodeResult {
        let n = ObjectName(namespace: "ns", name: name)
        return DecodeResult(
            object: .rejected(kind: "Service", name: n),
            issues: [DecodeIssue(severity: .error, kind: "Service", object: n, fieldPath: "spec.ports[0].port",
                                 message: "must be 1-65535, got 0")])
    }

    final class Seen: @unchecked Sendable {
        let lock = NSLock()
        var all: [InvalidObject] = []
        func add(_ o: InvalidObject) { lock.withLock { all.append(o) } }
        var list: [InvalidObject] { lock.withLock { all } }
    }

    func store() -> (ClusterStore, Seen) {
        let store = ClusterStore()
        let seen = Seen()
        store.setOnInvalid { seen.add($0) }
        return (store, seen)
    }

    func testReplaceCountsOnlyDifferencesAndGatesOnBothLists() {
        let store = ClusterStore()
        XCTAssertFalse(store.isInitialized)
        store.apply(.replaceAll(.service, [ok(svc("a", "10.0.0.1")), ok(svc("b", "10.0.0.2"))]))
        store.apply(.synced(.service))
        XCTAssertFalse(store.isInitialized, "endpoints not listed yet")
        store.apply(.synced(.endpointSlice))
        XCTAssertTrue(store.isInitialized)
        XCTAssertEqual(store.take().serviceChanges, 2)
        store.apply(.replaceAll(.service, [ok(svc("a", "10.0.0.1")), ok(svc("b", "10.0.0.3"))]))
        XCTAssertEqual(store.take().serviceChanges, 1, "only b changed")
        store.apply(.replaceAll(.service, [ok(svc("a", "10.0.0.1"))]))
        let snap = store.take()
        XCTAssertEqual(snap.serviceChanges, 1, "b went away")
        XCTAssertEqual(snap.state.services.count, 1)
    }

    func testTriggerTimesTravelToTheNextSync() {
        let store = ClusterStore()
        var slice = EndpointSlice(name: ObjectName(namespace: "ns", name: "a-1"), serviceName: "a")
        slice.lastChangeTriggerTime = "2026-11-22T10:00:00Z"
        store.apply(.upsert(.endpointSlice, DecodeResult(object: .endpointSlice(slice))))
        let snap = store.take()
        XCTAssertEqual(snap.triggerTimes.count, 1)
        XCTAssertEqual(snap.endpointChanges, 1)
        XCTAssertEqual(store.take().triggerTimes.count, 0, "observed once")
    }

    func testARelistCarriesTriggerTimesOfChangedSlicesOnly() {
        let store = ClusterStore()
        var a = EndpointSlice(name: ObjectName(namespace: "ns", name: "a-1"), serviceName: "a")
        a.lastChangeTriggerTime = "2026-11-22T10:00:00Z"
        var b = EndpointSlice(name: ObjectName(namespace: "ns", name: "b-1"), serviceName: "b")
        b.lastChangeTriggerTime = "2026-11-22T10:00:00Z"
        store.apply(.replaceAll(.endpointSlice, [DecodeResult(object: .endpointSlice(a)), DecodeResult(object: .endpointSlice(b))]))
        XCTAssertEqual(store.take().triggerTimes.count, 2)
        b.endpoints = [Endpoint(addresses: [IPAddress("10.0.0.1")!])]
        b.lastChangeTriggerTime = "2026-11-22T11:00:00Z"
        // A relist after a 410 repeats a unchanged: its old trigger time is no programming latency.
        store.apply(.replaceAll(.endpointSlice, [DecodeResult(object: .endpointSlice(a)), DecodeResult(object: .endpointSlice(b))]))
        XCTAssertEqual(store.take().triggerTimes, [RFC3339.parse("2026-11-22T11:00:00Z")!])
        store.apply(.upsert(.endpointSlice, DecodeResult(object: .endpointSlice(b))))
        XCTAssertEqual(store.take().triggerTimes, [], "an upsert that changes nothing carries no trigger time")
        // An apiserver restarted with the same objects under new resourceVersions: no change at all.
        a.resourceVersion = "900001"
        b.resourceVersion = "900002"
        store.apply(.replaceAll(.endpointSlice, [DecodeResult(object: .endpointSlice(a)), DecodeResult(object: .endpointSlice(b))]))
        let snap = store.take()
        XCTAssertEqual(snap.endpointChanges, 0, "renumbered objects are not changes")
        XCTAssertEqual(snap.triggerTimes, [])
    }

    // MARK: - The last-good rule, through every path

    func testAnInvalidWatchUpdateKeepsTheLastGoodVersion() {
        let (store, seen) = store()
        store.apply(.replaceAll(.service, [ok(svc("a", "10.0.0.1"))]))
        _ = store.take()
        store.apply(.upsert(.service, invalid("a")))
        let snap = store.take()
        XCTAssertEqual(snap.serviceChanges, 0)
        XCTAssertEqual(snap.state.services[ObjectName(namespace: "ns", name: "a")], svc("a", "10.0.0.1"))
        XCTAssertEqual(seen.list.map(\.keptLastGood), [true])
        XCTAssertTrue(seen.list[0].description.contains("spec.ports[0].port"), "the log names the field")
    }

    func testARelistWithTheInvalidVersionKeepsTheLastGoodVersionToo() {
        let (store, seen) = store()
        store.apply(.replaceAll(.service, [ok(svc("a", "10.0.0.1")), ok(svc("b", "10.0.0.2"))]))
        store.apply(.upsert(.service, invalid("a")))
        // A 410 or a reconnect: the relist holds the invalid version of a.
        store.apply(.replaceAll(.service, [invalid("a"), ok(svc("b", "10.0.0.2"))]))
        let state = store.take().state
        XCTAssertEqual(state.services[ObjectName(namespace: "ns", name: "a")], svc("a", "10.0.0.1"),
                       "the kernel's state must not depend on whether the watch broke")
        XCTAssertEqual(seen.list.count, 2, "reported each time it is seen")
        XCTAssertTrue(seen.list.allSatisfy(\.keptLastGood))
    }

    func testTheInvalidObjectIsFixedOrDeleted() {
        let (store, _) = store()
        store.apply(.replaceAll(.service, [ok(svc("a", "10.0.0.1"))]))
        store.apply(.upsert(.service, invalid("a")))
        store.apply(.upsert(.service, ok(svc("a", "10.0.0.9"))))
        XCTAssertEqual(store.peek().services[ObjectName(namespace: "ns", name: "a")], svc("a", "10.0.0.9"), "fixed")
        store.apply(.upsert(.service, invalid("a")))
        store.apply(.delete(.service, ObjectName(namespace: "ns", name: "a")))
        XCTAssertNil(store.peek().services[ObjectName(namespace: "ns", name: "a")], "deleted")
        store.apply(.replaceAll(.service, [ok(svc("b", "10.0.0.2"))]))
        XCTAssertEqual(store.peek().services.count, 1, "a relist without the object drops it")
    }

    func testAFreshStartHasNoLastGoodVersionAndSaysSo() {
        let (store, seen) = store()
        store.apply(.replaceAll(.service, [invalid("a"), ok(svc("b", "10.0.0.2"))]))
        XCTAssertNil(store.peek().services[ObjectName(namespace: "ns", name: "a")])
        XCTAssertEqual(seen.list.map(\.keptLastGood), [false])
        XCTAssertTrue(seen.list[0].description.contains("no last good version"))
    }

    func testPollingAndManifestReloadsFollowTheSameRule() {
        let (store, seen) = store()
        // Polling: a first list, then differences as upserts; then a new first list after a restart of the poller.
        store.apply(.replaceAll(.service, [ok(svc("a", "10.0.0.1"))]))
        store.apply(.upsert(.service, invalid("a")))
        store.apply(.replaceAll(.service, [invalid("a")]))
        XCTAssertEqual(store.peek().services.count, 1)
        // A manifest load holding the invalid version.
        let name = ObjectName(namespace: "ns", name: "a")
        let load = ManifestLoad(services: [svc("c", "10.0.0.3")], slices: [], issues: invalid("a").issues)
        store.replace(load: load)
        XCTAssertEqual(store.peek().services[name], svc("a", "10.0.0.1"))
        XCTAssertEqual(store.peek().services.count, 2)
        XCTAssertEqual(seen.list.count, 3)
    }

    func testAnInvalidEndpointSliceKeepsItsLastGoodVersion() {
        let (store, seen) = store()
        let slice = EndpointSlice(name: ObjectName(namespace: "ns", name: "a-1"), serviceName: "a")
        store.apply(.replaceAll(.endpointSlice, [DecodeResult(object: .endpointSlice(slice))]))
        let n = slice.name
        let bad = DecodeResult(
            object: .rejected(kind: "EndpointSlice", name: n),
            issues: [DecodeIssue(severity: .error, kind: "EndpointSlice", object: n, fieldPath: "addressType",
                                 message: "unknown")])
        store.apply(.replaceAll(.endpointSlice, [bad]))
        XCTAssertEqual(store.peek().slices[n], slice)
        XCTAssertEqual(seen.list.map(\.kind), [.endpointSlice])
    }
}

final class ManifestFileSourceTests: XCTestCase {
    func write(_ dir: URL, _ name: String, _ text: String) throws {
        try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
    }

    func service(_ name: String, _ ip: String) -> String {
        """
        apiVersion: v1
        kind: Service
        metadata: {name: \(name), namespace: ns}
        spec: {clusterIP: \(ip), ports: [{port: 80}]}
        """
    }

    func testAFileThatNoLongerParsesKeepsWhatItHeld() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("knat-mfs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try write(dir, "a.yaml", service("a", "10.96.0.1"))
        try write(dir, "b.yaml", service("b", "10.96.0.2"))
        let source = ManifestFileSource(path: dir.path, logger: Logger(label: "test"))
        let store = ClusterStore()
        source.read(into: store, forced: false)
        XCTAssertEqual(store.peek().services.count, 2)
        XCTAssertTrue(store.isInitialized)
        try write(dir, "a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: ns\n  : [")
        try write(dir, "b.yaml", service("b", "10.96.0.22"))
        source.read(into: store, forced: false)
        let state = store.peek()
        XCTAssertEqual(state.services.count, 2, "a's file is broken: a keeps its last good version")
        XCTAssertEqual(state.services[ObjectName(namespace: "ns", name: "b")]?.clusterIPs.first, IPAddress("10.96.0.22"))
        try FileManager.default.removeItem(at: dir.appendingPathComponent("a.yaml"))
        source.read(into: store, forced: false)
        XCTAssertEqual(store.peek().services.count, 1, "a file removed: its objects go")
    }
}

final class ClusterStoreNodeTests: XCTestCase {
    func node(_ zone: String?, rv: String = "1") -> Node {
        Node(name: "node-a", resourceVersion: rv, labels: zone.map { [Node.zoneLabel: $0] } ?? [:],
             addresses: [NodeAddress(type: "InternalIP", address: IPAddress("192.168.10.11")!)])
    }

    func testTheNodeIsKeptInTheStateAndAZoneChangeRederivesHintedServices() {
        let store = ClusterStore()
        let changes = Box(0)
        store.setOnChange { changes.with { $0 += 1 } }
        XCTAssertNil(store.node)
        XCTAssertFalse(store.nodeSeen)
        let hinted = ObjectName(namespace: "ns", name: "web")
        let slice = EndpointSlice(
            name: ObjectName(namespace: "ns", name: "web-1"), serviceName: "web", addressType: .ipv4,
            endpoints: [Endpoint(addresses: [IPAddress("10.244.1.7")!], zoneHints: ["eu-west-1a"])])
        store.apply(.replaceAll(.endpointSlice, [DecodeResult(object: .endpointSlice(slice))]))
        let before = store.peek().generation(of: hinted)

        store.apply(.node(node("eu-west-1a")))
        XCTAssertEqual(store.node?.zone, "eu-west-1a")
        XCTAssertEqual(store.take().state.node?.zone, "eu-west-1a", "the snapshot carries the Node")
        XCTAssertTrue(store.nodeSeen)
        XCTAssertGreaterThan(store.peek().generation(of: hinted), before)
        XCTAssertEqual(changes.get, 2)

        // A renumbered Node (status heartbeat) is no change.
        store.apply(.node(node("eu-west-1a", rv: "2")))
        XCTAssertEqual(changes.get, 2)
        XCTAssertEqual(store.node?.resourceVersion, "", "held without its resourceVersion")

        store.apply(.node(nil))
        XCTAssertNil(store.node)
        XCTAssertTrue(store.nodeSeen, "a deleted Node was seen: nodeSeen && node == nil")
        XCTAssertEqual(changes.get, 3)
    }

    func testWaitForNodeReturnsWhenTheNodeArrivesAndQualifies() async {
        let store = ClusterStore()
        let waiter = Task { await store.waitForNode(timeout: .seconds(60)) { !$0.labels.isEmpty } }
        // Wait (bounded, on a condition) until the waiter is registered, so the first Node really reaches it.
        for _ in 0..<1000 where !store.hasNodeWaiters { await Task.yield() }
        XCTAssertTrue(store.hasNodeWaiters)
        store.setNode(node(nil))  // present but not qualifying: still waiting
        XCTAssertTrue(store.hasNodeWaiters)
        store.setNode(node("eu-west-1b"))
        let got = await waiter.value
        XCTAssertEqual(got?.zone, "eu-west-1b")
        XCTAssertFalse(store.hasNodeWaiters)
        let already = await store.waitForNode(timeout: .zero)
        XCTAssertEqual(already?.zone, "eu-west-1b", "a Node already there is returned at once")
    }

    func testWaitForNodeGivesUpAtTheTimeoutAndOnCancellation() async {
        let store = ClusterStore()
        let none = await store.waitForNode(timeout: .zero)
        XCTAssertNil(none)
        XCTAssertFalse(store.hasNodeWaiters, "a timed-out wait leaves nothing behind")
        let waiter = Task { await store.waitForNode(timeout: .seconds(600)) }
        for _ in 0..<1000 where !store.hasNodeWaiters { await Task.yield() }
        waiter.cancel()
        let cancelled = await waiter.value
        XCTAssertNil(cancelled)
        XCTAssertFalse(store.hasNodeWaiters)
    }
}

final class ManifestNodeTests: XCTestCase {
    func node(_ name: String, zone: String) -> String {
        """
        apiVersion: v1
        kind: Node
        metadata: {name: \(name), labels: {topology.kubernetes.io/zone: \(zone)}}
        spec: {podCIDRs: [10.244.1.0/24]}
        status: {addresses: [{type: InternalIP, address: 192.168.10.11}]}
        """
    }

    func testTheNodeNamedByTheNodeNameIsThisNodeAndAReloadWithoutItSetsNone() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("knat-node-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let write = { (name: String, text: String) in
            try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        try write("nodes.yaml", node("node-a", zone: "zone-a") + "\n---\n" + node("node-b", zone: "zone-b"))
        let source = ManifestFileSource(path: dir.path, nodeName: "node-b", logger: Logger(label: "test"))
        let store = ClusterStore()
        source.read(into: store, forced: false)
        XCTAssertEqual(store.node?.name, "node-b", "only the Node named by the node name is this node")
        XCTAssertEqual(store.node?.zone, "zone-b")
        XCTAssertEqual(store.node?.podCIDRs, [CIDR("10.244.1.0/24")!])

        try write("nodes.yaml", node("node-b", zone: "zone-c"))
        source.read(into: store, forced: true)
        XCTAssertEqual(store.node?.zone, "zone-c", "a label change arrives on reload")

        try write("nodes.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: node-b\n  : [")
        source.read(into: store, forced: true)
        XCTAssertEqual(store.node?.zone, "zone-c", "its file no longer parses: the Node keeps its last good read")

        try write("nodes.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: node-b, labels: {a: [1]}}\n")
        source.read(into: store, forced: true)
        XCTAssertEqual(store.node?.zone, "zone-c", "an invalid version keeps the last good Node")

        try write("nodes.yaml", node("node-a", zone: "zone-a"))
        source.read(into: store, forced: true)
        XCTAssertNil(store.node, "a reload that no longer holds this node's Node sets none")
        XCTAssertTrue(store.nodeSeen)
    }

    func testWithoutANodeNameNoNodeIsRead() throws {
        let path = try tempFile("node.yaml", node("node-a", zone: "zone-a"))
        let store = ClusterStore()
        ManifestFileSource(path: path, logger: Logger(label: "test")).read(into: store, forced: false)
        XCTAssertNil(store.node)
        XCTAssertFalse(store.nodeSeen)
    }

    func testOneShotLoadsSeeTheirOwnNode() throws {
        let load = ManifestSource.decode(
            data: Data((node("node-a", zone: "zone-a") + "\n---\n" + node("node-b", zone: "zone-b")).utf8),
            source: "nodes.yaml")
        XCTAssertEqual(load.nodes.map(\.name), ["node-a", "node-b"])
        XCTAssertEqual(load.clusterState(nodeName: "node-a").node?.zone, "zone-a")
        XCTAssertNil(load.clusterState(nodeName: "node-c").node)
        XCTAssertNil(load.clusterState.node)
    }
}
