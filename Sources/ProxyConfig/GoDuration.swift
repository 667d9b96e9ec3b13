/// A span of time as Go's `time.Duration` holds it (signed nanoseconds), parsed from and printed as
/// Go prints it (`30s`, `15m0s`, `24h0m0s`, `1.5s`, `500ms`), because that is how
/// KubeProxyConfiguration (`metav1.Duration`) and kube-proxy's duration flags spell time.
public struct GoDuration: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The length in nanoseconds; negative durations are representable (and rejected by validation).
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) {
        self.nanoseconds = nanoseconds
    }

    public init(seconds: Double) {
        self.nanoseconds = Int64((seconds * 1e9).rounded())
    }

    public static let zero = GoDuration(nanoseconds: 0)
    public static func milliseconds(_ n: Int64) -> GoDuration { GoDuration(nanoseconds: n * 1_000_000) }
    public static func seconds(_ n: Int64) -> GoDuration { GoDuration(nanoseconds: n * 1_000_000_000) }
    public static func minutes(_ n: Int64) -> GoDuration { .seconds(n * 60) }
    public static func hours(_ n: Int64) -> GoDuration { .seconds(n * 3600) }

    /// The length in seconds.
    public var seconds: Double { Double(nanoseconds) / 1e9 }

    /// The same length as a Swift `Duration`, for clocks and sleeps.
    public var duration: Duration { .nanoseconds(nanoseconds) }

    public static func < (lhs: GoDuration, rhs: GoDuration) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    // Go's time.ParseDuration units, in nanoseconds. "µs" is U+00B5 MICRO SIGN, "μs" U+03BC GREEK MU; Go takes both.
    private static let units: [String: Int64] = [
        "ns": 1, "us": 1_000, "\u{00B5}s": 1_000, "\u{03BC}s": 1_000, "ms": 1_000_000,
        "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
    ]

    private static func isDigit(_ c: Unicode.Scalar) -> Bool { c.value >= 48 && c.value <= 57 }

    /// Parses Go duration text: an optional sign, then one or more `<number><unit>` parts with units
    /// `ns`, `us`/`µs`, `ms`, `s`, `m`, `h` (`1h2m3.5s`, `500ms`, `-1s`). A bare `0` is zero, as in Go.
    /// Returns nil for anything Go's `time.ParseDuration` rejects (missing unit, unknown unit, overflow).
    public init?(parsing text: String) {
        var chars = Array(text.unicodeScalars)
        var negative = false
        if let first = chars.first, first == "-" || first == "+" {
            negative = first == "-"
            chars.removeFirst()
        }
        if chars.count == 1, chars[0] == "0" {
            self.nanoseconds = 0
            return
        }
        guard !chars.isEmpty else { return nil }
        var total: Double = 0
        var exact: Int64 = 0
        var i = 0
        while i < chars.count {
            var whole: Int64 = 0
            var wholeDigits = 0
            var overflow = false
            while i < chars.count, GoDuration.isDigit(chars[i]) {
                let (m, o1) = whole.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(Int64(chars[i].value - 48))
                overflow = overflow || o1 || o2
                whole = s
                wholeDigits += 1
                i += 1
            }
            var fraction = ""
            if i < chars.count, chars[i] == "." {
                i += 1
                while i < chars.count, GoDuration.isDigit(chars[i]) {
                    fraction.unicodeScalars.append(chars[i])
                    i += 1
                }
            }
            guard !overflow, wholeDigits > 0 || !fraction.isEmpty else { return nil }
            var unitText = ""
            while i < chars.count, chars[i] != ".", !GoDuration.isDigit(chars[i]) {
                unitText.unicodeScalars.append(chars[i])
                i += 1
            }
            guard let unit = GoDuration.units[unitText] else { return nil }
            let (part, o) = whole.multipliedReportingOverflow(by: unit)
            guard !o else { return nil }
            let (sum, o2) = exact.addingReportingOverflow(part)
            guard !o2 else { return nil }
            exact = sum
            if !fraction.isEmpty, let f = Double("0." + fraction) {
                total += f * Double(unit)
            }
        }
        let (result, o) = exact.addingReportingOverflow(Int64(total.rounded(.down)))
        guard !o else { return nil }
        self.nanoseconds = negative ? -result : result
    }

    /// Go's `Duration.String()`: `0s`, `1.5µs`, `500ms`, `30s`, `15m0s`, `24h0m0s`, `1h2m3.5s`.
    public var description: String {
        if nanoseconds == 0 { return "0s" }
        let negative = nanoseconds < 0
        let u = nanoseconds.magnitude
        var out: String
        if u < 1_000_000_000 {
            // Sub-second: the largest unit that keeps a non-zero integer part.
            if u < 1_000 {
                out = "\(u)ns"
            } else if u < 1_000_000 {
                out = GoDuration.fixed(u, scale: 1_000) + "\u{00B5}s"
            } else {
                out = GoDuration.fixed(u, scale: 1_000_000) + "ms"
            }
        } else {
            let hours = u / 3_600_000_000_000
            let minutes = (u / 60_000_000_000) % 60
            let secondsPart = u % 60_000_000_000
            out = ""
            if hours > 0 { out += "\(hours)h" }
            if hours > 0 || minutes > 0 { out += "\(minutes)m" }
            out += GoDuration.fixed(secondsPart, scale: 1_000_000_000) + "s"
        }
        return negative ? "-" + out : out
    }

    /// `value / scale` with the fraction's trailing zeros dropped, as Go's `fmtFrac` does.
    private static func fixed(_ value: UInt64, scale: UInt64) -> String {
        let whole = value / scale
        let frac = value % scale
        guard frac != 0 else { return "\(whole)" }
        var digits = 0
        var s = scale
        while s > 1 {
            s /= 10
            digits += 1
        }
        var text = String(frac)
        text = String(repeating: "0", count: digits - text.count) + text
        while text.hasSuffix("0") { text.removeLast() }
        return "\(whole).\(text)"
    }
}
