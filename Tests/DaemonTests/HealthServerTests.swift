import Daemon
import KubeModel
import NIOPosix
import XCTest

final class HealthServerTests: XCTestCase {
    private var clock: TestClock!
    private var health: ProxyHealth!
    private var metrics: ProxyMetrics!
    private var server: HealthServer!

    override func setUp() async throws {
        self.clock = TestClock(WallTime(secondsSince1970: 1_704_067_200, nanoseconds: 1))
        self.health = ProxyHealth(healthTimeout: .seconds(60), clock: self.clock.read)
        self.metrics = ProxyMetrics(families: [.ipv4])
        self.server = try await HealthServer.start(
            host: "127.0.0.1", port: 0, health: self.health, metrics: self.metrics,
            group: MultiThreadedEventLoopGroup.singleton)
    }

    override func tearDown() async throws {
        await self.server.stop()
    }

    private func assertJSONHeaders(_ r: HTTPResult, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.headers["content-type"], "application/json", file: file, line: line)
        XCTAssertEqual(r.headers["x-content-type-options"], "nosniff", file: file, line: line)
    }

    func testHealthzAnswers200WithCurrentTimeAsLastUpdatedWhenHealthy() throws {
        XCTAssertNotEqual(self.server.port, 0)
        let r = try httpGet(port: self.server.port, path: "/healthz")
        XCTAssertEqual(r.status, 200)
        self.assertJSONHeaders(r)
        XCTAssertEqual(
            r.body,
            #"{"lastUpdated": "2024-01-01 00:00:00.000000001 +0000 UTC","currentTime": "2024-01-01 00:00:00.000000001 +0000 UTC", "nodeEligible": true}"#
        )
    }

    func testHealthzAnswers503WithLastSyncWhenAQueuedUpdateIsLate() throws {
        self.health.updated(family: .ipv4)
        self.clock.advance(.seconds(1))
        self.health.queuedUpdate(family: .ipv4)
        self.clock.advance(.seconds(61))
        let r = try httpGet(port: self.server.port, path: "/healthz")
        XCTAssertEqual(r.status, 503)
        self.assertJSONHeaders(r)
        XCTAssertEqual(
            r.body,
            #"{"lastUpdated": "2024-01-01 00:00:00.000000001 +0000 UTC","currentTime": "2024-01-01 00:01:02.000000001 +0000 UTC", "nodeEligible": true}"#
        )
    }

    func testHealthzAnswers503WhenNodeIsNotEligibleButLivezStays200() throws {
        self.health.nodeEligible = false
        let healthz = try httpGet(port: self.server.port, path: "/healthz")
        XCTAssertEqual(healthz.status, 503)
        XCTAssertEqual(
            healthz.body,
            #"{"lastUpdated": "0001-01-01 00:00:00 +0000 UTC","currentTime": "2024-01-01 00:00:00.000000001 +0000 UTC", "nodeEligible": false}"#
        )
        let livez = try httpGet(port: self.server.port, path: "/livez")
        XCTAssertEqual(livez.status, 200)
        self.assertJSONHeaders(livez)
        XCTAssertEqual(
            livez.body,
            #"{"lastUpdated": "2024-01-01 00:00:00.000000001 +0000 UTC","currentTime": "2024-01-01 00:00:00.000000001 +0000 UTC"}"#
        )
    }

    func testLivezAnswers503WhenUnhealthy() throws {
        self.health.updated(family: .ipv4)
        self.health.queuedUpdate(family: .ipv4)
        self.clock.advance(.seconds(120))
        let r = try httpGet(port: self.server.port, path: "/livez?verbose")
        XCTAssertEqual(r.status, 503)
        self.assertJSONHeaders(r)
        XCTAssertEqual(
            r.body,
            #"{"lastUpdated": "2024-01-01 00:00:00.000000001 +0000 UTC","currentTime": "2024-01-01 00:02:00.000000001 +0000 UTC"}"#
        )
    }

    func testUnknownPathIsGoNotFound() throws {
        let r = try httpGet(port: self.server.port, path: "/metrics")
        XCTAssertEqual(r.status, 404)
        XCTAssertEqual(r.body, "404 page not found\n")
        XCTAssertEqual(r.headers["content-type"], "text/plain; charset=utf-8")
    }

    func testProbesAreCountedByCode() throws {
        _ = try httpGet(port: self.server.port, path: "/healthz")
        _ = try httpGet(port: self.server.port, path: "/livez")
        _ = try httpGet(port: self.server.port, path: "/livez")
        self.health.nodeEligible = false
        _ = try httpGet(port: self.server.port, path: "/healthz")
        let scrape = try PrometheusText.parse(self.metrics.exposition())
        XCTAssertEqual(scrape.value("kubeproxy_proxy_healthz_total", ["code": "200"]), 1)
        XCTAssertEqual(scrape.value("kubeproxy_proxy_healthz_total", ["code": "503"]), 1)
        XCTAssertEqual(scrape.value("kubeproxy_proxy_livez_total", ["code": "200"]), 2)
        XCTAssertEqual(scrape.value("kubeproxy_proxy_livez_total", ["code": "503"]), 0)
    }

    func testKeepAliveConnectionAnswersEveryRequest() throws {
        let raw = try httpExchange(
            port: self.server.port,
            request:
                "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /livez HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(raw.components(separatedBy: "HTTP/1.1 200 OK\r\n").count - 1, 2, raw)
        XCTAssertTrue(raw.hasSuffix("\"currentTime\": \"2024-01-01 00:00:00.000000001 +0000 UTC\"}"), raw)
    }

    func testHeadGetsHeadersWithoutBody() throws {
        let raw = try httpExchange(
            port: self.server.port, request: "HEAD /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        XCTAssertTrue(raw.hasPrefix("HTTP/1.1 200 OK\r\n"), raw)
        XCTAssertTrue(raw.hasSuffix("\r\n\r\n"), "no body after the headers: \(raw)")
    }
}
