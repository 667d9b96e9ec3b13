import Foundation
import KubeModel
import Logging
import XCTest

@testable import KubeSource

/// The source lists and relists as client-go's reflector does, under a token-bucket rate limit, and counts its
/// requests; asserted from what the test apiserver was asked, on a test clock (no sleeps, no timing asserts).
final class ReflectorTests: XCTestCase {
    let services = "/api/v1/services"

    /// Records every request the observer is told of, in order.
    final class Requests: @unchecked Sendable {
        private let lock = NSLock()
        private var seen: [String] = []
        var all: [String] { lock.withLock { seen } }
        var observer: APIRequestObserver { { r, v, c in self.lock.withLock { self.seen.append("\(r) \(v) \(c)") } } }
    }

    /// A cluster whose Service lists answer by resourceVersion: "0" (watch cache) at 100, the consistent read at
    /// 2000, and a list from `refusedRV` with `refusal`; the first watch (from 100) gets to 150 by a bookmark and
    /// then ends in ERROR 410; later watches stall.
    func relistCluster(refusedRV: String, refusal: TestAPIServer.Reply) async throws -> TestAPIServer {
        let cluster = FakeCluster()
        let firstWatch = Box(true)
        return try await TestAPIServer.start { req in
            guard req.path == "/api/v1/services" else { return cluster.route(req) }
            if req.isWatch {
                let first = firstWatch.with { (value: inout Bool) -> Bool in
                    let was = value
                    value = false
                    return was
                }
                guard first else { return .stream([.stall]) }
                return .stream([
                    .send(Wire.event("ADDED", Wire.service("shop", "cart", rv: "101"))),
                    .send(Wire.bookmark(rv: "150")),
                    .send(Wire.event("ERROR", Wire.gone)), .end,
                ])
            }
            switch req.query["resourceVersion"] {
            case "0"?:
                return .json(
                    status: 200,
                    body: Wire.list(kind: "ServiceList", rv: "100", items: [Wire.service("shop", "web", rv: "90")]))
            case refusedRV?: return refusal
            case nil:
                return .json(
                    status: 200,
                    body: Wire.list(kind: "ServiceList", rv: "2000", items: [Wire.service("shop", "web", rv: "1999")]))
            default:
                return .json(status: 400, body: Wire.status(code: 400, reason: "BadRequest", message: "unexpected"))
            }
        }
    }

    func assertReflectorSequence(refusal: TestAPIServer.Reply, code: String, file: StaticString = #filePath,
                                 line: UInt = #line) async throws {
        let server = try await relistCluster(refusedRV: "150", refusal: refusal)
        defer { Task { await server.stop() } }
        let clock = TestTiming()
        let requests = Requests()
        var options = SourceOptions.onTestClock(clock)
        options.onRequest = requests.observer
        let serviceRequests = { server.requests.filter { $0.path == self.services } }
        try await withSource(ClusterCredentials(server: server.url), options: options) { log in
            await log.wait(for: "upsert Service shop/cart@101")
            // The watch ended in 410: the relist waits for the reflector's backoff (800 ms, jitter 0 here).
            await eventually("the pause before the relist") { clock.pending.contains(.milliseconds(800)) }
            XCTAssertEqual(serviceRequests().count, 2, "no relist before the backoff has passed", file: file, line: line)
            clock.advance(by: .milliseconds(800))
            await log.wait(for: "replaceAll Service [shop/web@1999]")
            await eventually("the watch from the consistent list") { serviceRequests().count == 5 }
        }
        let seen = serviceRequests()
        XCTAssertEqual(
            seen.map { r in
                ["watch", "resourceVersion", "limit"].map { "\($0)=\(r.query[$0] ?? "-")" }.joined(separator: " ")
            },
            [
                "watch=- resourceVersion=0 limit=500",  // first list: the watch cache, paginated as client-go does
                "watch=true resourceVersion=100 limit=-",  // watch from the list's resourceVersion
                "watch=- resourceVersion=150 limit=-",  // 410: relist from the last seen (the bookmark), no limit
                "watch=- resourceVersion=- limit=500",  // that refused: a consistent, paginated list
                "watch=true resourceVersion=2000 limit=-",
            ], file: file, line: line)
        // The last watch is still open when the test stops the source: its status is 200 when the answer's head
        // arrived first, "<error>" when the stop came first (seen under ThreadSanitizer); either way it was asked.
        let services = requests.all.filter { $0.hasPrefix("services") }
        XCTAssertEqual(
            Array(services.prefix(4)),
            ["services list 200", "services watch 200", "services list \(code)", "services list 200"],
            file: file, line: line)
        XCTAssertEqual(services.count, 5, "\(services)", file: file, line: line)
        XCTAssertTrue(
            ["services watch 200", "services watch <error>"].contains(services.last ?? ""), "\(services)",
            file: file, line: line)
        XCTAssertTrue(requests.all.contains("discovery get 200"), file: file, line: line)
    }

