import KubeModel
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// What each layout owns, ensures and leaves behind, and what switching between them on a running node means.
final class RuleLayoutTests: XCTestCase {
    typealias F = Fixture

    func compile(_ layout: RuleLayout, family: IPFamily = .ipv4) -> Ruleset {
        let (services, slices) = UpstreamFixtureTests.overallCluster()
        return F.compile(services, slices, settings: F.settings(family: family, layout: layout))
    }

    func lines(_ jumps: [BaseChainJump]) -> [String] {
        jumps.map { TextRenderer.line(chain: $0.baseChain, rule: $0.rule) }
    }

    /// legacy-layout §1.3 `iptablesJumpChains`, as kube-proxy v1.23's prepends leave them on a fresh node (reversed
    /// per base chain), which is also the order the v1.23.5 `iptables-save` of §1.3 shows.
    func testV123JumpsAreKubeProxy123sListInTheOrderItsPrependsLeaveThem() {
        XCTAssertEqual(
            lines(BaseJumps.v1_23Filter),
            [
                "-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS",
                "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
                "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
                "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
                "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
                "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
            ])
        XCTAssertEqual(lines(compile(.v1_23)[.nat]!.baseJumps), lines(compile(.current)[.nat]!.baseJumps))
        // `--cleanup` deletes upstream's list: it covers v1.23's jumps too.
        for table in Table.allCases {
            XCTAssertTrue(Ownership.v1_23Jumps(table).allSatisfy(Ownership.upstreamJumps(table).contains))
        }
    }

    func testSwitchingToV123DeletesKubeProxyFirewallAndDeclaresNothingOfTodaysLayout() {
        for family in IPFamily.allCases {
            let current = compile(.current, family: family)
            let legacy = compile(.v1_23, family: family)
            XCTAssertEqual(current[.filter]!.deletedChains, [])
            XCTAssertEqual(current[.nat]!.deletedChains, [])
            XCTAssertEqual(legacy[.filter]!.deletedChains, [Ownership.proxyFirewall])
            XCTAssertEqual(legacy[.nat]!.deletedChains, [])
            for table in legacy.tables {
                let names = table.chains.map(\.name)
                XCTAssertFalse(names.contains { $0.hasPrefix("KUBE-EXT-") || $0.hasPrefix("KUBE-SVL-") }, "\(names)")
                XCTAssertFalse(names.contains(Ownership.proxyFirewall))
                XCTAssertFalse(table.baseJumps.contains { $0.rule.target == .jump(Ownership.proxyFirewall) })
            }
            // Whatever today's layout declared and v1.23 does not is deleted: a listed fixed chain, a per-service
            // chain (garbage-collected by prefix), or kubelet's KUBE-FIREWALL, whose rules v1.23 ensures instead.
            for table in current.tables {
                let kept = Set(legacy[table.table]!.chains.map(\.name))
                for name in table.chains.map(\.name) where !kept.contains(name) {
                    XCTAssertTrue(
                        legacy[table.table]!.deletedChains.contains(name) || Ownership.isServiceChain(name)
                            || (name == Ownership.kubeletFirewall
                                && legacy[table.table]!.ensured.contains { $0.chain == name }),
                        name)
                }
            }
        }
    }

    func testSwitchingBackToTodaysLayoutDeclaresEveryFixedChainAndNoKUBEXLB() {
        for family in IPFamily.allCases {
            let current = compile(.current, family: family)
            for table in current.tables {
                let names = table.chains.map(\.name)
                XCTAssertTrue((Ownership.fixedChains[table.table] ?? []).allSatisfy(names.contains))
                XCTAssertFalse(names.contains { $0.hasPrefix("KUBE-XLB-") })
                XCTAssertEqual(table.ensured, [])
            }
        }
        // The XLB chains v1.23 declared are per-service chains, which the backends garbage-collect.
        let legacyNames = compile(.v1_23)[.nat]!.chains.map(\.name)
        XCTAssertTrue(legacyNames.contains { $0.hasPrefix("KUBE-XLB-") })
        XCTAssertTrue(legacyNames.filter { $0.hasPrefix("KUBE-XLB-") }.allSatisfy(Ownership.isServiceChain))
    }

    /// kubelet owns KUBE-MARK-DROP and KUBE-FIREWALL in v1.23: ensured, never declared (a declared chain is flushed).
    func testV123EnsuresKubeletsRulesWithoutOwningTheirChains() {
        let v4 = compile(.v1_23, family: .ipv4)
        for table in v4.tables {
            XCTAssertFalse(
                table.chains.contains { $0.name == Ownership.kubeletFirewall || $0.name == Ownership.kubeletMarkDrop })
        }
        XCTAssertEqual(
            v4[.nat]!.ensured.map { TextRenderer.line(chain: $0.chain, rule: $0.rule) },
            ["-A KUBE-MARK-DROP -j MARK --or-mark 0x8000"])
        XCTAssertEqual(
            v4[.filter]!.ensured.map { TextRenderer.line(chain: $0.chain, rule: $0.rule) },
            [
                "-A KUBE-FIREWALL -m comment --comment \"kubernetes firewall for dropping marked packets\" -m mark --mark 0x8000/0x8000 -j DROP",
                "-A KUBE-FIREWALL -m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
                "-A OUTPUT -j KUBE-FIREWALL",
                "-A INPUT -j KUBE-FIREWALL",
            ])
        // kubelet writes the same for ip6tables, except the localnet block ("ipv6 doesn't have this issue").
        let v6 = compile(.v1_23, family: .ipv6)
        XCTAssertEqual(v6[.nat]!.ensured, v4[.nat]!.ensured)
        XCTAssertEqual(
            v6[.filter]!.ensured,
            v4[.filter]!.ensured.filter { $0.rule.comment != "block incoming localnet connections" })
    }

    /// Today's layout is unchanged: kube-proxy's own KUBE-FIREWALL copy for IPv4 with localhost NodePorts, owned.
    func testTodaysLayoutStillOwnsItsKubeFirewallCopy() {
        XCTAssertNotNil(compile(.current, family: .ipv4)[.filter]!.chain(named: Ownership.kubeletFirewall))
        XCTAssertNil(compile(.current, family: .ipv6)[.filter]!.chain(named: Ownership.kubeletFirewall))
    }

    /// As upstream's test helper checked: every jump of an owned rule targets a chain the table declares, or one
    /// it ensures (KUBE-MARK-DROP in v1.23), in every golden case, layout and family.
    func testEveryJumpTargetsADeclaredOrEnsuredChain() throws {
        let cases = GoldenTests.goldenDirectory.appendingPathComponent("cases")
        for name in try GoldenTests.cases("cases") {
            let dir = cases.appendingPathComponent(name)
            for layout in RuleLayout.allCases {
                for family in IPFamily.allCases {
                    let settings = try GoldenTests.settings(caseDirectory: dir, family: family, layout: layout)
                    let rs = RuleCompiler(settings: settings).compile(try GoldenTests.clusterState(caseDirectory: dir))
                    for table in rs.tables {
                        let known = Set(table.chains.map(\.name) + table.ensured.map(\.chain))
                        let rules =
                            table.chains.flatMap(\.rules) + table.baseJumps.map(\.rule) + table.ensured.map(\.rule)
                        for rule in rules {
                            if case .jump(let target) = rule.target {
                                XCTAssertTrue(known.contains(target), "\(name) \(layout) \(family): -j \(target)")
                            }
                        }
                    }
                }
            }
        }
    }
}
