import KubeModel
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// Topology-aware routing as upstream's `CategorizeEndpoints` (pkg/proxy/topology.go) does it. Every case of
/// upstream's `TestCategorizeEndpoints` (topology_test.go) is re-typed here as facts (the node's name and labels, the
/// Service's policies, each endpoint's conditions, hints and locality) and run through the compiler's own path: a
/// Service and an EndpointSlice in a `ClusterState` with this node's `Node`, resolved and categorised as the
/// compiler does, then compiled and traced. The newest upstream test file in the reference store predates node
/// hints; the `PreferSameNode` cases are the ones upstream added with KEP-3015, re-derived from the current
/// topology.go (the gate-disabled case has no counterpart: kube-natd has no gate, PreferSameNode is always on as
/// in current releases).
final class TopologyTests: XCTestCase {
    typealias F = Fixture

    struct EP {
        var address: String
        var ready = false
        var serving = false
        var terminating = false
        var local = false
        var zones: [String] = []
        var nodes: [String] = []
    }

    struct Case {
        var name: String
        /// The node's labels; nil: no Node seen at all.
        var nodeLabels: [String: String]? = nil
        var nodeName = "test-node"
        var itpLocal = false
        var etpLocal = false
        /// A NodePort (8080) makes the port externally accessible.
        var nodePort = false
        var endpoints: [EP] = []
        /// nil: the Service never uses that kind of endpoints (upstream's nil set).
        var cluster: Set<String>?
        var local: Set<String>?
        /// Only needed when both `cluster` and `local` are set (upstream's convention).
        var all: Set<String>? = nil
        var onlyRemote = false

        var expectedAll: Set<String> {
            if let cluster, local == nil { return cluster }
            if let local, cluster == nil { return local }
            return all ?? []
        }
    }

    static func zone(_ z: String) -> [String: String] { [Node.zoneLabel: z] }

    static let fourZoned: [EP] = [
        EP(address: "10.1.2.3:80", ready: true, zones: ["zone-a"]),
        EP(address: "10.1.2.4:80", ready: true, zones: ["zone-b"]),
        EP(address: "10.1.2.5:80", ready: true, zones: ["zone-c"]),
        EP(address: "10.1.2.6:80", ready: true, zones: ["zone-a"]),
    ]
    static let twoLocalTwoRemoteZoned: [EP] = [
        EP(address: "10.1.2.3:80", ready: true, local: true, zones: ["zone-a"]),
        EP(address: "10.1.2.4:80", ready: true, local: true, zones: ["zone-b"]),
        EP(address: "10.1.2.5:80", ready: true, zones: ["zone-c"]),
        EP(address: "10.1.2.6:80", ready: true, zones: ["zone-a"]),
    ]
    static let nodeHinted: [EP] = [
        EP(address: "10.1.2.3:80", ready: true, zones: ["zone-a"], nodes: ["node-1"]),
        EP(address: "10.1.2.4:80", ready: true, zones: ["zone-b"], nodes: ["node-2"]),
        EP(address: "10.1.2.5:80", ready: true, zones: ["zone-c"], nodes: ["node-3"]),
        EP(address: "10.1.2.6:80", ready: true, zones: ["zone-a"], nodes: ["node-4"]),
    ]
    static let all4: Set<String> = ["10.1.2.3:80", "10.1.2.4:80", "10.1.2.5:80", "10.1.2.6:80"]

