import Foundation
import KubeModel
import KubeSource
import Logging
import XCTest

/// Objects as a 1.30 apiserver serves them (managedFields, annotations, status), so the client
/// is tested against the real wire shape, not a trimmed one.
enum Wire {
    static func service(_ ns: String, _ name: String, rv: String, clusterIP: String = "10.96.0.10", port: Int = 80)
        -> String
    {
        """
        {"metadata":{"name":"\(name)","namespace":"\(ns)","uid":"6c1a9c1e-\(name)-4f1e-9a57-2d3f3b0f1e11",\
        "resourceVersion":"\(rv)","creationTimestamp":"2026-11-20T09:14:03Z",\
        "labels":{"app.kubernetes.io/name":"\(name)","app.kubernetes.io/part-of":"shop"},\
        "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\\"apiVersion\\":\\"v1\\",\\"kind\\":\\"Service\\"}\\n"},\
        "managedFields":[{"manager":"kubectl-client-side-apply","operation":"Update","apiVersion":"v1",\
        "time":"2026-11-20T09:14:03Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:annotations":{".":{},\
        "f:kubectl.kubernetes.io/last-applied-configuration":{}}},"f:spec":{"f:ports":{".":{},\
        "k:{\\"port\\":\(port),\\"protocol\\":\\"TCP\\"}":{".":{},"f:name":{},"f:port":{},"f:protocol":{},"f:targetPort":{}}}}}}]},\
        "spec":{"ports":[{"name":"http","protocol":"TCP","port":\(port),"targetPort":8080}],\
        "selector":{"app.kubernetes.io/name":"\(name)"},"clusterIP":"\(clusterIP)","clusterIPs":["\(clusterIP)"],\
        "type":"ClusterIP","sessionAffinity":"None","ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack",\
        "internalTrafficPolicy":"Cluster"},"status":{"loadBalancer":{}}}
        """
    }

    static func endpointSlice(_ ns: String, _ service: String, suffix: String, rv: String, ip: String = "10.244.1.7")
        -> String
    {
        """
        {"metadata":{"name":"\(service)-\(suffix)","generateName":"\(service)-","namespace":"\(ns)",\
        "uid":"0e7d5c3a-\(suffix)-4b9b-8d1e-7f6c2a1b3c4d","resourceVersion":"\(rv)","generation":3,\
        "creationTimestamp":"2026-11-20T09:14:03Z","labels":{"endpointslice.kubernetes.io/managed-by":\
        "endpointslice-controller.k8s.io","kubernetes.io/service-name":"\(service)"},\
        "annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"2026-11-20T09:14:05Z"},\
        "ownerReferences":[{"apiVersion":"v1","kind":"Service","name":"\(service)",\
        "uid":"6c1a9c1e-\(service)","controller":true,"blockOwnerDeletion":true}],\
        "managedFields":[{"manager":"kube-controller-manager","operation":"Update","apiVersion":"discovery.k8s.io/v1",\
        "time":"2026-11-20T09:14:05Z","fieldsType":"FieldsV1","fieldsV1":{"f:addressType":{},"f:endpoints":{},"f:ports":{}}}]},\
        "addressType":"IPv4","endpoints":[{"addresses":["\(ip)"],"conditions":{"ready":true,"serving":true,\
        "terminating":false},"targetRef":{"kind":"Pod","namespace":"\(ns)","name":"\(service)-7d4b9c-x2x9k",\
        "uid":"a1b2c3d4"},"nodeName":"node-a","zone":"eu-west-1a"}],\
        "ports":[{"name":"http","protocol":"TCP","port":8080}]}
        """
    }

    static func endpoints(_ ns: String, _ name: String, rv: String, ip: String = "10.244.1.7") -> String {
        """
        {"metadata":{"name":"\(name)","namespace":"\(ns)","uid":"9f8e7d6c-\(name)","resourceVersion":"\(rv)",\
        "creationTimestamp":"2026-11-20T09:14:03Z","labels":{"app.kubernetes.io/name":"\(name)"},\
        "annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"2026-11-20T09:14:05Z"}},\
        "subsets":[{"addresses":[{"ip":"\(ip)","nodeName":"node-a","targetRef":{"kind":"Pod",\
        "namespace":"\(ns)","name":"\(name)-7d4b9c-x2x9k"}}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}]}
        """
    }

