import Crypto
import Foundation
import KubeModel

/// Upstream kube-proxy's chain names and probability text, to the letter.
public enum ChainNaming {
    /// `portProtoHash`: the first 16 characters of base32(sha256(servicePortName + protocol)).
    public static func portProtoHash(_ servicePortName: String, _ proto: String) -> String {
        hash16(servicePortName + proto)
    }

    public static func serviceChain(_ spn: String, _ proto: String) -> String { "KUBE-SVC-" + portProtoHash(spn, proto) }
    public static func localServiceChain(_ spn: String, _ proto: String) -> String { "KUBE-SVL-" + portProtoHash(spn, proto) }
    public static func externalChain(_ spn: String, _ proto: String) -> String { "KUBE-EXT-" + portProtoHash(spn, proto) }
    public static func firewallChain(_ spn: String, _ proto: String) -> String { "KUBE-FW-" + portProtoHash(spn, proto) }

    /// `servicePortEndpointChainName`: KUBE-SEP- + hash of servicePortName + protocol + `ip:port`.
    public static func endpointChain(_ spn: String, _ proto: String, _ endpoint: String) -> String {
        "KUBE-SEP-" + hash16(spn + proto + endpoint)
    }

    /// base32 (RFC 4648 alphabet) of the first 10 bytes of the SHA-256: exactly the 16 characters upstream keeps.
    static func hash16(_ input: String) -> String {
        var input = input
        var hasher = SHA256()
        input.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        let digest = hasher.finalize()
        return digest.withUnsafeBytes { raw -> String in
            var acc: UInt64 = 0
            var hi: UInt64 = 0
            // 10 bytes = 80 bits = 16 base32 digits; split into 40+40 bits.
            for i in 0..<5 { hi = hi << 8 | UInt64(raw[i]) }
            for i in 5..<10 { acc = acc << 8 | UInt64(raw[i]) }
            var out = [UInt8](repeating: 0, count: 16)
            for i in 0..<8 { out[i] = alphabet[Int((hi >> UInt64(35 - 5 * i)) & 31)] }
            for i in 0..<8 { out[8 + i] = alphabet[Int((acc >> UInt64(35 - 5 * i)) & 31)] }
            return String(decoding: out, as: UTF8.self)
        }
    }

    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    /// `computeProbability`: `fmt.Sprintf("%0.10f", 1.0/float64(n))`.
    public static func probability(_ n: Int) -> String {
        if n > 0, n < precomputed.count { return precomputed[n] }
        return n <= 0 ? "<bad value>" : String(format: "%0.10f", 1.0 / Double(n))
    }

    private static let precomputed: [String] = (0..<1025).map {
        $0 == 0 ? "<bad value>" : String(format: "%0.10f", 1.0 / Double($0))
    }
}
