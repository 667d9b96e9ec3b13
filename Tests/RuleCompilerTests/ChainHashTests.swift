import Crypto
import XCTest

@testable import RuleCompiler

/// The in-house SHA-256 behind chain names, against FIPS 180-4 example vectors and swift-crypto.
final class ChainHashTests: XCTestCase {
    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    func testDigestMatchesFIPSExampleVectors() {
        XCTAssertEqual(hex(ChainHash.digest("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex(ChainHash.digest("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // 56 bytes: the length no longer fits the first block, so the padding spills into a second one.
        XCTAssertEqual(
            hex(ChainHash.digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // 112 bytes: two message blocks.
        XCTAssertEqual(
            hex(ChainHash.digest(
                "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno",
                "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
    }

    /// Every length from 0 to 300 bytes (one to five blocks, each padding boundary), split across the three
    /// parts in different ways, with multi-byte characters.
    func testDigestMatchesSwiftCryptoForEveryShortLength() {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789/:.-é")
        for length in 0...300 {
            let text = String((0..<length).map { alphabet[($0 * 7 + length) % alphabet.count] })
            let chars = Array(text)
            let cut1 = chars.count / 3
            let cut2 = chars.count - chars.count / 5
            let a = String(chars[..<cut1]), b = String(chars[cut1..<cut2]), c = String(chars[cut2...])
            let expected = Array(SHA256.hash(data: Array(text.utf8)))
            XCTAssertEqual(ChainHash.digest(a, b, c), expected, "length \(length)")
            XCTAssertEqual(ChainHash.digest(text), expected, "length \(length)")
        }
    }

    func testChainNameIsPrefixAndFirst80BitsInBase32() {
        let digest = Array(SHA256.hash(data: Array("ns1/svc1:p80tcp10.180.0.1:80".utf8)))
        // The first 80 bits, most significant first, read five at a time as RFC 4648 base32 digits.
        let bits = digest[0..<10].flatMap { byte in (0..<8).reversed().map { Int(byte >> $0) & 1 } }
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        var expected = "KUBE-SEP-"
        for start in stride(from: 0, to: 80, by: 5) {
            expected.append(alphabet[bits[start..<start + 5].reduce(0) { $0 << 1 | $1 }])
        }
        XCTAssertEqual(ChainHash("ns1/svc1:p80", "tcp", "10.180.0.1:80").chainName("KUBE-SEP-"), expected)
        XCTAssertEqual(expected, "KUBE-SEP-SXIVWICOYRO3J4NJ")
    }
}