    static func node(
        _ name: String, rv: String, podCIDRs: [String] = ["10.244.1.0/24", "fd00:10:244:1::/64"],
        internalIP: String = "192.168.10.11", zone: String? = nil
    ) -> String {
        let cidrs = podCIDRs.map { "\"\($0)\"" }.joined(separator: ",")
        let zoneLabel = zone.map { ",\"topology.kubernetes.io/zone\":\"\($0)\"" } ?? ""
        return """
            {"metadata":{"name":"\(name)","uid":"node-\(name)","resourceVersion":"\(rv)",\
            "labels":{"kubernetes.io/hostname":"\(name)","kubernetes.io/os":"linux"\(zoneLabel)},\
            "annotations":{"node.alpha.kubernetes.io/ttl":"0","volumes.kubernetes.io/controller-managed-attach-detach":"true"}},\
            "spec":{"podCIDR":"\(podCIDRs.first ?? "")","podCIDRs":[\(cidrs)],"providerID":"kind://docker/kind/\(name)"},\
            "status":{"addresses":[{"type":"InternalIP","address":"\(internalIP)"},{"type":"ExternalIP","address":"203.0.113.7"},\
            {"type":"Hostname","address":"\(name)"}],"conditions":[{"type":"Ready","status":"True",\
            "lastHeartbeatTime":"2026-11-22T10:00:00Z","reason":"KubeletReady"}]}}
            """
    }

    static func list(kind: String, rv: String, continue token: String = "", items: [String]) -> String {
        let cont = token.isEmpty ? "" : ",\"continue\":\"\(token)\",\"remainingItemCount\":1"
        return """
            {"kind":"\(kind)","apiVersion":"v1","metadata":{"resourceVersion":"\(rv)"\(cont)},"items":[\(items.joined(separator: ","))]}
            """
    }

    static func event(_ type: String, _ object: String) -> String {
        "{\"type\":\"\(type)\",\"object\":\(object)}\n"
    }

    static func bookmark(rv: String, kind: String = "Service") -> String {
        event(
            "BOOKMARK",
            "{\"kind\":\"\(kind)\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"\(rv)\",\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}},\"spec\":{}}"
        )
    }

    static func status(code: Int, reason: String, message: String) -> String {
        """
        {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"\(message)","reason":"\(reason)","code":\(code)}
        """
    }

    static let gone = status(code: 410, reason: "Expired", message: "too old resource version: 100 (2000)")

    /// What an apiserver answers a list from a resourceVersion it has not reached (storage/errors.go
    /// NewTooLargeResourceVersionError): 504 Timeout with the cause ResourceVersionTooLarge.
    static let tooLarge = """
        {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",\
        "message":"Too large resource version: 150, current: 20","reason":"Timeout",\
        "details":{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],\
        "retryAfterSeconds":1},"code":504}
        """

    static let discovery = """
        {"kind":"APIResourceList","apiVersion":"v1","groupVersion":"discovery.k8s.io/v1","resources":[{"name":"endpointslices",\
        "singularName":"endpointslice","namespaced":true,"kind":"EndpointSlice","verbs":["create","delete","get","list","watch"]}]}
        """
}

/// The test's view of an object: which one, at which version. Objects carrying the label
/// `test/broken` fail to decode, standing in for objects the real decoder rejects.
struct TestObject: Sendable, Equatable, CustomStringConvertible {
    var kind: ResourceKind
    var name: ObjectName
    var resourceVersion: String

    struct Broken: Error {}

    static let decode: SourceObjectDecoder<TestObject> = { kind, json in
        let meta = json["metadata"]?.objectValue ?? [:]
        if meta["labels"]?["test/broken"] != nil { throw Broken() }
        guard let name = meta["name"]?.stringValue else { throw Broken() }
        return TestObject(
            kind: kind, name: ObjectName(namespace: meta["namespace"]?.stringValue ?? "", name: name),
            resourceVersion: meta["resourceVersion"]?.stringValue ?? "")
    }

