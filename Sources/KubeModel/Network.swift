#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP family, spelled as Kubernetes spells it (`IPv4`, `IPv6`).
public enum IPFamily: String, Sendable, Hashable, CaseIterable, Codable {
    case ipv4 = "IPv4"
    case ipv6 = "IPv6"

    /// The lowercase name used in flags and metric labels (`ipv4`, `ipv6`).
    public var flagName: String { self == .ipv4 ? "ipv4" : "ipv6" }
}

/// A parsed IPv4 or IPv6 address. `description` is the canonical text form (inet_ntop).
///
/// Stored inline (two words and a flag) so that a 30k-Service cluster does not allocate per address.
public struct IPAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// High and low 64 bits of the address in network order; an IPv4 address lives in the low 32 bits of `low`.
    public let high: UInt64
    public let low: UInt64
    public let isIPv6: Bool

    public var family: IPFamily { isIPv6 ? .ipv6 : .ipv4 }

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        if !isIPv6 { return (0..<4).map { UInt8(truncatingIfNeeded: low >> (24 - 8 * UInt64($0))) } }
        return (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64($0))) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64($0))) }
    }

    /// An IPv4 address from its 32-bit value (host order).
    public init(ipv4 value: UInt32) {
        self.high = 0
        self.low = UInt64(value)
        self.isIPv6 = false
    }

    public init?(bytes: [UInt8]) {
        if bytes.count == 4 {
            self.high = 0
            self.low = bytes.reduce(0) { $0 << 8 | UInt64($1) }
            self.isIPv6 = false
        } else if bytes.count == 16 {
            self.high = bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) }
            self.low = bytes[8..<16].reduce(0) { $0 << 8 | UInt64($1) }
            self.isIPv6 = true
        } else {
            return nil
        }
    }

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text as kube-proxy does (`netutils.ParseIPSloppy`: Go's
    /// pre-1.17 `net.ParseIP`, which reads IPv4 octets with leading zeros as decimal, "172.30.0.041" being
    /// 172.30.0.41 — objects written before the apiserver rejected them still carry such addresses), minus zone
    /// suffixes.
    public init?(_ text: some StringProtocol) {
        if let v = Self.parseDottedQuad(text.utf8) {
            self.init(ipv4: v)
            return
        }
        let s = String(text)
        if s.utf8.contains(UInt8(ascii: ":")) {
            var a = in6_addr()
            guard inet_pton(AF_INET6, s, &a) == 1 else { return nil }
            self.init(bytes: withUnsafeBytes(of: &a) { Array($0) })
        } else {
            // Not a dotted quad (parseDottedQuad took every valid one): inet_pton gives the exact rejection.
            var a = in_addr()
            guard inet_pton(AF_INET, s, &a) == 1 else { return nil }
            self.init(bytes: withUnsafeBytes(of: &a) { Array($0) })
        }
    }

    /// Dotted-quad IPv4 (four decimal octets 0-255; leading zeros read as decimal, as ParseIPSloppy does) read
    /// straight from the UTF-8 bytes: manifests at 30k Services hold ~10^5 addresses. nil for anything else,
    /// which then goes to inet_pton (IPv6, and the exact rejection of malformed text).
    static func parseDottedQuad(_ utf8: some Sequence<UInt8>) -> UInt32? {
        var value: UInt32 = 0
        var octet: UInt32 = 0
        var digits = 0
        var parts = 0
        for c in utf8 {
            if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                octet = octet * 10 + UInt32(c - UInt8(ascii: "0"))
                digits += 1
                if octet > 255 { return nil }
            } else if c == UInt8(ascii: ".") {
                if digits == 0 || parts == 3 { return nil }
                value = value << 8 | octet
                parts += 1
                octet = 0
                digits = 0
            } else {
                return nil
            }
        }
        guard parts == 3, digits > 0 else { return nil }
        return value << 8 | octet
    }

    public var description: String {
        if !isIPv6 { return Self.dottedQuad(UInt32(truncatingIfNeeded: low)) }
        var buffer = [CChar](repeating: 0, count: 64)
        let raw = bytes
        return raw.withUnsafeBytes { ptr -> String in
            let af = isIPv6 ? AF_INET6 : AF_INET
            guard inet_ntop(af, ptr.baseAddress, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
            return String(cString: buffer)
        }
    }

    /// IPv4 text without inet_ntop/sprintf: rendering a 30k-Service ruleset formats ~10^5 addresses.
    static func dottedQuad(_ v: UInt32) -> String {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 15) { buf in
            let n = writeDottedQuad(v, into: buf, at: 0)
            return String(decoding: UnsafeBufferPointer(rebasing: buf[0..<n]), as: UTF8.self)
        }
    }

    /// Writes `v` as dotted-quad text at `offset` (15 bytes at most); returns the offset after it.
    private static func writeDottedQuad(
        _ v: UInt32, into buf: UnsafeMutableBufferPointer<UInt8>, at offset: Int
    ) -> Int {
        var n = offset
        for shift in stride(from: 24, through: 0, by: -8) {
            let octet = Int((v >> UInt32(shift)) & 0xFF)
            if octet >= 100 { buf[n] = UInt8(48 + octet / 100); n += 1 }
            if octet >= 10 { buf[n] = UInt8(48 + (octet / 10) % 10); n += 1 }
            buf[n] = UInt8(48 + octet % 10); n += 1
            if shift > 0 { buf[n] = 46; n += 1 }
        }
        return n
    }

    public var isLoopback: Bool {
        if !isIPv6 { return (low >> 24) & 0xFF == 127 }
        return high == 0 && low == 1
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        if lhs.isIPv6 != rhs.isIPv6 { return !lhs.isIPv6 }
        return (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }

    /// `ip:port`, with brackets for IPv6, as Go's `net.JoinHostPort` writes it.
    public func joined(port: Int) -> String {
        guard !isIPv6, (0...65535).contains(port) else { return isIPv6 ? "[\(self)]:\(port)" : "\(self):\(port)" }
        // The compiler writes one of these per endpoint and the renderer one per DNAT rule: build it in place.
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 21) { buf in
            var n = Self.writeDottedQuad(UInt32(truncatingIfNeeded: low), into: buf, at: 0)
            buf[n] = 58  // ':'
            n += 1
            var divisor = 10000
            while divisor > 1 && port < divisor { divisor /= 10 }
            while divisor > 0 {
                buf[n] = UInt8(48 + (port / divisor) % 10)
                n += 1
                divisor /= 10
            }
            return String(decoding: UnsafeBufferPointer(rebasing: buf[0..<n]), as: UTF8.self)
        }
    }
}