    static let cases: [Case] = [
        Case(name: "should use topology since all endpoints have hints, node has a zone label and and there are endpoints for the node's zone",
             nodeLabels: zone("zone-a"), endpoints: fourZoned, cluster: ["10.1.2.3:80", "10.1.2.6:80"], local: nil),
        Case(name: "externalTrafficPolicy: Local, topology ignored for Local endpoints",
             nodeLabels: zone("zone-a"), etpLocal: true, nodePort: true, endpoints: twoLocalTwoRemoteZoned,
             cluster: ["10.1.2.3:80", "10.1.2.6:80"], local: ["10.1.2.3:80", "10.1.2.4:80"],
             all: ["10.1.2.3:80", "10.1.2.4:80", "10.1.2.6:80"]),
        Case(name: "internalTrafficPolicy: Local, topology ignored for Local endpoints",
             nodeLabels: zone("zone-a"), itpLocal: true, nodePort: true, endpoints: twoLocalTwoRemoteZoned,
             cluster: ["10.1.2.3:80", "10.1.2.6:80"], local: ["10.1.2.3:80", "10.1.2.4:80"],
             all: ["10.1.2.3:80", "10.1.2.4:80", "10.1.2.6:80"]),
        Case(name: "empty node labels", nodeLabels: [:],
             endpoints: [EP(address: "10.1.2.3:80", ready: true, zones: ["zone-a"])], cluster: ["10.1.2.3:80"], local: nil),
        Case(name: "empty zone label", nodeLabels: zone(""),
             endpoints: [EP(address: "10.1.2.3:80", ready: true, zones: ["zone-a"])], cluster: ["10.1.2.3:80"], local: nil),
        Case(name: "node in different zone, no endpoint filtering", nodeLabels: zone("zone-b"),
             endpoints: [EP(address: "10.1.2.3:80", ready: true, zones: ["zone-a"])], cluster: ["10.1.2.3:80"], local: nil),
        Case(name: "unready endpoint", nodeLabels: zone("zone-a"),
             endpoints: [
                EP(address: "10.1.2.3:80", ready: true, zones: ["zone-a"]),
                EP(address: "10.1.2.4:80", ready: true, zones: ["zone-b"]),
                EP(address: "10.1.2.5:80", ready: true, zones: ["zone-c"]),
                EP(address: "10.1.2.6:80", ready: false, zones: ["zone-a"]),
             ], cluster: ["10.1.2.3:80"], local: nil),
        Case(name: "only unready endpoints in same zone (should not filter)", nodeLabels: zone("zone-a"),
             endpoints: [
                EP(address: "10.1.2.3:80", ready: false, zones: ["zone-a"]),
                EP(address: "10.1.2.4:80", ready: true, zones: ["zone-b"]),
                EP(address: "10.1.2.5:80", ready: true, zones: ["zone-c"]),
                EP(address: "10.1.2.6:80", ready: false, zones: ["zone-a"]),
             ], cluster: ["10.1.2.4:80", "10.1.2.5:80"], local: nil),
        Case(name: "missing hints, no filtering applied", nodeLabels: zone("zone-a"),
             endpoints: [
                EP(address: "10.1.2.3:80", ready: true, zones: ["zone-a"]),
                EP(address: "10.1.2.4:80", ready: true, zones: ["zone-b"]),
                EP(address: "10.1.2.5:80", ready: true),
                EP(address: "10.1.2.6:80", ready: true, zones: ["zone-a"]),
             ], cluster: all4, local: nil),
        Case(name: "multiple hints per endpoint, filtering includes any endpoint with zone included",
             nodeLabels: zone("zone-c"),
             endpoints: [
                EP(address: "10.1.2.3:80", ready: true, zones: ["zone-a", "zone-b", "zone-c"]),
                EP(address: "10.1.2.4:80", ready: true, zones: ["zone-b", "zone-c"]),
                EP(address: "10.1.2.5:80", ready: true, zones: ["zone-b", "zone-d"]),
                EP(address: "10.1.2.6:80", ready: true, zones: ["zone-c"]),
             ], cluster: ["10.1.2.3:80", "10.1.2.4:80", "10.1.2.6:80"], local: nil),
        Case(name: "conflicting topology and localness require merging allEndpoints", nodeLabels: zone("zone-a"),
             etpLocal: true, nodePort: true,
             endpoints: [
                EP(address: "10.0.0.0:80", ready: true, local: true, zones: ["zone-a"]),
                EP(address: "10.0.0.1:80", ready: true, local: true, zones: ["zone-b"]),
                EP(address: "10.0.0.2:80", ready: true, zones: ["zone-a"]),
                EP(address: "10.0.0.3:80", ready: true, zones: ["zone-b"]),
             ], cluster: ["10.0.0.0:80", "10.0.0.2:80"], local: ["10.0.0.0:80", "10.0.0.1:80"],
             all: ["10.0.0.0:80", "10.0.0.1:80", "10.0.0.2:80"]),
        Case(name: "internalTrafficPolicy: Local, with empty endpoints", itpLocal: true, endpoints: [],
             cluster: nil, local: []),
        Case(name: "internalTrafficPolicy: Local, but all endpoints are remote", itpLocal: true,
             endpoints: [EP(address: "10.0.0.0:80", ready: true), EP(address: "10.0.0.1:80", ready: true)],
             cluster: nil, local: [], onlyRemote: true),
        Case(name: "internalTrafficPolicy: Local, all endpoints are local", itpLocal: true,
             endpoints: [EP(address: "10.0.0.0:80", ready: true, local: true),
                         EP(address: "10.0.0.1:80", ready: true, local: true)],
             cluster: nil, local: ["10.0.0.0:80", "10.0.0.1:80"]),
        Case(name: "internalTrafficPolicy: Local, some endpoints are local", itpLocal: true,
             endpoints: [EP(address: "10.0.0.0:80", ready: true, local: true), EP(address: "10.0.0.1:80", ready: true)],
             cluster: nil, local: ["10.0.0.0:80"]),
        Case(name: "Cluster traffic policy, endpoints not Ready",
             endpoints: [EP(address: "10.0.0.0:80"), EP(address: "10.0.0.1:80")], cluster: [], local: nil),
        Case(name: "Cluster traffic policy, some endpoints are Ready",
             endpoints: [EP(address: "10.0.0.0:80"), EP(address: "10.0.0.1:80", ready: true)],
             cluster: ["10.0.0.1:80"], local: nil),
        Case(name: "Cluster traffic policy, all endpoints are terminating",
             endpoints: [EP(address: "10.0.0.0:80", serving: true, terminating: true, local: true),
                         EP(address: "10.0.0.1:80", serving: true, terminating: true)],
             cluster: ["10.0.0.0:80", "10.0.0.1:80"], local: nil),
        Case(name: "iTP: Local, eTP: Cluster, some endpoints local", itpLocal: true, nodePort: true,
             endpoints: [EP(address: "10.0.0.0:80", ready: true, local: true), EP(address: "10.0.0.1:80", ready: true)],
             cluster: ["10.0.0.0:80", "10.0.0.1:80"], local: ["10.0.0.0:80"], all: ["10.0.0.0:80", "10.0.0.1:80"]),
        Case(name: "iTP: Cluster, eTP: Local, some endpoints local", etpLocal: true, nodePort: true,
             endpoints: [EP(address: "10.0.0.0:80", ready: true, local: true), EP(address: "10.0.0.1:80", ready: true)],
             cluster: ["10.0.0.0:80", "10.0.0.1:80"], local: ["10.0.0.0:80"], all: ["10.0.0.0:80", "10.0.0.1:80"]),
        Case(name: "iTP: Local, eTP: Local, some endpoints local", itpLocal: true, etpLocal: true, nodePort: true,
             endpoints: [EP(address: "10.0.0.0:80", ready: true, local: true), EP(address: "10.0.0.1:80", ready: true)],
             cluster: ["10.0.0.0:80", "10.0.0.1:80"], local: ["10.0.0.0:80"], all: ["10.0.0.0:80", "10.0.0.1:80"]),
        Case(name: "iTP: Local, eTP: Local, all endpoints remote", itpLocal: true, etpLocal: true, nodePort: true,
             endpoints: [EP(address: "10.0.0.0:80", ready: true), EP(address: "10.0.0.1:80", ready: true)],
             cluster: ["10.0.0.0:80", "10.0.0.1:80"], local: [], all: ["10.0.0.0:80", "10.0.0.1:80"]),
        Case(name: "iTP: Local, eTP: Local, all endpoints remote and terminating", itpLocal: true, etpLocal: true,
             nodePort: true,
             endpoints: [EP(address: "10.0.0.0:80", serving: true, terminating: true),
                         EP(address: "10.0.0.1:80", serving: true, terminating: true)],
             cluster: ["10.0.0.0:80", "10.0.0.1:80"], local: [], all: ["10.0.0.0:80", "10.0.0.1:80"], onlyRemote: true),
        Case(name: "iTP: Cluster, eTP: Local, with terminating endpoints", etpLocal: true, nodePort: true,
             endpoints: [
                EP(address: "10.0.0.0:80", ready: true),
                EP(address: "10.0.0.1:80", ready: false, serving: false, local: true),
                EP(address: "10.0.0.2:80", ready: false, serving: true, terminating: true, local: true),
                EP(address: "10.0.0.3:80", ready: false, serving: true, terminating: true),
             ], cluster: ["10.0.0.0:80"], local: ["10.0.0.2:80"], all: ["10.0.0.0:80", "10.0.0.2:80"]),
        Case(name: "externalTrafficPolicy ignored if not externally accessible", etpLocal: true,
             endpoints: [EP(address: "10.0.0.0:80", ready: true), EP(address: "10.0.0.1:80", ready: true, local: true)],
             cluster: ["10.0.0.0:80", "10.0.0.1:80"], local: nil, all: ["10.0.0.0:80", "10.0.0.1:80"]),
        Case(name: "no cluster endpoints for iTP:Local internal-only service", itpLocal: true,
             endpoints: [EP(address: "10.0.0.0:80", ready: true), EP(address: "10.0.0.1:80", ready: true, local: true)],
             cluster: nil, local: ["10.0.0.1:80"], all: ["10.0.0.1:80"]),
        // KEP-3015 node hints (upstream's PreferSameNode cases).
        Case(name: "PreferSameNode available", nodeLabels: zone("zone-a"), nodeName: "node-1",
             endpoints: nodeHinted, cluster: ["10.1.2.3:80"], local: nil),
        Case(name: "PreferSameNode ignored if some endpoints unhinted", nodeLabels: zone("zone-a"), nodeName: "node-1",
             endpoints: [nodeHinted[0], EP(address: "10.1.2.4:80", ready: true), nodeHinted[2], nodeHinted[3]],
             cluster: all4, local: nil),
        Case(name: "PreferSameNode falls back to PreferSameZone if no endpoint for node", nodeLabels: zone("zone-a"),
             nodeName: "node-0", endpoints: nodeHinted, cluster: ["10.1.2.3:80", "10.1.2.6:80"], local: nil),
    ]

