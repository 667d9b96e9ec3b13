// A plain-HTTP stand-in for the Kubernetes apiserver, for kernel end-to-end tests of kube-natd's
// apiserver source. It holds Services, EndpointSlices and Nodes in memory under one global
// resourceVersion counter and answers list (paging), watch (chunked events, bookmarks, 410 for
// resourceVersions it never issued) and discovery as the real apiserver does. The test drives it
// through a small control API:
//
//   PUT    /control/objects                      body: one object, or a List (`items`); creates or replaces each
//   DELETE /control/objects/<kind>/<ns>/<name>   ns "-" for cluster-scoped kinds
//   POST   /control/cut-watches                  ends every open watch (as a proxy or a network cut would)
//   POST   /control/compact                      forgets the event history: a watch that resumes from an older
//                                                resourceVersion gets 410 Gone and must relist
//   POST   /control/latency?ms=N                 delays every list and watch answer by N ms (0: none)
//   GET    /control/state                        every object held, as a List (for a restart with --preload)
//   GET    /control/requests                     the lists and watches asked of it (the last 10,000): path, query
//
// Lists answer by resourceVersion as the apiserver does: "0" from the "watch cache" (the whole list, `limit`
// ignored), a number at least that new (the whole list; a number it has not reached yet is refused with 504
// ResourceVersionTooLarge), none (a consistent read from "etcd": paginated by `limit`/`continue`).
//
// Everything runs on one event loop, so the store needs no locks.
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One followed kind: where it is listed and what its list is called.
struct Kind {
    var name: String
    var path: String
    var apiVersion: String
    var namespaced: Bool
}

let kinds: [Kind] = [
    Kind(name: "Service", path: "/api/v1/services", apiVersion: "v1", namespaced: true),
    Kind(name: "EndpointSlice", path: "/apis/discovery.k8s.io/v1/endpointslices", apiVersion: "discovery.k8s.io/v1", namespaced: true),
    Kind(name: "Node", path: "/api/v1/nodes", apiVersion: "v1", namespaced: false),
]

func kind(named name: String) -> Kind? { kinds.first { $0.name.lowercased() == name.lowercased() } }

/// One change, kept for watches that resume from an older resourceVersion.
struct Event {
    var rv: Int
    var kind: String
    var type: String
    var object: [String: Any]
}

/// A query's filters: `labelSelector` exclusions (`!key`) and `fieldSelector` metadata.name / namespace.
struct Filter {
    var excludedLabels: [String] = []
    var name: String?
    var namespace: String?

    init(query: [String: String]) {
        for term in (query["labelSelector"] ?? "").split(separator: ",") where term.hasPrefix("!") {
            excludedLabels.append(String(term.dropFirst()))
        }
        for term in (query["fieldSelector"] ?? "").split(separator: ",") {
            let kv = term.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { continue }
            if kv[0] == "metadata.name" { name = kv[1] }
            if kv[0] == "metadata.namespace" { namespace = kv[1] }
        }
    }

    func matches(_ object: [String: Any]) -> Bool {
        let meta = object["metadata"] as? [String: Any] ?? [:]
        let labels = meta["labels"] as? [String: Any] ?? [:]
        if excludedLabels.contains(where: { labels[$0] != nil }) { return false }
        if let name, meta["name"] as? String != name { return false }
        if let namespace, meta["namespace"] as? String ?? "" != namespace { return false }
        return true
    }
}

/// An open watch: the connection it streams to and what it wants.
final class Watcher {
    let context: ChannelHandlerContext
    let kind: String
    let filter: Filter
    var bookmarks: RepeatedTask?
    var done = false

    init(context: ChannelHandlerContext, kind: String, filter: Filter) {
        self.context = context
        self.kind = kind
        self.filter = filter
    }
}

/// The objects, the counter, the history and the open watches.
final class Store {
    var rv: Int
    /// The oldest resourceVersion a watch may resume from (everything after it is in `history`).
    var firstRV: Int
    /// Added to every list and watch answer (`/control/latency`).
    var latency: TimeAmount = .zero
    /// No line per change on stdout (a soak makes thousands).
    var quiet = false
    /// Paged lists in progress: each continue token reads the snapshot its first page was cut from, as the
    /// apiserver serves every page of a list from one etcd revision (offsets into the live list would skip or
    /// repeat objects changed between pages).
    var listSnapshots: [Int: (rv: Int, items: [[String: Any]])] = [:]
    var nextSnapshot = 1
    var objects: [String: [String: Any]] = [:]  // "Kind/ns/name"
    var history: [Event] = []
    var watchers: [ObjectIdentifier: Watcher] = [:]
    /// Every list and watch asked for, in order (`/control/requests`).
    var requests: [[String: Any]] = []