/// A CIDR block. `description` is `address/prefix` with the address masked, as Go's `IPNet.String()`.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    public var family: IPFamily { address.family }

    public init?(address: IPAddress, prefixLength: Int) {
        let bits = address.bytes.count * 8
        guard prefixLength >= 0, prefixLength <= bits else { return nil }
        self.address = IPAddress(bytes: CIDR.mask(address.bytes, prefixLength))!
        self.prefixLength = prefixLength
    }

    /// Parses `a.b.c.d/n` or `x::/n`. Like kube-proxy's sloppy parsing, surrounding whitespace is trimmed.
    public init?(_ text: some StringProtocol) {
        let trimmed = text.trimmingWhitespace()
        guard let slash = trimmed.firstIndex(of: "/") else { return nil }
        guard let ip = IPAddress(trimmed[..<slash]) else { return nil }
        let prefixText = trimmed[trimmed.index(after: slash)...]
        guard !prefixText.isEmpty, prefixText.allSatisfy({ $0.isASCII && $0.isNumber }), prefixText.count <= 3,
              let n = Int(prefixText)
        else { return nil }
        self.init(address: ip, prefixLength: n)
    }

    /// A host route (/32 or /128) for an address.
    public init(host: IPAddress) {
        self.address = host
        self.prefixLength = host.bytes.count * 8
    }

    public func contains(_ ip: IPAddress) -> Bool {
        guard ip.isIPv6 == address.isIPv6 else { return false }
        return CIDR.mask(ip.bytes, prefixLength) == address.bytes
    }

    public var description: String { "\(address)/\(prefixLength)" }

    static func mask(_ bytes: [UInt8], _ prefix: Int) -> [UInt8] {
        var out = bytes
        for i in 0..<out.count {
            let bitsHere = max(0, min(8, prefix - i * 8))
            out[i] &= bitsHere == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bitsHere))
        }
        return out
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces, tabs and newlines.
    public func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
