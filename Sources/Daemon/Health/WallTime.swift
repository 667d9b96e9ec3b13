#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A wall-clock instant with nanosecond precision, as Go's `time.Time` carries it.
///
/// `Date` cannot hold nanoseconds exactly at today's epoch offsets, and the health endpoints print
/// them, so the daemon's clocks hand out this instead.
public struct WallTime: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Nanoseconds since 1970-01-01 00:00:00 UTC (good until the year 2262).
    public var nanosecondsSince1970: Int64

    public init(nanosecondsSince1970: Int64) {
        self.nanosecondsSince1970 = nanosecondsSince1970
    }

    public init(secondsSince1970: Int64, nanoseconds: Int64 = 0) {
        self.nanosecondsSince1970 = secondsSince1970 * 1_000_000_000 + nanoseconds
    }

    /// The current time of `CLOCK_REALTIME`.
    public static func now() -> WallTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return WallTime(secondsSince1970: Int64(ts.tv_sec), nanoseconds: Int64(ts.tv_nsec))
    }

    /// Seconds since the epoch as a float, the unit of the `*_timestamp_seconds` gauges.
    public var secondsSince1970: Double { Double(self.nanosecondsSince1970) / 1e9 }

    public func advanced(by duration: Duration) -> WallTime {
        WallTime(nanosecondsSince1970: self.nanosecondsSince1970 + duration.nanoseconds)
    }

    /// The time elapsed from `other` to `self`.
    public func since(_ other: WallTime) -> Duration {
        .nanoseconds(self.nanosecondsSince1970 - other.nanosecondsSince1970)
    }

    public static func < (a: WallTime, b: WallTime) -> Bool {
        a.nanosecondsSince1970 < b.nanosecondsSince1970
    }

    /// Go's `time.Time.String()` in UTC: `2024-01-01 00:00:00.000000001 +0000 UTC`, fraction
    /// trimmed of trailing zeros and left out when zero (layout `.999999999`).
    public var description: String {
        var seconds = self.nanosecondsSince1970 / 1_000_000_000
        var nanos = self.nanosecondsSince1970 % 1_000_000_000
        if nanos < 0 {
            seconds -= 1
            nanos += 1_000_000_000
        }
        var t = time_t(seconds)
        var tm = tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        var text = "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2)) "
        text += "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2))"
        if nanos != 0 {
            var fraction = pad(Int32(nanos), 9)
            while fraction.hasSuffix("0") { fraction.removeLast() }
            text += "." + fraction
        }
        return text + " +0000 UTC"
    }

    /// What Go prints for the zero `time.Time`, which upstream reports before the first sync.
    public static let goZeroTimeDescription = "0001-01-01 00:00:00 +0000 UTC"
}

extension Duration {
    /// The whole duration in nanoseconds (durations up to ±292 years).
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
