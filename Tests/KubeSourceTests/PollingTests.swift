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
        try await withSource(
            ClusterCredentials(server: server.url), options: .fast(mode: .poll(interval: .milliseconds(50)))
        ) { log in
            await log.wait(for: "delete Service a/db")
            // Let a few more identical polls pass: they must emit nothing.
            try await Task.sleep(for: .milliseconds(200))
            XCTAssertEqual(
                log.lines.filter { $0.contains("Service") },
                [
                    "replaceAll Service [a/db@2, a/web@1]", "synced Service", "upsert Service a/web@3",
                    "upsert Service a/cart@4", "delete Service a/db",
                ])
        }
        XCTAssertFalse(server.requests.contains { $0.isWatch }, "polling mode never watches")
        XCTAssertGreaterThan(server.requests.filter { $0.path == "/api/v1/services" }.count, 4)
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
