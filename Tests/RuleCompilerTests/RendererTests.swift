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