    // MARK: - Building the case as cluster objects

    static let clusterIP = "172.30.1.1"
    static let nodeIP = "192.168.0.2"

    static func service(_ c: Case) -> Service {
        // A NodePort makes the port externally accessible. eTP=Local without one: a LoadBalancer with no node port
        // and no ingress IP yet, the one real Service whose eTP is Local while no frontend is external.
        let type: ServiceType = c.nodePort ? .nodePort : (c.etpLocal ? .loadBalancer : .clusterIP)
        return F.service("ns", "topo", type: type, clusterIP: clusterIP,
                         ports: [ServicePort(name: "p80", port: 80, nodePort: c.nodePort ? 8080 : 0)],
                         etp: c.etpLocal ? .local : .cluster, itp: c.itpLocal ? .local : .cluster)
    }

    static func slice(_ c: Case) -> EndpointSlice {
        F.slice("ns", "topo", c.endpoints.map { e in
            Endpoint(addresses: [F.ip(String(e.address.split(separator: ":")[0]))],
                     conditions: EndpointConditions(ready: e.ready, serving: e.serving, terminating: e.terminating),
                     nodeName: e.local ? c.nodeName : "elsewhere", zoneHints: e.zones, nodeHints: e.nodes)
        })
    }

    static func state(_ c: Case) -> ClusterState {
        var state = ClusterState(services: [service(c)], slices: [slice(c)])
        if let labels = c.nodeLabels { state.setNode(Node(name: c.nodeName, labels: labels)) }
        return state
    }

