import XCTest
import KubeModel
@testable import Ruleset

final class RendererTests: XCTestCase {
    func testCommentsWithSpacesAreQuoted() {
        let r = Rule([.comment("ns1/svc1:p80 cluster IP"), .proto(.tcp),
                      .destination(.ip(IPAddress("172.30.0.41")!), negated: false), .destinationPort(80)],
                     .jump("KUBE-SVC-XPGD46QRK7WJZT7O"))
        XCTAssertEqual(TextRenderer.line(chain: "KUBE-SERVICES", rule: r),
                       "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O")
    }
}

/// Ensured rules in the dry-run text: restoring it into an empty namespace must give what a backend gives.
final class EnsuredRuleRenderingTests: XCTestCase {
    let jump = BaseChainJump(
        baseChain: "INPUT", rule: Rule([.comment("kubernetes health check service ports")], .jump("KUBE-NODEPORTS")))
    let drop = Rule([.comment("kubernetes firewall for dropping marked packets"),
                     .mark(value: 0x8000, mask: 0x8000, negated: false)], .drop)

    func testAnEnsuredChainIsDeclaredAndItsRuleAppendedAfterTheOwnedRules() {
        let table = TableRuleset(
            table: .filter, chains: [Chain("KUBE-NODEPORTS", [Rule([], .accept)])], baseJumps: [jump],
            ensured: [EnsuredRule(chain: "KUBE-FIREWALL", rule: drop),
                      EnsuredRule(chain: "INPUT", rule: Rule([], .jump("KUBE-FIREWALL")))])
        XCTAssertEqual(TextRenderer.render(Ruleset(family: .ipv4, tables: [table])), """
            *filter
            :KUBE-NODEPORTS - [0:0]
            :KUBE-FIREWALL - [0:0]
            -A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
            -A INPUT -j KUBE-FIREWALL
            -A KUBE-NODEPORTS -j ACCEPT
            -A KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked packets" -m mark --mark 0x8000/0x8000 -j DROP
            COMMIT

            """)
    }

    func testAnEnsuredRuleThatAlreadyExistsIsNotAddedAgain() {
        let table = TableRuleset(
            table: .filter, chains: [Chain("KUBE-FIREWALL", [drop])], baseJumps: [jump],
            ensured: [EnsuredRule(chain: "KUBE-FIREWALL", rule: drop), EnsuredRule(chain: "INPUT", rule: jump.rule),
                      EnsuredRule(chain: "OUTPUT", rule: Rule([], .jump("KUBE-FIREWALL"))),
                      EnsuredRule(chain: "OUTPUT", rule: Rule([], .jump("KUBE-FIREWALL")))])
        let text = TextRenderer.render(Ruleset(family: .ipv4, tables: [table]))
        XCTAssertEqual(text.components(separatedBy: "0x8000/0x8000").count - 1, 1)
        XCTAssertEqual(text.components(separatedBy: ":KUBE-FIREWALL").count - 1, 1)
        XCTAssertEqual(text.components(separatedBy: "-A INPUT").count - 1, 1)
        XCTAssertEqual(text.components(separatedBy: "-A OUTPUT -j KUBE-FIREWALL\n").count - 1, 1)
    }
}
