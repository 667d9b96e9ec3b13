import Foundation
import Logging
import ProxyConfig

/// The sysctls kube-proxy sets at start-up, each logged. Failures are warnings: in a network namespace some
/// (like `nf_conntrack_max`) are read-only, and kube-proxy goes on too.
public enum Sysctls {
    public static func apply(_ c: KubeProxyConfiguration, localhostNodePorts: Bool, logger: Logger,
                             root: String = "/proc/sys") {
        func set(_ path: String, _ value: String) {
            let file = root + "/" + path
            let current = (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            if current == value { return }
            do {
                try value.write(toFile: file, atomically: false, encoding: .utf8)
                logger.info("set sysctl \(path.replacingOccurrences(of: "/", with: ".")) = \(value)")
            } catch {
                logger.warning("could not set sysctl \(path.replacingOccurrences(of: "/", with: ".")) = \(value): \(error.localizedDescription)")
            }
        }
        // Localhost NodePorts need DNAT of 127/8 (only set when they are in use: CVE-2020-8558).
        if localhostNodePorts { set("net/ipv4/conf/all/route_localnet", "1") }
        if c.conntrack.tcpBeLiberal { set("net/netfilter/nf_conntrack_tcp_be_liberal", "1") }
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        // 0 means "leave as is", as in kube-proxy.
        if c.conntrack.maxPerCore > 0 {
            set("net/netfilter/nf_conntrack_max", String(max(c.conntrack.maxPerCore * cpus, c.conntrack.min)))
        }
        let timeouts: [(String, GoDuration)] = [
            ("net/netfilter/nf_conntrack_tcp_timeout_established", c.conntrack.tcpEstablishedTimeout),
            ("net/netfilter/nf_conntrack_tcp_timeout_close_wait", c.conntrack.tcpCloseWaitTimeout),
            ("net/netfilter/nf_conntrack_udp_timeout", c.conntrack.udpTimeout),
            ("net/netfilter/nf_conntrack_udp_timeout_stream", c.conntrack.udpStreamTimeout),
        ]
        for (path, t) in timeouts where t.nanoseconds > 0 { set(path, String(Int(t.seconds))) }
    }
}