    static func settings(_ c: Case) -> NodeSettings {
        var s = F.settings()
        s.nodeName = c.nodeName
        return s
    }

    // MARK: - Categories

    func testEveryUpstreamCategorizeEndpointsCase() {
        XCTAssertEqual(Self.cases.count, 29)
        for c in Self.cases {
            let state = Self.state(c)
            let settings = Self.settings(c)
            let port = ServicePortInfo.ports(of: Self.service(c), family: .ipv4)[0]
            let endpoints = EndpointResolution.endpoints(
                slices: state.slices(for: port.service), family: .ipv4, nodeName: settings.nodeName)[
                    EndpointResolution.Key(portName: "p80", proto: .tcp)]
            XCTAssertEqual(endpoints.count, c.endpoints.count, c.name)
            let topology = NodeTopology(nodeName: settings.nodeName, zone: state.node?.zone)
            let cats = EndpointCategories(endpoints, port, topology: topology)
            func texts(_ positions: [Int]) -> Set<String> { Set(positions.map { endpoints[$0].text }) }

            XCTAssertEqual(port.usesClusterEndpoints, c.cluster != nil, "\(c.name): uses cluster endpoints")
            XCTAssertEqual(texts(cats.cluster), c.cluster ?? [], "\(c.name): cluster endpoints")
            XCTAssertEqual(port.usesLocalEndpoints, c.local != nil, "\(c.name): uses local endpoints")
            XCTAssertEqual(texts(cats.local), c.local ?? [], "\(c.name): local endpoints")
            XCTAssertEqual(texts(cats.allReachable), c.expectedAll, "\(c.name): all reachable endpoints")
            XCTAssertEqual(cats.allReachable, cats.allReachable.sorted(), "\(c.name): ip:port order")
            XCTAssertEqual(cats.hasAny, !c.expectedAll.isEmpty || c.onlyRemote, "\(c.name): has any endpoints")
        }
    }

