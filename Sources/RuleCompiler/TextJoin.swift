/// Strings for rule comments and chain names, built in one allocation.
///
/// A 10k-Service compile writes ~10^5 comments. Interpolation starts from a small buffer and regrows it
/// as pieces arrive (two or three allocations per comment); these size the result first.
enum TextJoin {
    /// `a + b + c`.
    static func join(_ a: String, _ b: String, _ c: String = "") -> String {
        let count = a.utf8.count + b.utf8.count + c.utf8.count
        return String(unsafeUninitializedCapacity: count) { out in
            var n = copyUTF8(a, into: out, at: 0)
            n = copyUTF8(b, into: out, at: n)
            return copyUTF8(c, into: out, at: n)
        }
    }

    /// Copies `s`'s UTF-8 into `buffer` at `offset` (which must have room); returns the offset after it.
    @inline(__always)
    static func copyUTF8(_ s: String, into buffer: UnsafeMutableBufferPointer<UInt8>, at offset: Int) -> Int {
        let copied = s.utf8.withContiguousStorageIfAvailable { src -> Int in
            guard let base = src.baseAddress, !src.isEmpty else { return 0 }
            (buffer.baseAddress! + offset).update(from: base, count: src.count)
            return src.count
        }
        if let copied { return offset + copied }
        // Bridged or otherwise non-contiguous strings (not produced by this compiler): byte by byte.
        var n = offset
        for byte in s.utf8 {
            buffer[n] = byte
            n += 1
        }
        return n
    }
}