    var description: String { "\(name)@\(resourceVersion)" }
}

/// Collects a source's events, one line per event, for waiting on and asserting.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var _lines: [String] = []
    private var _nodes: [Node?] = []

    var lines: [String] { lock.withLock { _lines } }
    /// Every `.node` event in order; nil for a deletion.
    var nodes: [Node?] { lock.withLock { _nodes } }

    func append(_ event: SourceEvent<TestObject>) {
        let line: String
        switch event {
        case .replaceAll(let kind, let objects):
            line = "replaceAll \(kind) [\(objects.map(\.description).sorted().joined(separator: ", "))]"
        case .synced(let kind): line = "synced \(kind)"
        case .upsert(let kind, let o): line = "upsert \(kind) \(o)"
        case .delete(let kind, let name): line = "delete \(kind) \(name)"
        case .node(let node):
            line = node.map { "node \($0.name) \($0.podCIDRs) \($0.addresses.map(\.address))" } ?? "node deleted"
            lock.withLock { _nodes.append(node) }
        }
        lock.withLock { _lines.append(line) }
    }

    /// Waits (bounded) until `predicate` holds for the lines so far. The bound only keeps a broken build from
    /// hanging the suite (the tests also run under ThreadSanitizer, many times slower): it asserts no speed.
    @discardableResult
    func wait(
        timeout: Duration = .seconds(30), file: StaticString = #filePath, line: UInt = #line,
        until predicate: ([String]) -> Bool
    ) async -> Bool {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < timeout {
            if predicate(lines) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        XCTFail("timed out; events so far:\n" + lines.joined(separator: "\n"), file: file, line: line)
        return false
    }

    func wait(for expected: String, timeout: Duration = .seconds(30), file: StaticString = #filePath, line: UInt = #line)
        async
    {
        await wait(timeout: timeout, file: file, line: line) { $0.contains(expected) }
    }
}

/// Thread-safe counter/state for route closures.
final class Box<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func with<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&value) } }
    var get: T { lock.withLock { value } }
}

extension SourceOptions {
    /// Short timeouts and backoff so fault tests finish in a second or two; no rate limit (the rate limiter has
    /// tests of its own, on a test clock).
    static func fast(mode: Mode = .watch, nodeName: String? = nil) -> SourceOptions {
        var o = SourceOptions(mode: mode, nodeName: nodeName)
        o.minWatchTimeout = .seconds(1)
        o.watchStallGrace = .milliseconds(500)
        o.requestTimeout = .seconds(2)
        o.backoff = BackoffPolicy(initial: .milliseconds(20), cap: .milliseconds(200))
        o.qps = -1
        return o
    }

    /// The `fast` options on a test clock: backoff, rate-limit waits and poll intervals pass only when the test
    /// advances `timing`. Production backoff values (800 ms first), jitter fixed by `timing`.
    static func onTestClock(_ timing: TestTiming, mode: Mode = .watch, nodeName: String? = nil) -> SourceOptions {
        var o = SourceOptions.fast(mode: mode, nodeName: nodeName)
        o.backoff = BackoffPolicy()
        o.timing = timing.timing
        return o
    }
}

/// Runs a source against a server until the test's body returns, then stops it (bounded).
func withSource(
    _ credentials: ClusterCredentials, options: SourceOptions = .fast(), logger: Logger = Logger(label: "test"),
    _ body: (EventLog) async throws -> Void
) async throws {
    let log = EventLog()
    let source = APIServerSource(credentials: credentials, options: options, logger: logger, decode: TestObject.decode)
    let task = Task { try await source.run { log.append($0) } }
    do {
        try await body(log)
    } catch {
        task.cancel()
        throw error
    }
    task.cancel()
    // Cancellation must reach in-flight requests and sleeps: wait for the source to end (bounded only so that a
    // source that never stops fails the test instead of hanging the suite; no speed is asserted).
    let stopped = Box(false)
    let waiter = Task {
        _ = try? await task.value
        stopped.with { $0 = true }
    }
    await eventually("the source stops after cancellation") { stopped.get }
    waiter.cancel()
}