    init(startRV: Int) {
        rv = startRV
        firstRV = startRV
    }

    static func key(_ kind: String, _ ns: String, _ name: String) -> String { "\(kind)/\(ns)/\(name)" }

    func record(_ type: String, kind: String, object: [String: Any]) {
        let event = Event(rv: rv, kind: kind, type: type, object: object)
        history.append(event)
        for w in watchers.values where w.kind == kind && w.filter.matches(object) { send(event, to: w) }
    }

    func put(_ object: [String: Any]) throws -> String {
        guard let kindName = object["kind"] as? String, let k = kind(named: kindName) else {
            throw ControlError.bad("object kind must be one of \(kinds.map(\.name))")
        }
        var object = object
        var meta = object["metadata"] as? [String: Any] ?? [:]
        guard let name = meta["name"] as? String, !name.isEmpty else { throw ControlError.bad("metadata.name missing") }
        let ns = k.namespaced ? (meta["namespace"] as? String ?? "default") : ""
        if k.namespaced { meta["namespace"] = ns }
        let key = Store.key(k.name, ns, name)
        let old = objects[key]
        rv += 1
        meta["resourceVersion"] = "\(rv)"
        meta["uid"] = (old?["metadata"] as? [String: Any])?["uid"] ?? UUID().uuidString.lowercased()
        object["metadata"] = meta
        object["apiVersion"] = k.apiVersion
        objects[key] = object
        record(old == nil ? "ADDED" : "MODIFIED", kind: k.name, object: object)
        return key
    }

    func delete(kind kindName: String, ns: String, name: String) -> Bool {
        guard let k = kind(named: kindName) else { return false }
        let key = Store.key(k.name, k.namespaced ? ns : "", name)
        guard var object = objects.removeValue(forKey: key) else { return false }
        rv += 1
        var meta = object["metadata"] as? [String: Any] ?? [:]
        meta["resourceVersion"] = "\(rv)"
        object["metadata"] = meta
        record("DELETED", kind: k.name, object: object)
        return true
    }

    func list(_ k: Kind, filter: Filter) -> [[String: Any]] {
        objects.filter { $0.key.hasPrefix(k.name + "/") && filter.matches($0.value) }
            .sorted { $0.key < $1.key }.map(\.value)
    }

    func send(_ event: Event, to w: Watcher) {
        sendLine(["type": event.type, "object": event.object], to: w)
    }

    func sendLine(_ json: [String: Any], to w: Watcher) {
        guard !w.done, let data = try? JSONSerialization.data(withJSONObject: json) else { return }
        var buffer = w.context.channel.allocator.buffer(capacity: data.count + 1)
        buffer.writeBytes(data)
        buffer.writeString("\n")
        w.context.writeAndFlush(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
    }

    func end(_ w: Watcher) {
        guard !w.done else { return }
        w.done = true
        w.bookmarks?.cancel()
        watchers[ObjectIdentifier(w)] = nil
        w.context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
    }
}

enum ControlError: Error { case bad(String) }

func status(_ code: Int, _ reason: String, _ message: String) -> [String: Any] {
    ["kind": "Status", "apiVersion": "v1", "metadata": [:] as [String: Any], "status": "Failure",
     "message": message, "reason": reason, "code": code]
}

final class Handler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let store: Store
    var head: HTTPRequestHead?
    var body = ByteBuffer()
    var watcher: Watcher?

    init(store: Store) { self.store = store }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
        case .body(var b): body.writeBuffer(&b)
        case .end:
            guard let head else { return }
            self.head = nil
            route(head, context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let w = watcher {
            w.done = true
            w.bookmarks?.cancel()
            store.watchers[ObjectIdentifier(w)] = nil
        }
        context.fireChannelInactive()
    }

