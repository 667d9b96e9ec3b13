import XCTest

@testable import Netfilter

final class TableReaderParseTests: XCTestCase {
    private func parse(_ text: String) -> [ChainSnapshot] {
        Array(text.utf8).withUnsafeBufferPointer { TableReader.parse($0) }
    }

    func testParsesEveryField() {
        let got = parse("PREROUTING\t1\t2\t00000000000000ff\nKUBE-SEP-ABC\t0\t13\tdeadbeef01234567\n")
        XCTAssertEqual(
            got,
            [
                ChainSnapshot(name: "PREROUTING", isBuiltin: true, ruleCount: 2, digest: 0xff),
                ChainSnapshot(name: "KUBE-SEP-ABC", isBuiltin: false, ruleCount: 13, digest: 0xdead_beef_0123_4567),
            ])
    }

    func testSkipsMalformedLinesAndToleratesAMissingFinalNewline() {
        let got = parse("bad line\nX\t0\tnotanumber\t00\nKUBE-SERVICES\t0\t0\tcbf29ce484222325")
        XCTAssertEqual(got, [ChainSnapshot(name: "KUBE-SERVICES", isBuiltin: false, ruleCount: 0, digest: 0xcbf2_9ce4_8422_2325)])
    }

    func testEmptyInput() {
        XCTAssertEqual(parse(""), [])
    }
}