    func testAWatchEndingIn410RelistsFromTheLastResourceVersionThenConsistentlyWhenThatIsExpired() async throws {
        try await assertReflectorSequence(refusal: .json(status: 410, body: Wire.gone), code: "410")
    }

    func testARelistRefusedAsTooLargeFallsBackToAConsistentList() async throws {
        try await assertReflectorSequence(refusal: .json(status: 504, body: Wire.tooLarge), code: "504")
    }

    func testAWatchErrorTooLargeRelistsFromTheLastResourceVersion() async throws {
        let cluster = FakeCluster()
        cluster.list(
            services, .json(status: 200, body: Wire.list(kind: "ServiceList", rv: "100", items: [])),
            .json(status: 200, body: Wire.list(kind: "ServiceList", rv: "200", items: [])))
        cluster.watch(
            services,
            .stream([
                .send(Wire.event("ERROR", Wire.status(code: 504, reason: "Timeout", message: "Too large resource version: 100, current: 20"))),
                .end,
            ]))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        let clock = TestTiming()
        try await withSource(ClusterCredentials(server: server.url), options: .onTestClock(clock)) { log in
            await eventually("the pause before the relist") { clock.pending == [.milliseconds(800)] }
            clock.advance(by: .milliseconds(800))
            await eventually("the watch after the relist") {
                server.requests.filter { $0.path == self.services && $0.isWatch }.count == 2
            }
        }
        let seen = server.requests.filter { $0.path == services }
        XCTAssertEqual(seen.map { "\($0.isWatch ? "watch" : "list") \($0.query["resourceVersion"] ?? "-")" },
                       ["list 0", "watch 100", "list 100", "watch 200"])
    }

    func testAPaginatedFirstListKeepsLaterListsPaginated() async throws {
        // A paginated answer to RV=0 means the watch cache is off: client-go keeps the limit on later lists too.
        let cluster = FakeCluster()
        let server = try await TestAPIServer.start { req in
            guard req.path == "/api/v1/services", !req.isWatch else {
                return req.path == "/api/v1/services"
                    ? .stream([.send(Wire.event("ERROR", Wire.gone)), .end]) : cluster.route(req)
            }
            if req.query["continue"] == nil && req.query["resourceVersion"] == "0" {
                return .json(
                    status: 200,
                    body: Wire.list(kind: "ServiceList", rv: "100", continue: "t", items: [Wire.service("a", "s1", rv: "1")]))
            }
            return .json(status: 200, body: Wire.list(kind: "ServiceList", rv: "100", items: [Wire.service("b", "s2", rv: "2")]))
        }
        defer { Task { await server.stop() } }
        let clock = TestTiming()
        try await withSource(ClusterCredentials(server: server.url), options: .onTestClock(clock)) { log in
            await log.wait(for: "replaceAll Service [a/s1@1, b/s2@2]")
            await eventually("the pause before the relist") { clock.pending.contains(.milliseconds(800)) }
            clock.advance(by: .milliseconds(800))
            await eventually("the relist") {
                server.requests.filter { $0.path == self.services && !$0.isWatch }.count == 3
            }
        }
        let lists = server.requests.filter { $0.path == services && !$0.isWatch }
        XCTAssertEqual(lists[2].query["resourceVersion"], "100")
        XCTAssertEqual(lists[2].query["limit"], "500")
    }

