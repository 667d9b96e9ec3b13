import KubeModel
import XCTest

@testable import ProxyConfig

final class NodeSettingsResolutionTests: XCTestCase {
    private let v4 = IPAddress("192.168.1.10")!
    private let v4b = IPAddress("10.1.2.3")!
    private let v6 = IPAddress("fd00::10")!

    private func config(_ extra: String) throws -> KubeProxyConfiguration {
        try KubeProxyConfiguration.parse(Fixtures.minimal(extra)).configuration
    }

    private func settings(_ c: KubeProxyConfiguration, _ family: IPFamily, podCIDR: CIDR? = nil) -> NodeSettings {
        c.nodeSettings(family: family, nodeName: "node-1", nodeIPs: [v4, v6, v4b], podCIDR: podCIDR, features: .init())
    }

    func testDefaultsGiveUpstreamIPTablesBehaviour() throws {
        let s = settings(try config(""), .ipv4)
        XCTAssertEqual(
            s,
            NodeSettings(
                family: .ipv4, nodeName: "node-1", nodeIPs: [v4, v4b], masqueradeBit: 14, masqueradeAll: false,
                localhostNodePorts: true, localDetector: .none, nodePortAddresses: .all, conntrackTCPBeLiberal: false))
        XCTAssertEqual(s.masqueradeMark, 0x4000)
    }

    func testClusterCIDRModePicksTheCIDROfEachFamily() throws {
        let c = try config("clusterCIDR: 10.244.0.0/16,fd00:10:244::/56")
        XCTAssertEqual(settings(c, .ipv4).localDetector, .cidr(CIDR("10.244.0.0/16")!))
        XCTAssertEqual(settings(c, .ipv6).localDetector, .cidr(CIDR("fd00:10:244::/56")!))
        let single = try config("clusterCIDR: 10.244.0.0/16")
        XCTAssertEqual(settings(single, .ipv6).localDetector, .none)
    }

    func testNodeCIDRModeUsesThePodCIDROfTheFamily() throws {
        let c = try config("detectLocalMode: NodeCIDR\nclusterCIDR: 10.244.0.0/16")
        let pod = CIDR("10.244.3.0/24")!
        XCTAssertEqual(settings(c, .ipv4, podCIDR: pod).localDetector, .cidr(pod))
        XCTAssertEqual(settings(c, .ipv6, podCIDR: pod).localDetector, .none)
        XCTAssertEqual(settings(c, .ipv4).localDetector, .none)
    }

    func testInterfaceModes() throws {
        let bridge = try config("detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: cbr0")
        XCTAssertEqual(settings(bridge, .ipv4).localDetector, .bridgeInterface("cbr0"))
        let prefix = try config("detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: veth")
        XCTAssertEqual(settings(prefix, .ipv6).localDetector, .interfaceNamePrefix("veth"))
    }

    func testNodePortAddressesCIDRsSelectNodeIPsOfTheFamily() throws {
        let c = try config("nodePortAddresses: [192.168.0.0/16, \"fd00::/64\"]")
        XCTAssertEqual(settings(c, .ipv4).nodePortAddresses, .addresses([v4]))
        XCTAssertEqual(settings(c, .ipv6).nodePortAddresses, .addresses([v6]))
        let none = try config("nodePortAddresses: [172.16.0.0/12]")
        XCTAssertEqual(settings(none, .ipv4).nodePortAddresses, .addresses([]))
        // No entry of this family: upstream matches all for it.
        XCTAssertEqual(settings(none, .ipv6).nodePortAddresses, .all)
    }

    func testNodePortAddressesKeywords() throws {
        XCTAssertEqual(settings(try config("nodePortAddresses: [primary]"), .ipv4).nodePortAddresses, .addresses([v4]))
        XCTAssertEqual(settings(try config("nodePortAddresses: [primary]"), .ipv6).nodePortAddresses, .addresses([v6]))
        XCTAssertEqual(
            settings(try config("nodePortAddresses: [localhost]"), .ipv4).nodePortAddresses,
            .addresses([IPAddress("127.0.0.1")!]))
        XCTAssertEqual(settings(try config("nodePortAddresses: [all]"), .ipv4).nodePortAddresses, .all)
        XCTAssertEqual(settings(try config("nodePortAddresses: [0.0.0.0/0]"), .ipv4).nodePortAddresses, .all)
        XCTAssertEqual(settings(try config("nodePortAddresses: []"), .ipv6).nodePortAddresses, .all)
    }

