/// SHA-256 (FIPS 180-4) for the short inputs chain names hash, with the message assembled in a temporary
/// buffer and the state kept in locals.
///
/// A compile hashes several names of 20-60 bytes per Service. Through swift-crypto each hash paid for a digest
/// context, a `[UInt8]` and several Strings, more than the compression itself; this version allocates nothing
/// but the chain name it returns (and, past a few hundred bytes, the message buffer).
struct ChainHash {
    /// The message `a + b + c` (UTF-8), padded as FIPS 180-4 §5.1.1 says, handed to `body`.
    @inline(__always)
    static func withPaddedMessage<R>(
        _ a: String, _ b: String, _ c: String, _ body: (UnsafeBufferPointer<UInt8>) -> R
    ) -> R {
        let length = a.utf8.count + b.utf8.count + c.utf8.count
        // Room for the 0x80 byte and the 8-byte bit length, rounded up to whole 64-byte blocks.
        let padded = (length + 9 + 63) & ~63
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: padded) { buffer in
            var n = TextJoin.copyUTF8(a, into: buffer, at: 0)
            n = TextJoin.copyUTF8(b, into: buffer, at: n)
            n = TextJoin.copyUTF8(c, into: buffer, at: n)
            buffer[n] = 0x80
            for i in (n + 1)..<(padded - 8) { buffer[i] = 0 }
            let bits = UInt64(length) &* 8
            for i in 0..<8 { buffer[padded - 1 - i] = UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i))) }
            return body(UnsafeBufferPointer(buffer))
        }
    }

    /// The eight state words after hashing an already padded message.
    static func state(ofPadded message: UnsafeBufferPointer<UInt8>) -> SIMD8<UInt32> {
        var h = initialState
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            var block = 0
            while block < message.count {
                compress(&h, message.baseAddress! + block, w.baseAddress!)
                block += 64
            }
        }
        return h
    }

    /// The full 32-byte digest of `a + b + c` (for tests; chain names keep only 80 bits).
    static func digest(_ a: String, _ b: String = "", _ c: String = "") -> [UInt8] {
        let h = withPaddedMessage(a, b, c) { state(ofPadded: $0) }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for i in 0..<8 {
            for shift in stride(from: 24, through: 0, by: -8) {
                out.append(UInt8(truncatingIfNeeded: h[i] >> UInt32(shift)))
            }
        }
        return out
    }

    /// The first 80 bits of the digest, as two 40-bit halves of 8 base32 digits each: what upstream keeps.
    private let high: UInt64
    private let low: UInt64

    /// Hashes `a + b + c`; one value names all the chains (SVC, SVL, EXT, FW) of one service port.
    init(_ a: String, _ b: String, _ c: String = "") {
        let h = Self.withPaddedMessage(a, b, c) { Self.state(ofPadded: $0) }
        high = UInt64(h[0]) << 8 | UInt64(h[1] >> 24)
        low = UInt64(h[1] & 0xFF_FFFF) << 16 | UInt64(h[2] >> 16)
    }

    /// `prefix` followed by base32 (RFC 4648 alphabet) of the first 10 bytes of the digest: exactly the
    /// 16 characters upstream keeps, written straight into the result's storage.
    func chainName(_ prefix: StaticString) -> String {
        let prefixCount = prefix.utf8CodeUnitCount
        return String(unsafeUninitializedCapacity: prefixCount + 16) { out in
            if prefixCount > 0 { out.baseAddress!.update(from: prefix.utf8Start, count: prefixCount) }
            for i in 0..<8 {
                out[prefixCount + i] = Self.base32Digit(high >> UInt64(35 - 5 * i))
                out[prefixCount + 8 + i] = Self.base32Digit(low >> UInt64(35 - 5 * i))
            }
            return prefixCount + 16
        }
    }

    /// RFC 4648 base32 digit for the low five bits of `v`. A table rather than a branch between letters and
    /// digits: the digits of a hash are random, so the branch would be mispredicted about once per name.
    @inline(__always)
    private static func base32Digit(_ v: UInt64) -> UInt8 {
        base32Alphabet.utf8Start[Int(truncatingIfNeeded: v & 31)]
    }

    private static let base32Alphabet: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

    private static let initialState = SIMD8<UInt32>(
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19)

    /// One block of FIPS 180-4 §6.2.2, with `w` as scratch for the message schedule (plus round constants).
    @inline(__always)
    private static func compress(
        _ h: inout SIMD8<UInt32>, _ block: UnsafePointer<UInt8>, _ w: UnsafeMutablePointer<UInt32>
    ) {
        for t in 0..<16 {
            let p = block + 4 * t
            w[t] = UInt32(p[0]) << 24 | UInt32(p[1]) << 16 | UInt32(p[2]) << 8 | UInt32(p[3])
        }
        for t in 16..<64 {
            let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
            let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
        }
        // Round constants folded into the schedule in one vectorisable pass, so each round reads one word.
        roundConstants.withUnsafeBufferPointer { k in
            for t in 0..<64 { w[t] &+= k[t] }
        }
        var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
        // Eight rounds per pass with the working variables renamed instead of shifted along.
        for t in stride(from: 0, to: 64, by: 8) {
            round(a, b, c, &d, e, f, g, &hh, w[t])
            round(hh, a, b, &c, d, e, f, &g, w[t + 1])
            round(g, hh, a, &b, c, d, e, &f, w[t + 2])
            round(f, g, hh, &a, b, c, d, &e, w[t + 3])
            round(e, f, g, &hh, a, b, c, &d, w[t + 4])
            round(d, e, f, &g, hh, a, b, &c, w[t + 5])
            round(c, d, e, &f, g, hh, a, &b, w[t + 6])
            round(b, c, d, &e, f, g, hh, &a, w[t + 7])
        }
        h &+= SIMD8(a, b, c, d, e, f, g, hh)
    }

    /// One round: `d` becomes the next `e` and `h` the next `a`; the caller renames the rest.
    @inline(__always)
    private static func round(
        _ a: UInt32, _ b: UInt32, _ c: UInt32, _ d: inout UInt32,
        _ e: UInt32, _ f: UInt32, _ g: UInt32, _ h: inout UInt32, _ kw: UInt32
    ) {
        let choose = g ^ (e & (f ^ g))
        let majority = (a & b) | (c & (a | b))
        let t1 = h &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ choose &+ kw
        let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ majority
        d = d &+ t1
        h = t1 &+ t2
    }

    @inline(__always)
    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { x >> n | x << (32 - n) }

    /// FIPS 180-4 §4.2.2: the first 32 bits of the fractional parts of the cube roots of the first 64 primes.
    private static let roundConstants: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]
}
