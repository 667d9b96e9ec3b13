import Foundation
import KubeModel
import KubeSource
import XCTest

final class PollingTests: XCTestCase {
    func testPollingEmitsOnlyTheDifferencesBetweenLists() async throws {
        let cluster = FakeCluster()
        cluster.list(
            "/api/v1/services",
            .json(
                status: 200,
                body: Wire.list(
                    kind: "ServiceList", rv: "10",
                    items: [Wire.service("a", "web", rv: "1"), Wire.service("a", "db", rv: "2")])),
            // web changed, cart appeared.
            .json(
                status: 200,
                body: Wire.list(
                    kind: "ServiceList", rv: "11",
                    items: [
                        Wire.service("a", "web", rv: "3"), Wire.service("a", "db", rv: "2"),
                        Wire.service("a", "cart", rv: "4"),
                    ])),
            // db is gone.
            .json(
                status: 200,
                body: Wire.list(
                    kind: "ServiceList", rv: "12",
                    items: [Wire.service("a", "web", rv: "3"), Wire.service("a", "cart", rv: "4")])))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        let clock = TestTiming()
        let lists = { server.requests.filter { $0.path == "/api/v1/services" }.count }
        try await withSource(
            ClusterCredentials(server: server.url), options: .onTestClock(clock, mode: .poll(interval: .seconds(1)))
        ) { log in
            // Six polls, one per second of the test clock: both loops (Services, EndpointSlices) list, then sleep
            // the interval; the last three lists are identical to the third and must emit nothing.
            for poll in 1...6 {
                await eventually("poll \(poll): listed, both loops asleep") { lists() == poll && clock.sleeping == 2 }
                XCTAssertEqual(clock.pending, [.seconds(1), .seconds(1)])
                if poll < 6 { clock.advance(by: .seconds(1)) }
            }
            XCTAssertEqual(
                log.lines.filter { $0.contains("Service") },
                [
                    "replaceAll Service [a/db@2, a/web@1]", "synced Service", "upsert Service a/web@3",
                    "upsert Service a/cart@4", "delete Service a/db",
                ])
        }
        XCTAssertFalse(server.requests.contains { $0.isWatch }, "polling mode never watches")
        XCTAssertEqual(lists(), 6)
        let polls = server.requests.filter { $0.path == "/api/v1/services" }
        XCTAssertEqual(polls.map { $0.query["resourceVersion"] }, ["0", "10", "11", "12", "12", "12"],
                       "each poll from the last list's resourceVersion, served by the watch cache")
    }

    func testPollingRetriesFailedListsWithBackoff() async throws {
        let cluster = FakeCluster()
        let failing = Box(2)
        let server = try await TestAPIServer.start { req in
            if req.path == "/api/v1/services"
                && failing.with({
                    $0 -= 1
                    return $0 >= 0
                })
            {
                return .json(
                    status: 503,
                    body: Wire.status(code: 503, reason: "ServiceUnavailable", message: "apiserver is shutting down"))
            }
            return cluster.route(req)
        }
        defer { Task { await server.stop() } }
        let capture = LogCapture()
        try await withSource(
            ClusterCredentials(server: server.url), options: .fast(mode: .poll(interval: .milliseconds(50))),
            logger: capture.logger
        ) { log in
            await log.wait(for: "synced Service")
        }
        XCTAssertEqual(capture.count(.warning, containing: "poll Service failed"), 1)
    }

    func testPollingFollowsTheOwnNode() async throws {
        let cluster = FakeCluster()
        cluster.list(
            "/api/v1/nodes",
            .json(status: 200, body: Wire.list(kind: "NodeList", rv: "1", items: [Wire.node("node-a", rv: "1")])),
            .json(
                status: 200,
                body: Wire.list(
                    kind: "NodeList", rv: "2", items: [Wire.node("node-a", rv: "2", podCIDRs: ["10.244.9.0/24"])])))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        try await withSource(
            ClusterCredentials(server: server.url),
            options: .fast(mode: .poll(interval: .milliseconds(50)), nodeName: "node-a")
        ) { log in
            await log.wait { _ in log.nodes.last??.podCIDRs == [CIDR("10.244.9.0/24")!] }
        }
    }
}