    func testEveryRequestTakesATokenListAndWatchAlike() async throws {
        let cluster = FakeCluster()
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        let clock = TestTiming()
        let limiter = RequestRateLimiter(qps: 1, burst: 3, timing: clock.timing)
        var options = SourceOptions.onTestClock(clock)
        options.rateLimiter = limiter
        try await withSource(ClusterCredentials(server: server.url), options: options) { log in
            // The source wants five requests (Service list and watch, discovery, EndpointSlice list and watch; the
            // watches stall). Burst 3: three go at once, in whatever order the loops reach the limiter; the rest wait,
            // and with the clock standing still no token comes back.
            await eventually("three requests granted and the next waiting") {
                limiter.granted == 3 && limiter.waiting >= 1 && server.requests.count == 3
            }
            // One token a second, whoever waits.
            clock.advance(by: .seconds(1))
            await eventually("the fourth request") { server.requests.count == 4 }
            await eventually("the fifth waiting") { limiter.waiting == 1 }
            XCTAssertEqual(server.requests.count, 4)
            clock.advance(by: .seconds(1))
            await eventually("the fifth request") { server.requests.count == 5 }
            XCTAssertEqual(server.requests.filter(\.isWatch).count, 2, "watches take tokens as lists do")
            XCTAssertEqual(limiter.granted, 5)
        }
    }

    // MARK: - This node's Node

    func testTheNodeArrivesChangesAndIsDeleted() async throws {
        let cluster = FakeCluster()
        cluster.list(
            "/api/v1/nodes",
            .json(status: 200, body: Wire.list(kind: "NodeList", rv: "500", items: [Wire.node("node-a", rv: "499")])))
        cluster.watch(
            "/api/v1/nodes",
            .stream([
                .send(Wire.event("MODIFIED", Wire.node("node-a", rv: "501", zone: "eu-west-1b"))),
                .send(Wire.event("DELETED", Wire.node("node-a", rv: "502", zone: "eu-west-1b"))),
            ]))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        try await withSource(ClusterCredentials(server: server.url), options: .fast(nodeName: "node-a")) { log in
            await log.wait { _ in log.nodes.count == 3 }
            let nodes = log.nodes
            XCTAssertEqual(nodes[0]?.name, "node-a")
            XCTAssertNil(nodes[0]?.zone)
            XCTAssertEqual(nodes[1]?.zone, "eu-west-1b", "a label change arrives")
            XCTAssertNil(nodes[2] ?? nil, "a delete arrives as no Node")
        }
        let nodeRequests = server.requests.filter { $0.path == "/api/v1/nodes" }
        XCTAssertTrue(nodeRequests.allSatisfy { $0.query["fieldSelector"] == "metadata.name=node-a" })
        XCTAssertEqual(nodeRequests.first?.query["resourceVersion"], "0")
    }

    func testTheStoreSeesTheNodeThroughTheClusterSource() async throws {
        let cluster = FakeCluster()
        cluster.list(
            "/api/v1/nodes",
            .json(
                status: 200,
                body: Wire.list(kind: "NodeList", rv: "500", items: [Wire.node("node-a", rv: "499", zone: "zone-a")])))
        cluster.watch(
            "/api/v1/nodes", .stream([.send(Wire.event("MODIFIED", Wire.node("node-a", rv: "501", zone: "zone-b")))]))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        let store = ClusterStore()
        let source = APIServerClusterSource(
            credentials: ClusterCredentials(server: server.url), options: .fast(nodeName: "node-a"),
            logger: Logger(label: "test"))
        let task = Task { await source.run(into: store) }
        defer { task.cancel() }
        let first = await store.waitForNode(timeout: .seconds(30))
        XCTAssertNotNil(first)
        let moved = await store.waitForNode(timeout: .seconds(30)) { $0.zone == "zone-b" }
        XCTAssertEqual(moved?.zone, "zone-b")
        XCTAssertEqual(store.take().state.node?.zone, "zone-b")
        XCTAssertEqual(store.node?.podCIDRs.first, CIDR("10.244.1.0/24"))
    }
}
