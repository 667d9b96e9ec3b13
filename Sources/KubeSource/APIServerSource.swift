import Foundation
import KubeModel
import Logging
import NIOCore

/// Follows Services, EndpointSlices (or v1 Endpoints on servers without them) and the own Node
/// on the apiserver, by list-then-watch or by polling, and reports every change as a `SourceEvent`.
///
/// Failures never end the stream: each request is retried with capped exponential backoff and
/// jitter, and each failure streak is logged once, with its cause, and once more when it ends.
public struct APIServerSource<Object: Sendable>: Sendable {
    public let credentials: ClusterCredentials
    public let options: SourceOptions
    let logger: Logger
    let decode: SourceObjectDecoder<Object>

    public init(
        credentials: ClusterCredentials, options: SourceOptions = SourceOptions(), logger: Logger,
        decode: @escaping SourceObjectDecoder<Object>
    ) {
        self.credentials = credentials
        self.options = options
        self.logger = logger
        self.decode = decode
    }

    /// Runs until the calling task is cancelled, handing each event to `emit` (called from
    /// several tasks, one per kind; events of one kind arrive in order). Throws only when the
    /// credentials cannot be turned into a client (bad PEM, bad URL).
    public func run(_ emit: @escaping @Sendable (SourceEvent<Object>) -> Void) async throws(APIError) {
        // A watch lasts at most 2 x minWatchTimeout (timeoutSeconds); silence beyond that plus the
        // grace means the server or the path to it stalled.
        let silence = 2 * options.minWatchTimeout.seconds + options.watchStallGrace.seconds
        let limiter =
            options.rateLimiter ?? RequestRateLimiter(qps: options.qps, burst: options.burst, timing: options.timing)
        let client = try APIClient(
            credentials: credentials, requestTimeout: .nanoseconds(Int64(options.requestTimeout.seconds * 1e9)),
            readTimeout: .nanoseconds(Int64(silence * 1e9)), limiter: limiter, observer: options.onRequest)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.follow(.service, client: client, emit: emit) }
            group.addTask {
                guard let kind = await self.endpointKind(client: client) else { return }
                await self.follow(kind, client: client, emit: emit)
            }
            if let node = options.nodeName {
                group.addTask { await self.followNode(node, client: client, emit: emit) }
            }
        }
        await client.shutdown()
    }

    /// The events as an AsyncStream; the work stops when the stream is dropped or its consumer cancelled.
    public func events() -> AsyncStream<SourceEvent<Object>> {
        AsyncStream { continuation in
            let task = Task {
                do {
                    try await self.run { continuation.yield($0) }
                } catch {
                    logger.error("apiserver source cannot start", metadata: ["error": "\(error)"])
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    // MARK: - Per-collection loops

    /// discovery.k8s.io/v1 present: EndpointSlices. 404: the server predates them, follow Endpoints.
    func endpointKind(client: APIClient) async -> ResourceKind? {
        var streak = FailureStreak(
            what: "discovery of discovery.k8s.io/v1", policy: options.backoff, timing: options.timing, logger: logger)
        while !Task.isCancelled {
            do {
                _ = try await client.get("/apis/discovery.k8s.io/v1")
                streak.succeeded()
                return .endpointSlice
            } catch .notFound {
                streak.succeeded()
                logger.warning("apiserver has no discovery.k8s.io/v1 EndpointSlice API; following v1 Endpoints instead")
                return .endpoints
            } catch {
                guard await streak.failed(error) else { return nil }
            }
        }
        return nil
    }

    func follow(_ kind: ResourceKind, client: APIClient, emit: @escaping @Sendable (SourceEvent<Object>) -> Void) async
    {
        let collection = Collection(
            name: "\(kind)", path: kind.path, selector: [("labelSelector", ResourceKind.labelSelector)])
        let decode = self.decode
        let logger = self.logger
        func decoded(_ items: [JSONObject]) -> [Object] {
            items.compactMap { item in
                do { return try decode(kind, item) } catch {
                    logger.error(
                        "skipping \(kind) \(objectName(item)): \(error)", metadata: ["kind": "\(kind)"])
                    return nil
                }
            }
        }
        var synced = false
        let handler = CollectionHandler(
            replaceAll: { items in
                emit(.replaceAll(kind, decoded(items)))
                if !synced {
                    synced = true
                    emit(.synced(kind))
                }
            },
            upsert: { item in
                if let object = decoded([item]).first { emit(.upsert(kind, object)) }
            },
            delete: { item in emit(.delete(kind, objectName(item))) })
        await run(collection, client: client, handler: handler)
    }

    /// This node's Node, by name (upstream's node informer: a `metadata.name=<name>` field selector), through the
    /// same list/watch (or poll) loop as the other kinds. Emitted when first seen and whenever its content changes
    /// (a status heartbeat that only renumbers it is no change); nil when it is deleted.
    func followNode(_ name: String, client: APIClient, emit: @escaping @Sendable (SourceEvent<Object>) -> Void) async {
        let collection = Collection(
            name: "Node \(name)", path: "/api/v1/nodes", selector: [("fieldSelector", "metadata.name=\(name)")])
        var last: Node?
        var present = false
        let logger = self.logger
        func seen(_ item: JSONObject) {
            let result = ObjectDecoder.decode(item, defaultKind: "Node", defaultAPIVersion: "v1")
            for issue in result.issues { logger.log(level: issue.severity == .error ? .error : .warning, "\(issue)") }
            guard var node = result.node else {
                logger.error("node \(name): invalid Node ignored, keeping the last good one")
                return
            }
            guard node.name == name else { return }
            node.resourceVersion = ""
            guard node != last || !present else { return }
            last = node
            present = true
            logger.info(
                "node \(name): zone \(node.zone ?? "(none)"), podCIDRs \(node.podCIDRs), addresses \(node.addresses.map { "\($0.type) \($0.address)" })\(node.deletionTimestamp != nil ? ", being deleted" : "")"
            )
            emit(.node(node))
        }
        func gone() {
            guard present else { return }
            present = false
            last = nil
            logger.warning("node \(name) was deleted from the apiserver")
            emit(.node(nil))
        }
        let handler = CollectionHandler(
            replaceAll: { items in
                if let item = items.first(where: { objectName($0).name == name }) {
                    seen(item)
                } else {
                    logger.warning("node \(name) not found on the apiserver: is --hostname-override right?")
                    gone()
                }
            },
            upsert: seen,
            delete: { item in if objectName(item).name == name { gone() } })
        await run(collection, client: client, handler: handler)
    }

    func run(_ collection: Collection, client: APIClient, handler: CollectionHandler) async {
        switch options.mode {
        case .watch: await listAndWatch(collection, client: client, handler: handler)
        case .poll(let interval): await poll(collection, every: interval, client: client, handler: handler)
        }
    }

    // MARK: - List and watch

    /// One list as client-go's reflector and pager make it: from `resourceVersion` ("" is a consistent read from
    /// etcd, "0" any state the watch cache holds, a number a state at least that new), `limit` pages when
    /// `paginate`, the `continue` pages without a resourceVersion (they are pinned to the first page's), and, when a
    /// `continue` token expired (410), one full list without `limit` instead, as client-go's pager falls back.
    func list(_ c: Collection, client: APIClient, resourceVersion: String, paginate: Bool) async throws(APIError) -> (
        items: [JSONObject], resourceVersion: String, paginated: Bool
    ) {
        var items: [JSONObject] = []
        var listRV = ""
        var token: String?
        var pages = 0
        var query = c.selector
        if !resourceVersion.isEmpty { query.append(("resourceVersion", resourceVersion)) }
        if paginate { query.append(("limit", "\(options.pageSize)")) }
        do throws(APIError) {
            repeat {
                var q = query
                if let token {
                    q = c.selector + [("limit", "\(options.pageSize)"), ("continue", token)]
                }
                let page = try await client.get(c.path, query: q)
                pages += 1
                items += objects(page["items"])
                let meta = page["metadata"]?.objectValue ?? JSONObject()
                listRV = meta["resourceVersion"]?.stringValue ?? listRV
                token = nonEmpty(meta["continue"]?.stringValue)
            } while token != nil
            return (items, listRV, pages > 1)
        } catch .gone(let path) where token != nil {
            logger.info(
                "list \(c.name): continue token expired (410 Gone at \(path)); listing everything in one request")
            let page = try await client.get(c.path, query: c.selector)
            let meta = page["metadata"]?.objectValue ?? JSONObject()
            return (objects(page["items"]), meta["resourceVersion"]?.stringValue ?? "", false)
        }
    }

    /// What a list/watch loop remembers between lists, as client-go's reflector does.
    struct ListState {
        /// The last resourceVersion seen, in a list or a watch event (bookmarks included); "" before the first list.
        var lastSyncResourceVersion = ""
        /// The last list from `lastSyncResourceVersion` was refused (410, or too large): the next is consistent.
        var lastSyncResourceVersionUnavailable = false
        /// The first list (from the watch cache) came back in pages: the watch cache is off, keep paginating.
        var paginatedResult = false

        /// The resourceVersion of the next list: "0" (the watch cache) at first, then the last one seen (at
        /// least as new as what we hold, still served from the cache), "" (etcd) only after that was refused.
        var relistResourceVersion: String {
            if lastSyncResourceVersionUnavailable { return "" }
            return lastSyncResourceVersion.isEmpty ? "0" : lastSyncResourceVersion
        }
    }

    /// A list from the watch cache where it can be (see `ListState`); when the apiserver refuses the
    /// resourceVersion (410 Expired, or too large after an apiserver restart), at once a consistent list.
    func relist(_ c: Collection, client: APIClient, state: inout ListState) async throws(APIError) -> [JSONObject] {
        let rv = state.relistResourceVersion
        // client-go paginates consistent lists and RV=0 lists (which the watch cache answers whole anyway), but not
        // lists from a given resourceVersion: with a limit the apiserver would send them to etcd.
        let paginate = state.paginatedResult || rv.isEmpty || rv == "0"
        var result: (items: [JSONObject], resourceVersion: String, paginated: Bool)
        do throws(APIError) {
            result = try await list(c, client: client, resourceVersion: rv, paginate: paginate)
        } catch {
            switch error {
            case .gone, .resourceVersionTooLarge:
                state.lastSyncResourceVersionUnavailable = true
                logger.info("list \(c.name) from resourceVersion \(rv) refused (\(error)); listing consistently")
                result = try await list(c, client: client, resourceVersion: "", paginate: true)
            default:
                throw error
            }
        }
        if rv == "0" && result.paginated { state.paginatedResult = true }
        state.lastSyncResourceVersionUnavailable = false
        state.lastSyncResourceVersion = result.resourceVersion
        return result.items
    }

    func listAndWatch(_ c: Collection, client: APIClient, handler: CollectionHandler) async {
        var streak = FailureStreak(
            what: "list/watch \(c.name)", policy: options.backoff, timing: options.timing, logger: logger)
        var state = ListState()
        var needList = true
        let timing = options.timing
        while !Task.isCancelled {
            do {
                if needList {
                    let rv = state.relistResourceVersion
                    let items = try await relist(c, client: client, state: &state)
                    streak.succeeded()
                    logger.info(
                        "listed \(c.name): \(items.count) objects at resourceVersion \(state.lastSyncResourceVersion) (asked for \(rv.isEmpty ? "a consistent read" : "resourceVersion \(rv)"))"
                    )
                    handler.replaceAll(items)
                    needList = false
                }
                let minTimeout = options.minWatchTimeout.seconds
                let timeoutSeconds = max(1, Int(minTimeout * (1 + timing.random())))
                var query = c.selector
                query += [
                    ("watch", "true"), ("resourceVersion", state.lastSyncResourceVersion),
                    ("allowWatchBookmarks", "true"), ("timeoutSeconds", "\(timeoutSeconds)"),
                ]
                let started = timing.now()
                var events = 0
                try await client.watch(c.path, query: query) { event in
                    if event.type != .error {
                        events += 1
                        streak.succeeded()
                    }
                    if let rv = metadata(event.object)["resourceVersion"]?.stringValue, !rv.isEmpty {
                        state.lastSyncResourceVersion = rv
                    }
                    switch event.type {
                    case .added, .modified: handler.upsert(event.object)
                    case .deleted: handler.delete(event.object)
                    case .bookmark: break
                    case .error:
                        // The object of an ERROR event is a metav1.Status; 410 means our resourceVersion
                        // fell out of the watch cache.
                        var code = 0
                        if case .int(let n)? = event.object["code"] { code = n }
                        if code == 410 { throw APIError.gone(path: c.path) }
                        let message = event.object["message"]?.stringValue ?? "watch ERROR event"
                        if code == 504 && message.contains("Too large resource version") {
                            throw APIError.resourceVersionTooLarge(path: c.path, message: message)
                        }
                        throw APIError.status(
                            path: c.path, code: code,
                            message: event.object["message"]?.stringValue ?? "watch ERROR event")
                    }
                }
                // A watch the server closes at once, empty, again and again would become a request
                // storm from every node: pace it like a failure (client-go's "very short watch").
                if events == 0 && timing.now() - started < .seconds(1) {
                    throw APIError.status(path: c.path, code: 200, message: "watch ended at once without events")
                }
                // The server ended the watch at timeoutSeconds: resume from where we are.
                streak.succeeded()
            } catch let error as APIError where !needList && error.isResourceVersionRefused {
                // As client-go: the next list asks for the last resourceVersion seen (the watch cache answers it);
                // only if that is refused too does it fall back to a consistent read. Relists are paced by the
                // same backoff as failures, so a flapping watch cache does not become a list storm.
                let why: String
                if case .gone = error { why = "expired (410 Gone)" } else { why = "is newer than the apiserver's" }
                logger.info(
                    "watch \(c.name): resourceVersion \(state.lastSyncResourceVersion) \(why); relisting from it after the backoff"
                )
                needList = true
                guard await streak.pause() else { return }
            } catch {
                guard await streak.failed(error) else { return }
            }
        }
    }

    // MARK: - Polling

    /// Lists every `interval` and hands on only what changed (by resourceVersion) since the last list. Lists as the
    /// reflector does (`relist`): the first from the watch cache, the next ones from the last resourceVersion.
    func poll(_ c: Collection, every interval: Duration, client: APIClient, handler: CollectionHandler) async {
        var streak = FailureStreak(what: "poll \(c.name)", policy: options.backoff, timing: options.timing, logger: logger)
        var known: [ObjectName: String]?
        var state = ListState()
        while !Task.isCancelled {
            do {
                let items = try await relist(c, client: client, state: &state)
                streak.succeeded()
                var current: [ObjectName: String] = [:]
                for item in items {
                    current[objectName(item)] = metadata(item)["resourceVersion"]?.stringValue ?? ""
                }
                if let previous = known {
                    for item in items where previous[objectName(item)] != current[objectName(item)] {
                        handler.upsert(item)
                    }
                    for (name, _) in previous where current[name] == nil {
                        handler.delete(["metadata": ["namespace": .string(name.namespace), "name": .string(name.name)]])
                    }
                } else {
                    handler.replaceAll(items)
                }
                known = current
                try await options.timing.sleep(interval)
            } catch is CancellationError {
                return
            } catch {
                guard await streak.failed(error) else { return }
            }
        }
    }
}

extension APIError {
    /// The apiserver no longer (or not yet) serves the resourceVersion asked for: relist.
    var isResourceVersionRefused: Bool {
        switch self {
        case .gone, .resourceVersionTooLarge: true
        default: false
        }
    }
}

/// One collection to follow: path plus the selectors sent on every list and watch.
struct Collection {
    var name: String
    var path: String
    var selector: [(String, String)]
}

/// What a list/watch loop does with raw objects.
struct CollectionHandler {
    var replaceAll: ([JSONObject]) -> Void
    var upsert: (JSONObject) -> Void
    var delete: (JSONObject) -> Void
}

/// Counts consecutive failures of one loop: logs the cause when a streak starts (and when the
/// cause changes), sleeps the loop's backoff, and logs once when the loop recovers.
struct FailureStreak {
    let what: String
    let logger: Logger
    private var backoff: Backoff
    private(set) var failures = 0
    private var lastCause = ""

    init(what: String, policy: BackoffPolicy, timing: SourceTiming, logger: Logger) {
        self.what = what
        self.backoff = Backoff(policy: policy, timing: timing)
        self.logger = logger
    }

    /// Logs if this starts a streak, then sleeps; false when cancelled during the sleep.
    mutating func failed(_ error: Error) async -> Bool {
        // A request cut short because we are stopping is not a failure worth a log line.
        if Task.isCancelled { return false }
        let cause = "\(error)"
        if failures == 0 || cause != lastCause {
            logger.warning(
                "\(what) failed, retrying with backoff (up to \(backoff.policy.cap) plus jitter); not logged again until the cause changes",
                metadata: ["error": "\(cause)"])
        }
        lastCause = cause
        failures += 1
        return await backoff.sleep()
    }

    /// Sleeps the loop's next backoff without counting a failure (the pause before a relist); false when cancelled.
    mutating func pause() async -> Bool {
        if Task.isCancelled { return false }
        return await backoff.sleep()
    }

    mutating func succeeded() {
        if failures > 0 {
            logger.info("\(what) recovered after \(failures) failed attempts")
        }
        failures = 0
        lastCause = ""
    }
}

func metadata(_ object: JSONObject) -> JSONObject {
    object["metadata"]?.objectValue ?? JSONObject()
}

func objectName(_ object: JSONObject) -> ObjectName {
    let m = metadata(object)
    return ObjectName(namespace: m["namespace"]?.stringValue ?? "", name: m["name"]?.stringValue ?? "")
}

/// A list of objects; empty when it is anything else or holds anything but objects (as the `[[String: Any]]`
/// cast this replaces did).
func objects(_ value: JSONValue?) -> [JSONObject] {
    guard let list = value?.arrayValue else { return [] }
    var out: [JSONObject] = []
    out.reserveCapacity(list.count)
    for item in list {
        guard case .object(let o) = item else { return [] }
        out.append(o)
    }
    return out
}
