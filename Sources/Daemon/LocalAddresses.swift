#if canImport(Glibc)
import Glibc
#endif
import KubeModel

/// The addresses configured on this network namespace's interfaces (what upstream's `GetNodeIPs` reads
/// for `nodePortAddresses`).
public enum LocalAddresses {
    public static func all() -> [IPAddress] {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0, let first = head else { return [] }
        defer { freeifaddrs(head) }
        var out: [IPAddress] = []
        var cur: UnsafeMutablePointer<ifaddrs>? = first
        while let p = cur {
            defer { cur = p.pointee.ifa_next }
            guard let sa = p.pointee.ifa_addr else { continue }
            switch Int32(sa.pointee.sa_family) {
            case AF_INET:
                sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    if let ip = IPAddress(bytes: withUnsafeBytes(of: &a) { Array($0) }) { out.append(ip) }
                }
            case AF_INET6:
                sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    var a = sin6.pointee.sin6_addr
                    if let ip = IPAddress(bytes: withUnsafeBytes(of: &a) { Array($0) }) { out.append(ip) }
                }
            default: break
            }
        }
        return out
    }
}
