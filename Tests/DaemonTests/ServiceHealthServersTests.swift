import Daemon
import KubeModel
import NIOPosix
import XCTest

final class ServiceHealthServersTests: XCTestCase {
    private var clock: TestClock!
    private var health: ProxyHealth!
    private var logs: CapturedLogs!
    private var servers: ServiceHealthServers!

    override func setUp() async throws {
        self.clock = TestClock()
        self.health = ProxyHealth(healthTimeout: .seconds(60), clock: self.clock.read)
        self.logs = CapturedLogs()
        self.servers = ServiceHealthServers(
            health: self.health, addresses: ["127.0.0.1"], group: MultiThreadedEventLoopGroup.singleton,
            logger: self.logs.logger)
    }

    override func tearDown() async throws {
        await self.servers.stop()
    }

    private let svc1 = ObjectName(namespace: "ns1", name: "svc1")
    private let svc2 = ObjectName(namespace: "ns2", name: "svc2")

    func testBodyIsUpstreamsTabIndentedJSON() {
        let reply = ServiceHealthServers.reply(
            state: ServiceHealthState(service: self.svc1, localEndpoints: 1), proxyHealthy: true)
        XCTAssertEqual(reply.status, .ok)
        XCTAssertEqual(
            reply.body,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"ns1\",\n\t\t\"name\": \"svc1\"\n\t},\n\t\"localEndpoints\": 1,\n\t\"serviceProxyHealthy\": true\n}"
        )
    }