    // MARK: - Flows

    /// What a packet reaches when the chosen endpoints are `set`: the endpoints, or the filter verdict upstream
    /// writes when there are none (REJECT with no endpoint anywhere, DROP with none usable by this policy).
    static func verdict(_ set: Set<String>?, hasAny: Bool) -> [String] {
        let s = set ?? []
        if !s.isEmpty { return s.sorted() }
        return [hasAny ? "DROP" : "REJECT"]
    }

    func testEveryCaseRoutesTrafficToItsCategories() {
        for c in Self.cases {
            let rs = RuleCompiler(settings: Self.settings(c)).compile(Self.state(c))
            let tracer = PacketTracer(rs)
            let hasAny = !c.expectedAll.isEmpty || c.onlyRemote
            let internalSet = c.itpLocal ? c.local : c.cluster
            let fromPod = tracer.trace("10.244.9.9", Self.clusterIP, 80)
            XCTAssertEqual(fromPod.outputs.sorted(), Self.verdict(internalSet, hasAny: hasAny), "\(c.name): pod -> ClusterIP")
            if c.nodePort {
                let externalSet = c.etpLocal ? c.local : c.cluster
                let fromOutside = tracer.trace("203.0.113.2", Self.nodeIP, 8080)
                XCTAssertEqual(fromOutside.outputs.sorted(), Self.verdict(externalSet, hasAny: hasAny),
                               "\(c.name): external client -> NodePort")
            }
        }
    }

    // MARK: - Whole output

    /// A representative subset, whole ruleset compared: zone hints narrowing SVC, Local policy ignoring them (SVL
    /// keeps the out-of-zone local endpoint, whose SEP chain exists because the reachable set is the union), the
    /// fallback when no ready endpoint is in this zone, and node hints narrowing to this node or falling back to
    /// zone hints.
    static let goldenCases: [(file: String, name: String)] = [
        ("zone-hints", "should use topology since all endpoints have hints, node has a zone label and and there are endpoints for the node's zone"),
        ("zone-hints-etp-local", "conflicting topology and localness require merging allEndpoints"),
        ("zone-hints-unready-in-zone", "only unready endpoints in same zone (should not filter)"),
        ("node-hints", "PreferSameNode available"),
        ("node-hints-fallback-to-zone", "PreferSameNode falls back to PreferSameZone if no endpoint for node"),
    ]

    func testRepresentativeCasesMatchTheirGoldenOutput() throws {
        for (file, name) in Self.goldenCases {
            let c = try XCTUnwrap(Self.cases.first { $0.name == name }, name)
            let text = TextRenderer.render(RuleCompiler(settings: Self.settings(c)).compile(Self.state(c)))
            try assertGolden(text, "topology/\(file).txt")
        }
    }

    // MARK: - The node's zone changes

    /// Services spread over zones: two with zone hints (one of them with endpoints in both zones), one without.
    func zonedCluster() -> ClusterState {
        func ep(_ ip: String, _ zone: String) -> Endpoint {
            Endpoint(addresses: [F.ip(ip)], nodeName: "elsewhere", zoneHints: [zone])
        }
        var state = ClusterState(
            services: [F.service("ns", "a", clusterIP: "172.30.2.1"), F.service("ns", "b", clusterIP: "172.30.2.2"),
                       F.service("ns", "plain", clusterIP: "172.30.2.3")],
            slices: [F.slice("ns", "a", [ep("10.10.0.1", "zone-a"), ep("10.10.0.2", "zone-b")]),
                     F.slice("ns", "b", [ep("10.10.1.1", "zone-a"), ep("10.10.1.2", "zone-b"), ep("10.10.1.3", "zone-b")]),
                     F.slice("ns", "plain", [F.ep("10.10.2.1"), F.ep("10.10.2.2")])])
        state.setNode(Node(name: "test-node", labels: Self.zone("zone-a")))
        return state
    }