    func testLocalhostNodePortsIsIPv4Only() throws {
        let c = try config("")
        XCTAssertTrue(settings(c, .ipv4).localhostNodePorts)
        XCTAssertFalse(settings(c, .ipv6).localhostNodePorts)
        XCTAssertFalse(settings(try config("iptables:\n  localhostNodePorts: false"), .ipv4).localhostNodePorts)
    }

    func testMasqueradeAndConntrackSettingsCarryOver() throws {
        let c = try config("iptables:\n  masqueradeBit: 0\n  masqueradeAll: true\nconntrack:\n  tcpBeLiberal: true")
        let s = c.nodeSettings(
            family: .ipv6, nodeName: "n", nodeIPs: [], podCIDR: nil, features: .init(randomFully: true))
        XCTAssertEqual(s.masqueradeBit, 0)
        XCTAssertEqual(s.masqueradeMark, 1)
        XCTAssertTrue(s.masqueradeAll)
        XCTAssertTrue(s.conntrackTCPBeLiberal)
        XCTAssertTrue(s.features.randomFully)
        XCTAssertEqual(s.nodeName, "n")
        XCTAssertEqual(s.family, .ipv6)
    }

    func testNodePortAddressCIDRsMatchEveryLocalAddressLoopbackIncluded() throws {
        let c = try config("nodePortAddresses: [127.0.0.0/8, 10.1.0.0/16, \"fd00::/64\"]")
        let local = [IPAddress("127.0.0.1")!, IPAddress("10.1.0.5")!, IPAddress("10.2.0.5")!, IPAddress("::1")!, v6]
        func npa(_ family: IPFamily) -> NodePortAddresses {
            c.nodeSettings(family: family, nodeName: "n", nodeIPs: [v4], podCIDR: nil, features: .init(),
                           localAddresses: local).nodePortAddresses
        }
        XCTAssertEqual(npa(.ipv4), .addresses([IPAddress("127.0.0.1")!, IPAddress("10.1.0.5")!]),
                       "local addresses, not the node IP 192.168.1.10, are matched")
        XCTAssertEqual(npa(.ipv6), .addresses([v6]))
    }

    func testLocalhostNodePortsAreOffWhenNodePortAddressesHoldNoIPv4Loopback() throws {
        func localhost(_ yaml: String) throws -> Bool { settings(try config(yaml), .ipv4).localhostNodePorts }
        XCTAssertTrue(try localhost(""), "unset: every address, loopback included")
        XCTAssertFalse(try localhost("nodePortAddresses: [10.0.0.0/8]"))
        XCTAssertFalse(try localhost("nodePortAddresses: [primary]"))
        XCTAssertTrue(try localhost("nodePortAddresses: [10.0.0.0/8, 127.0.0.1/32]"))
        XCTAssertTrue(try localhost("nodePortAddresses: [0.0.0.0/0]"))
        XCTAssertTrue(try localhost("nodePortAddresses: [\"fd00::/64\"]"), "no IPv4 entry: IPv4 matches all")
    }

    func testPrimaryIsTheNodeIPsHostCIDRUnlessItIsLoopback() throws {
        let c = try config("nodePortAddresses: [primary]")
        let loop = c.nodeSettings(family: .ipv4, nodeName: "n", nodeIPs: [IPAddress("127.0.0.1")!], podCIDR: nil,
                                  features: .init(), localAddresses: [IPAddress("127.0.0.1")!, v4])
        XCTAssertEqual(loop.nodePortAddresses, .all, "no node IP known: upstream leaves the family unrestricted")
        let real = c.nodeSettings(family: .ipv4, nodeName: "n", nodeIPs: [v4], podCIDR: nil, features: .init(),
                                  localAddresses: [IPAddress("127.0.0.1")!, v4, v4b])
        XCTAssertEqual(real.nodePortAddresses, .addresses([v4]))
        let absent = c.nodeSettings(family: .ipv4, nodeName: "n", nodeIPs: [v4], podCIDR: nil, features: .init(),
                                    localAddresses: [v4b])
        XCTAssertEqual(absent.nodePortAddresses, .addresses([]), "the node IP is not on an interface: no NodePort address")
    }
}