    func testLocalEndpointAndHealthyProxyAnswer200OnAnyPath() async throws {
        let port = try freePort()
        await self.servers.sync([port: ServiceHealthState(service: self.svc1, localEndpoints: 2)])
        let openPorts = await self.servers.openPorts
        XCTAssertEqual(openPorts, [port])
        let r = try httpGet(port: port, path: "/any/path")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.headers["content-type"], "application/json")
        XCTAssertEqual(r.headers["x-content-type-options"], "nosniff")
        XCTAssertEqual(
            r.body,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"ns1\",\n\t\t\"name\": \"svc1\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
        )
    }

    func testNoLocalEndpointsAnswers503() async throws {
        let port = try freePort()
        await self.servers.sync([port: ServiceHealthState(service: self.svc1, localEndpoints: 0)])
        let r = try httpGet(port: port, path: "/")
        XCTAssertEqual(r.status, 503)
        XCTAssertTrue(r.body.contains("\"localEndpoints\": 0,"))
        XCTAssertTrue(r.body.contains("\"serviceProxyHealthy\": true"))
    }

    func testUnhealthyProxyAnswers503EvenWithLocalEndpoints() async throws {
        let port = try freePort()
        await self.servers.sync([port: ServiceHealthState(service: self.svc1, localEndpoints: 3)])
        self.health.updated(family: .ipv4)
        self.health.queuedUpdate(family: .ipv4)
        self.clock.advance(.seconds(61))
        let r = try httpGet(port: port, path: "/")
        XCTAssertEqual(r.status, 503)
        XCTAssertTrue(r.body.contains("\"serviceProxyHealthy\": false"))
    }

    func testSyncUpdatesCountsOpensNewPortsAndClosesUnwantedOnes() async throws {
        let p1 = try freePort()
        let p2 = try freePort()
        await self.servers.sync([p1: ServiceHealthState(service: self.svc1, localEndpoints: 0)])
        XCTAssertEqual(try httpGet(port: p1, path: "/").status, 503)

        await self.servers.sync([
            p1: ServiceHealthState(service: self.svc1, localEndpoints: 1),
            p2: ServiceHealthState(service: self.svc2, localEndpoints: 1),
        ])
        XCTAssertEqual(try httpGet(port: p1, path: "/").status, 200, "count updated on the open port")
        let second = try httpGet(port: p2, path: "/")
        XCTAssertEqual(second.status, 200)
        XCTAssertTrue(second.body.contains("\"namespace\": \"ns2\""))

        await self.servers.sync([p2: ServiceHealthState(service: self.svc2, localEndpoints: 1)])
        let openPorts = await self.servers.openPorts
        XCTAssertEqual(openPorts, [p2])
        XCTAssertThrowsError(try httpGet(port: p1, path: "/"), "closed port refuses connections")
        XCTAssertEqual(try httpGet(port: p2, path: "/").status, 200)
    }

    func testUnbindablePortIsLoggedNotFatalAndRetriedOnNextSync() async throws {
        let taken = try freePort()
        let fine = try freePort()
        let squatter = try PortSquatter(port: taken)
        await self.servers.sync([
            taken: ServiceHealthState(service: self.svc1, localEndpoints: 1),
            fine: ServiceHealthState(service: self.svc2, localEndpoints: 1),
        ])
        var openPorts = await self.servers.openPorts
        XCTAssertEqual(openPorts, [fine], "the other port still opens")
        XCTAssertEqual(try httpGet(port: fine, path: "/").status, 200)
        let failure = self.logs.all.first { $0.level == .error }
        XCTAssertEqual(failure?.message, "Failed to start healthcheck")
        XCTAssertEqual(failure?.metadata["service"], "ns1/svc1")
        XCTAssertEqual(failure?.metadata["port"], "\(taken)")

        squatter.release()
        await self.servers.sync([
            taken: ServiceHealthState(service: self.svc1, localEndpoints: 1),
            fine: ServiceHealthState(service: self.svc2, localEndpoints: 1),
        ])
        openPorts = await self.servers.openPorts
        XCTAssertEqual(openPorts, [fine, taken].sorted())
        XCTAssertEqual(try httpGet(port: taken, path: "/").status, 200)
    }

    func testClosingAPortClosesItsKeepAliveConnections() async throws {
        let port = try freePort()
        await self.servers.sync([port: ServiceHealthState(service: self.svc1, localEndpoints: 1)])
        let connection = try KeepAliveConnection(port: port)
        XCTAssertTrue(try connection.get("/").hasPrefix("HTTP/1.1 200 OK"))
        await self.servers.sync([:])
        XCTAssertTrue(connection.waitForClose(), "the server closed the idle keep-alive connection")
    }

    func testOverlappingSyncsApplyInOrder() async throws {
        let port = try freePort()
        let servers = self.servers!
        let svc1 = self.svc1
        async let first: Void = servers.sync([port: ServiceHealthState(service: svc1, localEndpoints: 0)])
        async let second: Void = servers.sync([port: ServiceHealthState(service: svc1, localEndpoints: 1)])
        _ = await (first, second)
        let openPorts = await servers.openPorts
        XCTAssertEqual(openPorts, [port])
        XCTAssertFalse(self.logs.all.contains { $0.level == .error }, "one bind per port")
        // async let gives no start order, so either state may win; the port must answer with one.
        let status = try httpGet(port: port, path: "/").status
        XCTAssertTrue([200, 503].contains(status))
    }

    func testOneListenerPerAddress() async throws {
        let servers = ServiceHealthServers(
            health: self.health, addresses: ["127.0.0.1", "127.0.0.2"], group: MultiThreadedEventLoopGroup.singleton,
            logger: self.logs.logger)
        let port = try freePort()
        await servers.sync([port: ServiceHealthState(service: self.svc1, localEndpoints: 1)])
        XCTAssertEqual(try httpGet(port: port, path: "/", host: "127.0.0.1").status, 200)
        XCTAssertEqual(try httpGet(port: port, path: "/", host: "127.0.0.2").status, 200)
        await servers.stop()
    }

    func testWildcardAddressAnswersOnLoopback() async throws {
        let servers = ServiceHealthServers(
            health: self.health, group: MultiThreadedEventLoopGroup.singleton, logger: self.logs.logger)
        let port = try freePort()
        await servers.sync([port: ServiceHealthState(service: self.svc1, localEndpoints: 1)])
        XCTAssertEqual(try httpGet(port: port, path: "/healthz", host: "127.0.0.1").status, 200)
        await servers.stop()
    }

    func testListenAddressesFollowNodePortAddresses() {
        XCTAssertEqual(ServiceHealthServers.listenAddresses(for: .all), ["0.0.0.0"])
        XCTAssertEqual(
            ServiceHealthServers.listenAddresses(for: .addresses([IPAddress("10.0.0.5")!, IPAddress("fd00::5")!])),
            ["10.0.0.5", "fd00::5"])
    }
}