    func testZoneChangeRecompilesIncrementallyToWhatAFreshCompileGives() {
        var state = zonedCluster()
        let compiler = RuleCompiler(settings: F.settings())
        let before = compiler.compile(state)
        check(PacketTracer(before), "172.30.2.2", ["10.10.1.1:80"])
        check(PacketTracer(before), "172.30.2.3", ["10.10.2.1:80", "10.10.2.2:80"])

        state.setNode(Node(name: "test-node", labels: Self.zone("zone-b")))
        let after = compiler.compile(state)
        XCTAssertEqual(compiler.lastStats.fragmentsCompiled, 2, "exactly the two hinted Services are re-derived")
        XCTAssertNotEqual(after, before, "the zone change must change the rules")
        XCTAssertEqual(after, RuleCompiler(settings: F.settings()).compile(state))
        check(PacketTracer(after), "172.30.2.1", ["10.10.0.2:80"])
        check(PacketTracer(after), "172.30.2.2", ["10.10.1.2:80", "10.10.1.3:80"])
        check(PacketTracer(after), "172.30.2.3", ["10.10.2.1:80", "10.10.2.2:80"])

        // A label the hints do not name: no filtering; a Node without the label: the same.
        state.setNode(Node(name: "test-node", labels: Self.zone("zone-z")))
        XCTAssertEqual(compiler.compile(state), RuleCompiler(settings: F.settings()).compile(state))
        check(PacketTracer(compiler.compile(state)), "172.30.2.1", ["10.10.0.1:80", "10.10.0.2:80"])
        state.setNode(Node(name: "test-node", labels: Self.zone("zone-a")))
        _ = compiler.compile(state)
        state.setNode(nil)
        XCTAssertEqual(compiler.compile(state), RuleCompiler(settings: F.settings()).compile(state))
        check(PacketTracer(compiler.compile(state)), "172.30.2.2", ["10.10.1.1:80", "10.10.1.2:80", "10.10.1.3:80"])
    }

    func testZoneChangeWithAnAddedServiceTakesTheFullPathToTheSameRules() {
        // An added Service is never patched in: the full path runs, reusing cached fragments where it may.
        var state = zonedCluster()
        let compiler = RuleCompiler(settings: F.settings())
        _ = compiler.compile(state)
        state.setNode(Node(name: "test-node", labels: Self.zone("zone-b")))
        state.upsert(F.service("ns", "new", clusterIP: "172.30.2.9"))
        let after = compiler.compile(state)
        XCTAssertEqual(after, RuleCompiler(settings: F.settings()).compile(state))
        check(PacketTracer(after), "172.30.2.1", ["10.10.0.2:80"])
    }

    func testV123LayoutIgnoresHints() {
        let state = zonedCluster()
        let rs = RuleCompiler(settings: F.settings(layout: .v1_23)).compile(state)
        check(PacketTracer(rs), "172.30.2.2", ["10.10.1.1:80", "10.10.1.2:80", "10.10.1.3:80"])
    }

    func testStaleUDPCleanupIgnoresTopology() {
        // Upstream's CleanStaleEntries counts every serving endpoint, whatever topology keeps for new flows: a
        // node's existing UDP flows to an out-of-zone endpoint are not cut when hints narrow the rules.
        func ep(_ ip: String, _ zone: String) -> Endpoint {
            Endpoint(addresses: [F.ip(ip)], nodeName: "elsewhere", zoneHints: [zone])
        }
        var state = ClusterState(
            services: [F.service("ns", "dns", clusterIP: "172.30.3.1",
                                 ports: [ServicePort(name: "dns", protocol: .udp, port: 53)])],
            slices: [F.slice("ns", "dns", ports: [EndpointPort(name: "dns", port: 5353, protocol: .udp)],
                             [ep("10.10.3.1", "zone-a"), ep("10.10.3.2", "zone-b")])])
        state.setNode(Node(name: "test-node", labels: Self.zone("zone-a")))
        let t = PacketTracer(RuleCompiler(settings: F.settings()).compile(state))
        XCTAssertEqual(t.trace("10.244.9.9", "172.30.3.1", 53, proto: .udp).outputs, ["10.10.3.1:5353"])
        let frontends = RuleCompiler.udpFrontends(state, settings: F.settings())
        XCTAssertEqual(frontends.byAddress[UDPServiceFrontends.Frontend(ip: F.ip("172.30.3.1"), port: 53)],
                       [F.ip("10.10.3.1"), F.ip("10.10.3.2")])
    }

    func check(_ t: PacketTracer, _ clusterIP: String, _ outputs: [String], file: StaticString = #filePath,
               line: UInt = #line) {
        XCTAssertEqual(t.trace("10.244.9.9", clusterIP, 80).outputs.sorted(), outputs, "pod -> \(clusterIP)",
                       file: file, line: line)
    }
}
