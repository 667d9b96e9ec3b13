import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What Go's process collector reads from /proc/self/stat, in the units it exports.
struct ProcessStat {
    var cpuSeconds: Double
    var virtualBytes: Double
    var residentBytes: Double
    var startTimeSeconds: Double

    /// Parses /proc/self/stat (proc(5)); nil where there is no procfs.
    static func read() -> ProcessStat? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8) else { return nil }
        return self.parse(stat: stat, bootTime: self.bootTime() ?? 0)
    }

    /// `stat` is the one line of /proc/<pid>/stat; `bootTime` is `btime` from /proc/stat.
    static func parse(stat: String, bootTime: Double) -> ProcessStat? {
        // The command name (field 2) is in parentheses and may hold spaces or ')': split after the last ')'.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // fields[0] is field 3 (state): utime is field 14, stime 15, starttime 22, vsize 23, rss 24.
        guard fields.count > 21, let utime = Double(fields[11]), let stime = Double(fields[12]),
            let start = Double(fields[19]), let vsize = Double(fields[20]), let rss = Double(fields[21])
        else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        return ProcessStat(
            cpuSeconds: (utime + stime) / ticks,
            virtualBytes: vsize,
            residentBytes: rss * page,
            startTimeSeconds: bootTime + start / ticks
        )
    }

    /// `btime` of /proc/stat: boot time in seconds since the epoch.
    static func bootTime() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst("btime ".count).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    /// Entries of /proc/self/fd, less the descriptor the listing itself holds open.
    static func openFileDescriptors() -> Int? {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return nil }
        return max(0, entries.count - 1)
    }

    /// The soft `RLIMIT_NOFILE`.
    static func maxFileDescriptors() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return limit.rlim_cur == rlim_t.max ? nil : Int(limit.rlim_cur)
    }
}