    private func reply(_ code: Int, _ json: Any, context: ChannelHandlerContext) {
        let data = (try? JSONSerialization.data(withJSONObject: json, options: [.fragmentsAllowed])) ?? Data()
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: "\(data.count)")
        context.write(
            wrapOutboundOut(.head(.init(version: .http1_1, status: .init(statusCode: code), headers: headers))),
            promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: data)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func route(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let components = URLComponents(string: head.uri)
        let path = components?.path ?? head.uri
        var query: [String: String] = [:]
        for item in components?.queryItems ?? [] { query[item.name] = item.value ?? "" }
        let parts = path.split(separator: "/").map(String.init)

        switch (head.method, path) {
        case (.GET, "/apis/discovery.k8s.io/v1"):
            reply(200, ["kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "discovery.k8s.io/v1",
                        "resources": [["name": "endpointslices", "singularName": "endpointslice", "namespaced": true,
                                       "kind": "EndpointSlice", "verbs": ["list", "watch"]]]], context: context)
        case (.GET, "/healthz"), (.GET, "/readyz"):
            reply(200, "ok", context: context)
        case (.PUT, "/control/objects"):
            let data = Data(body.readableBytesView)
            do {
                guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                    throw ControlError.bad("body must be a JSON object")
                }
                for item in (object["items"] as? [[String: Any]]) ?? [object] {
                    let key = try store.put(item)
                    if !store.quiet { print("fake-apiserver: put \(key) at resourceVersion \(store.rv)") }
                }
                reply(200, ["resourceVersion": "\(store.rv)"], context: context)
            } catch {
                reply(400, status(400, "BadRequest", "\(error)"), context: context)
            }
        case (.POST, "/control/cut-watches"):
            let n = store.watchers.count
            for w in Array(store.watchers.values) {
                store.end(w)
                w.context.close(promise: nil)
            }
            print("fake-apiserver: cut \(n) watches")
            reply(200, ["cut": n], context: context)
        case (.POST, "/control/compact"):
            store.history.removeAll()
            store.firstRV = store.rv
            print("fake-apiserver: history compacted at resourceVersion \(store.rv)")
            reply(200, ["resourceVersion": "\(store.rv)"], context: context)
        case (.POST, "/control/latency"):
            store.latency = .milliseconds(Int64(query["ms"] ?? "") ?? 0)
            print("fake-apiserver: latency \(query["ms"] ?? "0") ms")
            reply(200, ["ms": Int(query["ms"] ?? "") ?? 0], context: context)
        case (.GET, "/control/requests"):
            reply(200, ["items": store.requests], context: context)
        case (.GET, "/control/state"):
            let items = store.objects.sorted { $0.key < $1.key }.map(\.value)
            reply(200, ["kind": "List", "apiVersion": "v1", "metadata": ["resourceVersion": "\(store.rv)"],
                        "items": items], context: context)
        case (.DELETE, _) where parts.count == 5 && parts[0] == "control" && parts[1] == "objects":
            if store.delete(kind: parts[2], ns: parts[3] == "-" ? "" : parts[3], name: parts[4]) {
                print("fake-apiserver: deleted \(parts[2])/\(parts[3])/\(parts[4]) at resourceVersion \(store.rv)")
                reply(200, ["resourceVersion": "\(store.rv)"], context: context)
            } else {
                reply(404, status(404, "NotFound", "\(parts[2...].joined(separator: "/")) not found"), context: context)
            }
        case (.GET, _):
            guard let k = kinds.first(where: { $0.path == path }) else {
                reply(404, status(404, "NotFound", "the server could not find the requested resource"), context: context)
                return
            }
            let filter = Filter(query: query)
            let answer = { [self] in
                store.requests.append(["path": path, "query": query, "watch": query["watch"] == "true" || query["watch"] == "1"])
                if store.requests.count > 10_000 { store.requests.removeFirst(5_000) }
                if query["watch"] == "true" || query["watch"] == "1" {
                    watch(k, filter: filter, query: query, context: context)
                } else {
                    list(k, filter: filter, query: query, context: context)
                }
            }
            if store.latency == .zero {
                answer()
            } else {
                context.eventLoop.scheduleTask(in: store.latency) { answer() }
            }
        default:
            reply(405, status(405, "MethodNotAllowed", "\(head.method) \(path)"), context: context)
        }
    }

    /// Pages are offsets into a snapshot of the sorted list taken at the first page; the token names the snapshot,
    /// and every page reports the snapshot's resourceVersion, as the apiserver's pages do.
    private func list(_ k: Kind, filter: Filter, query: [String: String], context: ChannelHandlerContext) {
        var all: [[String: Any]]
        var offset = 0
        var rv = store.rv
        var snapshot = 0
        if let token = query["continue"], !token.isEmpty {
            let p = token.split(separator: ":").compactMap { Int($0) }
            guard p.count == 2, let held = store.listSnapshots[p[0]] else {
                reply(410, status(410, "Expired", "the continue token is no longer valid"), context: context)
                return
            }
            snapshot = p[0]
            offset = p[1]
            (rv, all) = held
        } else {
            all = store.list(k, filter: filter)
        }
        var limit = Int(query["limit"] ?? "") ?? 0
        if let asked = query["resourceVersion"], !asked.isEmpty, query["continue"] == nil {
            // Not a consistent read: the watch cache answers, whole (it ignores `limit` for "0"; client-go sends
            // none for a number), at its current state, which is at least as new as asked unless it is not there yet.
            guard let n = Int(asked), n <= store.rv else {
                var tooLarge = status(504, "Timeout", "Too large resource version: \(asked), current: \(store.rv)")
                tooLarge["details"] = ["causes": [["reason": "ResourceVersionTooLarge", "message": "Too large resource version"]],
                                       "retryAfterSeconds": 1] as [String: Any]
                reply(504, tooLarge, context: context)
                return
            }
            limit = 0
        }
        let end = limit > 0 ? min(all.count, offset + limit) : all.count
        var meta: [String: Any] = ["resourceVersion": "\(rv)"]
        if end < all.count {
            if snapshot == 0 {
                snapshot = store.nextSnapshot
                store.nextSnapshot += 1
                store.listSnapshots[snapshot] = (rv, all)
                // A client that never comes back for the rest does not keep the snapshot for ever.
                context.eventLoop.scheduleTask(in: .seconds(120)) { [store] in store.listSnapshots[snapshot] = nil }
            }
            meta["continue"] = "\(snapshot):\(end)"
        } else if snapshot != 0 {
            store.listSnapshots[snapshot] = nil
        }
        let items = offset < end ? Array(all[offset..<end]) : []
        reply(200, ["kind": "\(k.name)List", "apiVersion": k.apiVersion, "metadata": meta, "items": items],
              context: context)
    }

    private func watch(_ k: Kind, filter: Filter, query: [String: String], context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Transfer-Encoding", value: "chunked")
        context.writeAndFlush(wrapOutboundOut(.head(.init(version: .http1_1, status: .ok, headers: headers))),
                              promise: nil)
        let w = Watcher(context: context, kind: k.name, filter: filter)
        watcher = w
        store.watchers[ObjectIdentifier(w)] = w
        let requested = query["resourceVersion"] ?? ""
        if let from = Int(requested), from != 0 {
            // A resourceVersion this server never issued (older than its start, or from a previous
            // run) is gone from its watch cache: 410, and the client relists.
            guard from >= store.firstRV && from <= store.rv else {
                store.sendLine(["type": "ERROR", "object": status(410, "Expired", "too old resource version: \(from) (\(store.firstRV))")], to: w)
                store.end(w)
                return
            }
            for e in store.history where e.rv > from && e.kind == k.name && filter.matches(e.object) {
                store.send(e, to: w)
            }
        } else {
            // resourceVersion "" or "0": the current state as ADDED events, then changes.
            for object in store.list(k, filter: filter) {
                store.sendLine(["type": "ADDED", "object": object], to: w)
            }
        }
        let timeout = Int64(query["timeoutSeconds"] ?? "") ?? 1800
        context.eventLoop.scheduleTask(in: .seconds(max(1, timeout))) { [store] in store.end(w) }
        if query["allowWatchBookmarks"] == "true" {
            w.bookmarks = context.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) {
                [store, apiVersion = k.apiVersion] _ in
                store.sendLine(["type": "BOOKMARK", "object": ["kind": k.name, "apiVersion": apiVersion,
                                "metadata": ["resourceVersion": "\(store.rv)"]]], to: w)
            }
        }
    }
}

