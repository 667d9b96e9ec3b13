import Foundation
import KubeModel
import KubeSource
import XCTest

final class ListWatchTests: XCTestCase {
    let services = "/api/v1/services"
    let slices = "/apis/discovery.k8s.io/v1/endpointslices"

    func testListThenWatchCarriesResourceVersionSelectorAndBookmarks() async throws {
        let cluster = FakeCluster()
        cluster.list(
            services,
            .json(
                status: 200,
                body: Wire.list(
                    kind: "ServiceList", rv: "100",
                    items: [Wire.service("default", "kubernetes", rv: "7"), Wire.service("shop", "web", rv: "90")])))
        cluster.watch(
            services,
            .stream([
                .send(Wire.event("ADDED", Wire.service("shop", "cart", rv: "101"))),
                .send(Wire.event("MODIFIED", Wire.service("shop", "web", rv: "102"))),
                .send(Wire.event("DELETED", Wire.service("shop", "cart", rv: "103"))),
                .send(Wire.bookmark(rv: "150")),
                .end,
            ]))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }

        try await withSource(ClusterCredentials(server: server.url)) { log in
            await log.wait { $0.contains("delete Service shop/cart") }
            await log.wait { _ in server.requests.filter { $0.path == self.services && $0.isWatch }.count >= 2 }
            XCTAssertEqual(
                Array(log.lines.filter { $0.contains("Service") }.prefix(5)),
                [
                    "replaceAll Service [default/kubernetes@7, shop/web@90]", "synced Service",
                    "upsert Service shop/cart@101", "upsert Service shop/web@102", "delete Service shop/cart",
                ])
        }
        let reqs = server.requests.filter { $0.path == services }
        let list = try XCTUnwrap(reqs.first)
        XCTAssertFalse(list.isWatch)
        XCTAssertEqual(list.query["limit"], "500")
        XCTAssertEqual(list.query["resourceVersion"], "0", "the first list is served from the watch cache")
        XCTAssertNil(list.query["resourceVersionMatch"], "client-go's reflector sends none on a list")
        XCTAssertEqual(
            list.query["labelSelector"], "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name")
        let watches = reqs.filter(\.isWatch)
        XCTAssertEqual(watches[0].query["resourceVersion"], "100")
        XCTAssertEqual(watches[0].query["allowWatchBookmarks"], "true")
        XCTAssertEqual(watches[0].query["labelSelector"], list.query["labelSelector"])
        XCTAssertNotNil(Int(watches[0].query["timeoutSeconds"] ?? ""))
        // The server ended the watch; the next one resumes at the bookmark, without a relist.
        XCTAssertEqual(watches[1].query["resourceVersion"], "150")
        XCTAssertEqual(reqs.filter { !$0.isWatch }.count, 1)
    }

    func testPagedListFollowsContinueTokens() async throws {
        let cluster = FakeCluster()
        let server = try await TestAPIServer.start { req in
            if req.path == "/api/v1/services" && !req.isWatch {
                if req.query["continue"] == "page-2-token" {
                    return .json(
                        status: 200,
                        body: Wire.list(kind: "ServiceList", rv: "300", items: [Wire.service("b", "s3", rv: "3")]))
                }
                return .json(
                    status: 200,
                    body: Wire.list(
                        kind: "ServiceList", rv: "300", continue: "page-2-token",
                        items: [Wire.service("a", "s1", rv: "1"), Wire.service("a", "s2", rv: "2")]))
            }
            return cluster.route(req)
        }
        defer { Task { await server.stop() } }
        var options = SourceOptions.fast()
        options.pageSize = 2
        try await withSource(ClusterCredentials(server: server.url), options: options) { log in
            await log.wait(for: "replaceAll Service [a/s1@1, a/s2@2, b/s3@3]")
            await log.wait { _ in server.requests.contains { $0.path == self.services && $0.isWatch } }
        }
        let lists = server.requests.filter { $0.path == services && !$0.isWatch }
        XCTAssertEqual(lists.map { $0.query["limit"] }, ["2", "2"])
        XCTAssertEqual(lists.map { $0.query["continue"] }, [nil, "page-2-token"])
        XCTAssertEqual(server.requests.first { $0.path == services && $0.isWatch }?.query["resourceVersion"], "300")
    }

    func testExpiredContinueTokenFallsBackToOneFullList() async throws {
        let cluster = FakeCluster()
        let server = try await TestAPIServer.start { req in
            if req.path == "/api/v1/services" && !req.isWatch {
                if req.query["continue"] != nil { return .json(status: 410, body: Wire.gone) }
                if req.query["limit"] == nil {
                    return .json(
                        status: 200,
                        body: Wire.list(
                            kind: "ServiceList", rv: "300",
                            items: [Wire.service("a", "s1", rv: "1"), Wire.service("b", "s3", rv: "3")]))
                }
                return .json(
                    status: 200,
                    body: Wire.list(
                        kind: "ServiceList", rv: "300", continue: "tok", items: [Wire.service("a", "s1", rv: "1")]))
            }
            return cluster.route(req)
        }
        defer { Task { await server.stop() } }
        try await withSource(ClusterCredentials(server: server.url)) { log in
            await log.wait(for: "replaceAll Service [a/s1@1, b/s3@3]")
        }
        // As client-go's pager: the expired token is not retried page by page; one list without a limit follows.
        let lists = server.requests.filter { $0.path == services && !$0.isWatch }
        XCTAssertEqual(lists.map { $0.query["limit"] }, ["500", "500", nil])
        XCTAssertEqual(lists.map { $0.query["continue"] }, [nil, "tok", nil])
        XCTAssertEqual(lists.map { $0.query["resourceVersion"] }, ["0", nil, nil])
    }

    func testDroppedConnectionMidStreamResumesFromLastResourceVersion() async throws {
        let cluster = FakeCluster()
        cluster.list(services, .json(status: 200, body: Wire.list(kind: "ServiceList", rv: "100", items: [])))
        cluster.watch(
            services,
            .stream([
                .send(Wire.event("ADDED", Wire.service("shop", "web", rv: "101"))), .pause(milliseconds: 20), .drop,
            ]),
            .stream([.send(Wire.event("ADDED", Wire.service("shop", "cart", rv: "102")))]))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        try await withSource(ClusterCredentials(server: server.url)) { log in
            await log.wait(for: "upsert Service shop/cart@102")
        }
        let watches = server.requests.filter { $0.path == services && $0.isWatch }
        XCTAssertEqual(watches.prefix(2).map { $0.query["resourceVersion"] }, ["100", "101"])
        XCTAssertEqual(server.requests.filter { $0.path == services && !$0.isWatch }.count, 1, "a drop must not relist")
    }

    func testStalledWatchTimesOutOnTheClientAndResumes() async throws {
        let cluster = FakeCluster()
        cluster.list(services, .json(status: 200, body: Wire.list(kind: "ServiceList", rv: "100", items: [])))
        cluster.watch(
            services,
            .stream([.send(Wire.event("ADDED", Wire.service("shop", "web", rv: "101"))), .stall]),
            .stream([.send(Wire.event("ADDED", Wire.service("shop", "cart", rv: "102"))), .stall]))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        // timeoutSeconds=1 plus 0.5 s grace: the client gives up on the silent connection and watches again.
        try await withSource(ClusterCredentials(server: server.url)) { log in
            await log.wait(for: "upsert Service shop/cart@102")
        }
        let watches = server.requests.filter { $0.path == services && $0.isWatch }
        XCTAssertEqual(watches.prefix(2).map { $0.query["resourceVersion"] }, ["100", "101"])
    }

    func testServerErrorsAreRetriedWithBackoffAndLoggedOncePerStreak() async throws {
        let cluster = FakeCluster()
        let failing = Box(3)
        let server = try await TestAPIServer.start { req in
            if req.path == "/api/v1/services" && !req.isWatch
                && failing.with({
                    $0 -= 1
                    return $0 >= 0
                })
            {
                return .json(
                    status: 500,
                    body: Wire.status(code: 500, reason: "InternalError", message: "etcdserver: request timed out"))
            }
            return cluster.route(req)
        }
        defer { Task { await server.stop() } }
        let capture = LogCapture()
        try await withSource(ClusterCredentials(server: server.url), logger: capture.logger) { log in
            await log.wait(for: "synced Service")
        }
        XCTAssertEqual(server.requests.filter { $0.path == services && !$0.isWatch }.count, 4)
        XCTAssertEqual(capture.count(.warning, containing: "list/watch Service failed"), 1)
        XCTAssertEqual(capture.count(.warning, containing: "etcdserver: request timed out"), 1)
        XCTAssertEqual(capture.count(.info, containing: "list/watch Service recovered after 3 failed attempts"), 1)
    }

    func testGoneErrorEventRelistsAndReplacesAll() async throws {
        let cluster = FakeCluster()
        cluster.list(
            services,
            .json(
                status: 200,
                body: Wire.list(
                    kind: "ServiceList", rv: "100",
                    items: [Wire.service("shop", "web", rv: "90"), Wire.service("shop", "cart", rv: "91")])),
            // cart was deleted while we could not watch: only a full replace tells the consumer.
            .json(
                status: 200,
                body: Wire.list(kind: "ServiceList", rv: "2000", items: [Wire.service("shop", "web", rv: "1999")])))
        cluster.watch(services, .stream([.send(Wire.event("ERROR", Wire.gone)), .end]))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        try await withSource(ClusterCredentials(server: server.url)) { log in
            await log.wait(for: "replaceAll Service [shop/web@1999]")
            await log.wait { _ in server.requests.filter { $0.path == self.services && $0.isWatch }.count >= 2 }
            XCTAssertEqual(log.lines.filter { $0 == "synced Service" }.count, 1)
        }
        let watches = server.requests.filter { $0.path == services && $0.isWatch }
        XCTAssertEqual(watches.prefix(2).map { $0.query["resourceVersion"] }, ["100", "2000"])
    }

    func testGoneStatusOnWatchRequestRelists() async throws {
        let cluster = FakeCluster()
        cluster.list(
            services,
            .json(
                status: 200,
                body: Wire.list(kind: "ServiceList", rv: "100", items: [Wire.service("shop", "web", rv: "90")])),
            .json(status: 200, body: Wire.list(kind: "ServiceList", rv: "500", items: [])))
        cluster.watch(services, .json(status: 410, body: Wire.gone))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        try await withSource(ClusterCredentials(server: server.url)) { log in
            await log.wait(for: "replaceAll Service []")
        }
    }

    func testBrokenObjectIsSkippedAndTheWatchGoesOn() async throws {
        let broken = Wire.service("shop", "bad", rv: "95").replacingOccurrences(
            of: "\"labels\":{", with: "\"labels\":{\"test/broken\":\"yes\",")
        let cluster = FakeCluster()
        cluster.list(
            services,
            .json(
                status: 200,
                body: Wire.list(kind: "ServiceList", rv: "100", items: [broken, Wire.service("shop", "web", rv: "90")]))
        )
        cluster.watch(
            services,
            .stream([
                .send(Wire.event("MODIFIED", broken)),
                .send(Wire.event("ADDED", Wire.service("shop", "cart", rv: "101"))),
            ]))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        let capture = LogCapture()
        try await withSource(ClusterCredentials(server: server.url), logger: capture.logger) { log in
            await log.wait(for: "upsert Service shop/cart@101")
            XCTAssertTrue(log.lines.contains("replaceAll Service [shop/web@90]"))
        }
        XCTAssertEqual(capture.count(.error, containing: "skipping Service shop/bad"), 2)
    }

    func testEndpointSlicesAreListedAndWatchedWithTheProxySelector() async throws {
        let cluster = FakeCluster()
        cluster.list(
            slices,
            .json(
                status: 200,
                body: Wire.list(
                    kind: "EndpointSliceList", rv: "40",
                    items: [Wire.endpointSlice("shop", "web", suffix: "abcde", rv: "39")])))
        cluster.watch(
            slices,
            .stream([
                .send(
                    Wire.event(
                        "MODIFIED", Wire.endpointSlice("shop", "web", suffix: "abcde", rv: "41", ip: "10.244.2.9")))
            ]))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        try await withSource(ClusterCredentials(server: server.url)) { log in
            await log.wait(for: "upsert EndpointSlice shop/web-abcde@41")
            XCTAssertTrue(log.lines.contains("replaceAll EndpointSlice [shop/web-abcde@39]"))
            XCTAssertTrue(log.lines.contains("synced EndpointSlice"))
        }
        XCTAssertEqual(
            server.requests.first { $0.path == slices }?.query["labelSelector"],
            "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name")
        XCTAssertFalse(server.requests.contains { $0.path == "/api/v1/endpoints" })
    }

    func testEndpointsAreFollowedWhenTheServerHasNoEndpointSliceAPI() async throws {
        let cluster = FakeCluster()
        cluster.hasEndpointSliceAPI = false
        cluster.list(
            "/api/v1/endpoints",
            .json(
                status: 200,
                body: Wire.list(kind: "EndpointsList", rv: "70", items: [Wire.endpoints("shop", "web", rv: "69")])))
        cluster.watch(
            "/api/v1/endpoints", .stream([.send(Wire.event("DELETED", Wire.endpoints("shop", "web", rv: "71")))]))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        let capture = LogCapture()
        try await withSource(ClusterCredentials(server: server.url), logger: capture.logger) { log in
            await log.wait(for: "delete Endpoints shop/web")
            XCTAssertTrue(log.lines.contains("replaceAll Endpoints [shop/web@69]"))
            XCTAssertTrue(log.lines.contains("synced Endpoints"))
        }
        XCTAssertFalse(server.requests.contains { $0.path == slices })
        XCTAssertEqual(capture.count(.warning, containing: "following v1 Endpoints"), 1)
    }

    func testOwnNodeSuppliesPodCIDRsAndAddresses() async throws {
        let cluster = FakeCluster()
        cluster.list(
            "/api/v1/nodes",
            .json(status: 200, body: Wire.list(kind: "NodeList", rv: "500", items: [Wire.node("node-a", rv: "499")])))
        cluster.watch(
            "/api/v1/nodes",
            .stream([
                // A heartbeat-only change: same CIDRs and addresses, no event.
                .send(Wire.event("MODIFIED", Wire.node("node-a", rv: "501"))),
                .send(Wire.event("MODIFIED", Wire.node("node-a", rv: "502", internalIP: "192.168.10.99"))),
            ]))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        try await withSource(ClusterCredentials(server: server.url), options: .fast(nodeName: "node-a")) { log in
            // The heartbeat came before the change on the same stream: once the change is here, the heartbeat has
            // been handled, and it must not have produced an event of its own.
            await log.wait { _ in log.nodes.count == 2 }
            let cidrs = [CIDR("10.244.1.0/24")!, CIDR("fd00:10:244:1::/64")!]
            let labels = ["kubernetes.io/hostname": "node-a", "kubernetes.io/os": "linux"]
            XCTAssertEqual(
                log.nodes,
                [
                    Node(
                        name: "node-a", labels: labels,
                        addresses: [
                            NodeAddress(type: "InternalIP", address: IPAddress("192.168.10.11")!),
                            NodeAddress(type: "ExternalIP", address: IPAddress("203.0.113.7")!),
                        ], podCIDRs: cidrs),
                    Node(
                        name: "node-a", labels: labels,
                        addresses: [
                            NodeAddress(type: "InternalIP", address: IPAddress("192.168.10.99")!),
                            NodeAddress(type: "ExternalIP", address: IPAddress("203.0.113.7")!),
                        ], podCIDRs: cidrs),
                ])
        }
        let nodeRequests = server.requests.filter { $0.path == "/api/v1/nodes" }
        XCTAssertTrue(nodeRequests.allSatisfy { $0.query["fieldSelector"] == "metadata.name=node-a" })
        XCTAssertEqual(nodeRequests.first { $0.isWatch }?.query["resourceVersion"], "500")
    }

    func testNonGoneErrorEventResumesTheWatchWithoutRelisting() async throws {
        let cluster = FakeCluster()
        cluster.list(services, .json(status: 200, body: Wire.list(kind: "ServiceList", rv: "100", items: [])))
        cluster.watch(
            services,
            .stream([
                .send(Wire.event("ADDED", Wire.service("shop", "web", rv: "101"))),
                .send(
                    Wire.event("ERROR", Wire.status(code: 500, reason: "InternalError", message: "etcd leader changed"))
                ),
                .end,
            ]),
            .stream([.send(Wire.event("ADDED", Wire.service("shop", "cart", rv: "102")))]))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        try await withSource(ClusterCredentials(server: server.url)) { log in
            await log.wait(for: "upsert Service shop/cart@102")
        }
        let reqs = server.requests.filter { $0.path == services }
        XCTAssertEqual(reqs.filter { !$0.isWatch }.count, 1)
        XCTAssertEqual(reqs.filter(\.isWatch).prefix(2).map { $0.query["resourceVersion"] }, ["100", "101"])
    }

    func testEventsStreamDeliversAndStopsWhenDropped() async throws {
        let cluster = FakeCluster()
        cluster.list(
            services,
            .json(
                status: 200, body: Wire.list(kind: "ServiceList", rv: "5", items: [Wire.service("a", "web", rv: "4")])))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        let source = APIServerSource(
            credentials: ClusterCredentials(server: server.url), options: .fast(), logger: .init(label: "test"),
            decode: TestObject.decode)
        let consumer = Task { () -> [String] in
            var seen: [String] = []
            for await event in source.events() {
                if case .synced(let kind) = event { seen.append("synced \(kind)") }
                if seen.count == 2 { break }
            }
            return seen
        }
        // Only against a hang (the stream must end when its consumer breaks out); no speed is asserted.
        let watchdog = Task {
            try await Task.sleep(for: .seconds(60))
            consumer.cancel()
        }
        let seen = await consumer.value
        watchdog.cancel()
        XCTAssertEqual(Set(seen), ["synced Service", "synced EndpointSlice"])
    }

    func testWatchesEndedAtOnceArePacedByBackoff() async throws {
        let cluster = FakeCluster()
        let server = try await TestAPIServer.start { req in
            req.path == "/api/v1/services" && req.isWatch ? .stream([.end]) : cluster.route(req)
        }
        defer { Task { await server.stop() } }
        let clock = TestTiming()
        let watches = { server.requests.filter { $0.path == self.services && $0.isWatch }.count }
        try await withSource(ClusterCredentials(server: server.url), options: .onTestClock(clock)) { log in
            // Each empty watch that ends at once is followed by a backoff sleep; no new watch until it passes.
            for (n, delay) in [(1, 800), (2, 1600), (3, 3200)] {
                await eventually("watch \(n), then a backoff of \(delay) ms") {
                    watches() == n && clock.pending == [.milliseconds(delay)]
                }
                XCTAssertEqual(watches(), n, "no watch while the backoff sleeps")
                clock.advance(by: .milliseconds(delay))
            }
            await eventually("watch 4") { watches() == 4 }
        }
    }
}
