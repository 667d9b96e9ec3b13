#if canImport(Glibc)
import Glibc
#endif

/// Facts about the running kernel that decide optional rule features.
public enum KernelProbe {
    /// `MASQUERADE --random-fully` needs NF_NAT_RANGE_PROTO_RANDOM_FULLY, in the kernel since 3.13.
    /// (Upstream asks the iptables binary's version; with libiptc the kernel is what matters.)
    public static func hasRandomFully() -> Bool {
        var u = utsname()
        guard uname(&u) == 0 else { return false }
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(separator: ".").prefix(2).map { Int($0.prefix { $0.isNumber }) ?? 0 }
        guard parts.count == 2 else { return false }
        return parts[0] > 3 || (parts[0] == 3 && parts[1] >= 13)
    }
}
