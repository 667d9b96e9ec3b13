import Daemon
import KubeModel
import NIOPosix
import ProxyConfig
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

    func testEndpointCountIsTheLoadBalancingWeight() {
        // Upstream's handler sets X-Load-Balancing-Endpoint-Weight to the count, after the two JSON headers.
        let ok = ServiceHealthServers.reply(
            state: ServiceHealthState(service: self.svc1, localEndpoints: 3), proxyHealthy: true)
        XCTAssertEqual(ok.headers.map(\.0), ["Content-Type", "X-Content-Type-Options", "X-Load-Balancing-Endpoint-Weight"])
        XCTAssertEqual(ok.headers.last?.1, "3")
        let none = ServiceHealthServers.reply(
            state: ServiceHealthState(service: self.svc1, localEndpoints: 0), proxyHealthy: true)
        XCTAssertEqual(none.status, .serviceUnavailable)
        XCTAssertEqual(none.headers.last?.1, "0")
    }

    func testWeightHeaderReachesTheClient() async throws {
        let port = try freePort()
        await self.servers.sync([port: ServiceHealthState(service: self.svc1, localEndpoints: 2)])
        let r = try httpGet(port: port, path: "/")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.headers["x-load-balancing-endpoint-weight"], "2")
    }

    func testListenerOnAnAddressReportsItsFamilysCount() async throws {
        // The listener on 127.0.0.1 is the IPv4 proxier's: it reports IPv4's count, not the wildcard one.
        let port = try freePort()
        await self.servers.sync([
            port: ServiceHealthState(service: self.svc1, localEndpoints: 4, localEndpointsByFamily: [.ipv4: 0, .ipv6: 4])
        ])
        let r = try httpGet(port: port, path: "/")
        XCTAssertEqual(r.status, 503)
        XCTAssertEqual(r.headers["x-load-balancing-endpoint-weight"], "0")
        XCTAssertTrue(r.body.contains("\"localEndpoints\": 0,"))
        let wildcard = ServiceHealthServers.reply(
            state: ServiceHealthState(service: self.svc1, localEndpoints: 4, localEndpointsByFamily: [.ipv4: 0, .ipv6: 4]),
            proxyHealthy: true, family: nil)
        XCTAssertEqual(wildcard.status, .ok)
    }

    // MARK: - What each port reports, from the cluster state

    private func settings(_ family: IPFamily) -> NodeSettings {
        NodeSettings(family: family, nodeName: "test-node",
                     nodeIPs: [IPAddress(family == .ipv4 ? "192.168.0.2" : "2001:db8::1")!])
    }

    private func ep(_ ip: String, node: String = "test-node", ready: Bool? = nil, terminating: Bool? = nil) -> Endpoint {
        Endpoint(addresses: [IPAddress(ip)!], conditions: EndpointConditions(ready: ready, terminating: terminating),
                 nodeName: node)
    }

    private func dualStackCluster() -> ClusterState {
        let svc = Service(
            name: self.svc1, type: .loadBalancer,
            clusterIPs: [IPAddress("172.30.0.5")!, IPAddress("fd00:30::5")!],
            ports: [ServicePort(name: "http", port: 80, nodePort: 30080), ServicePort(name: "https", port: 443, nodePort: 30443)],
            externalTrafficPolicy: .local, healthCheckNodePort: 30500)
        let ports = [EndpointPort(name: "http", port: 8080), EndpointPort(name: "https", port: 8443)]
        let v4 = EndpointSlice(
            name: ObjectName(namespace: "ns1", name: "svc1-v4"), serviceName: "svc1", resourceVersion: "1",
            addressType: .ipv4,
            endpoints: [ep("10.0.0.1"), ep("10.0.0.2"), ep("10.0.0.3", ready: false, terminating: true),
                        ep("10.0.0.4", node: "other"), ep("10.0.0.5", ready: false)],
            ports: ports)
        let v6 = EndpointSlice(
            name: ObjectName(namespace: "ns1", name: "svc1-v6"), serviceName: "svc1", resourceVersion: "1",
            addressType: .ipv6, endpoints: [ep("fd00:10::1")], ports: ports)
        return ClusterState(services: [svc], slices: [v4, v6])
    }

    func testStatesCountDistinctLocalReadyEndpointIPsPerFamily() {
        // Two ports per endpoint count once; terminating, not-ready and remote endpoints do not count; a dual-stack
        // pod counts once in each family, not twice.
        let states = ServiceHealthServers.states(self.dualStackCluster(), settings: [self.settings(.ipv4), self.settings(.ipv6)])
        XCTAssertEqual(states, [30500: ServiceHealthState(service: self.svc1, localEndpoints: 2,
                                                          localEndpointsByFamily: [.ipv4: 2, .ipv6: 1])])
        // With IPv6 as the node's primary family, a wildcard listener reports IPv6's count.
        let v6First = ServiceHealthServers.states(self.dualStackCluster(), settings: [self.settings(.ipv6), self.settings(.ipv4)])
        XCTAssertEqual(v6First[30500]?.localEndpoints, 1)
        // A single-family node counts only its family.
        let v4Only = ServiceHealthServers.states(self.dualStackCluster(), settings: [self.settings(.ipv4)])
        XCTAssertEqual(v4Only[30500]?.localEndpointsByFamily, [.ipv4: 2])
    }

    func testStatesSkipServicesWithoutAHealthCheckInThisFamily() {
        var state = self.dualStackCluster()
        // eTP=Cluster: no health check at all.
        state.upsert(Service(name: self.svc2, type: .loadBalancer, clusterIPs: [IPAddress("172.30.0.6")!],
                             ports: [ServicePort(name: "http", port: 80, nodePort: 30081)], healthCheckNodePort: 30501))
        // IPv6-only Service on an IPv4 node: that proxier has no such Service.
        state.upsert(Service(name: ObjectName(namespace: "ns3", name: "v6"), type: .loadBalancer,
                             clusterIPs: [IPAddress("fd00:30::7")!], ports: [ServicePort(name: "http", port: 80, nodePort: 30082)],
                             externalTrafficPolicy: .local, healthCheckNodePort: 30502))
        XCTAssertEqual(Array(ServiceHealthServers.states(state, settings: [self.settings(.ipv4)]).keys), [30500])
        XCTAssertEqual(ServiceHealthServers.states(state, settings: [self.settings(.ipv4), self.settings(.ipv6)]).keys.sorted(),
                       [30500, 30502])
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