/// Writes `text` to a fresh file in a temporary directory and returns its path.
func tempFile(_ name: String, _ text: String, in dir: URL? = nil) throws -> String {
    let d = dir ?? FileManager.default.temporaryDirectory.appendingPathComponent("kube-natd-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
    let url = d.appendingPathComponent(name)
    try text.write(to: url, atomically: true, encoding: .utf8)
    return url.path
}

/// A scripted apiserver: list replies per path (the last one repeats), a queue of watch replies
/// per path (an empty queue stalls, like a quiet cluster), and optional auth requirements.
final class FakeCluster: @unchecked Sendable {
    typealias Reply = TestAPIServer.Reply
    private let lock = NSLock()
    private var lists: [String: [Reply]] = [:]
    private var watches: [String: [Reply]] = [:]
    private var _authorization: String?
    private var _clientSubject: String?
    var hasEndpointSliceAPI = true

    func list(_ path: String, _ replies: Reply...) { lock.withLock { lists[path] = replies } }
    func watch(_ path: String, _ replies: Reply...) { lock.withLock { watches[path, default: []] += replies } }
    /// Requests must carry exactly this Authorization header, else 401.
    func requireAuthorization(_ value: String?) { lock.withLock { _authorization = value } }
    /// Requests must come with a verified client certificate whose subject contains this, else 401.
    func requireClientSubject(_ value: String?) { lock.withLock { _clientSubject = value } }

    func route(_ r: TestAPIServer.Request) -> Reply {
        lock.withLock {
            if let want = _authorization, r.authorization != want {
                return .json(status: 401, body: Wire.status(code: 401, reason: "Unauthorized", message: "Unauthorized"))
            }
            if let want = _clientSubject, !(r.clientSubject ?? "").contains(want) {
                return .json(status: 401, body: Wire.status(code: 401, reason: "Unauthorized", message: "Unauthorized"))
            }
            if r.path == "/apis/discovery.k8s.io/v1" {
                return hasEndpointSliceAPI
                    ? .json(status: 200, body: Wire.discovery)
                    : .json(
                        status: 404,
                        body: Wire.status(
                            code: 404, reason: "NotFound", message: "the server could not find the requested resource"))
            }
            if r.isWatch {
                if var queue = watches[r.path], !queue.isEmpty {
                    let reply = queue.removeFirst()
                    watches[r.path] = queue
                    return reply
                }
                return .stream([.stall])
            }
            if var queue = lists[r.path], !queue.isEmpty {
                let reply = queue.removeFirst()
                if queue.isEmpty { queue = [reply] }
                lists[r.path] = queue
                return reply
            }
            return .json(status: 200, body: Wire.list(kind: "List", rv: "1", items: []))
        }
    }

    func start(tls: Bool = false) async throws -> TestAPIServer {
        try await TestAPIServer.start(tls: tls) { [self] in self.route($0) }
    }
}

/// Records log lines so tests can assert what an operator would see.
final class LogCapture: @unchecked Sendable {
    private let lock = NSLock()
    private var _entries: [(Logger.Level, String)] = []

    var entries: [(Logger.Level, String)] { lock.withLock { _entries } }
    func count(_ level: Logger.Level, containing text: String) -> Int {
        entries.filter { $0.0 == level && $0.1.contains(text) }.count
    }

    var logger: Logger {
        Logger(label: "kube-natd.test") { _ in CaptureHandler(capture: self) }
    }

    fileprivate func append(_ level: Logger.Level, _ text: String) { lock.withLock { _entries.append((level, text)) } }

    struct CaptureHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(
            level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
            function: String, line: UInt
        ) {
            let meta = (metadata ?? [:]).map { "\($0)=\($1)" }.sorted().joined(separator: " ")
            capture.append(level, "\(message) \(meta)")
        }
    }
}