// MARK: - main

var listen = "127.0.0.1:6443"
var startRV = 1
var preload: [String] = []
var quietFlag = false
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--listen": listen = args.popFirst() ?? listen
    case "--start-resource-version": startRV = Int(args.popFirst() ?? "") ?? startRV
    // An apiserver that comes back after a restart still has its objects (they live in etcd).
    case "--preload": preload.append(args.popFirst() ?? "")
    case "--quiet": quietFlag = true
    default:
        FileHandle.standardError.write("usage: fake-apiserver [--listen HOST:PORT] [--start-resource-version N] [--preload OBJECT-or-LIST.json]... [--quiet]\n".data(using: .utf8)!)
        exit(2)
    }
}
guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]) else {
    FileHandle.standardError.write("fake-apiserver: --listen wants HOST:PORT\n".data(using: .utf8)!)
    exit(2)
}
let host = String(listen[..<colon])
setvbuf(stdout, nil, _IOLBF, 0)

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let store = Store(startRV: startRV)
store.quiet = quietFlag
// A preload file holds one object, or a List (`items`) of them, as `natd-bench generate` writes a cluster.
for file in preload {
    guard let data = FileManager.default.contents(atPath: file),
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
        ((object["items"] as? [[String: Any]]) ?? [object]).allSatisfy({ (try? store.put($0)) != nil })
    else {
        FileHandle.standardError.write("fake-apiserver: cannot preload \(file)\n".data(using: .utf8)!)
        exit(2)
    }
}
let channel = try ServerBootstrap(group: group)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
            channel.pipeline.addHandler(Handler(store: store))
        }
    }
    .bind(host: host, port: port).wait()
print("fake-apiserver: listening on \(listen), resourceVersion \(startRV)")
try channel.closeFuture.wait()
