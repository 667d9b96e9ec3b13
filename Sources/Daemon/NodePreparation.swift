import Foundation
import Logging
import Netfilter
import ProxyConfig

/// What a sync needs of the node before rules go in: the sysctls kube-proxy sets. The daemon and `--once` set
/// them (`Sysctls`); `--dry-run` changes nothing (`none`).
public protocol NodePreparation: Sendable {
    /// Makes the node ready for rules compiled with these settings. Failures are logged, not thrown.
    func prepare(_ configuration: KubeProxyConfiguration, localhostNodePorts: Bool, logger: Logger)
}

/// `--dry-run`: nothing on the node changes.
public struct NoNodePreparation: NodePreparation {
    public init() {}
    public func prepare(_ configuration: KubeProxyConfiguration, localhostNodePorts: Bool, logger: Logger) {}
}

/// The sysctls kube-proxy sets at start-up, each logged. Failures are warnings: in a network namespace some
/// (like `nf_conntrack_max`) are read-only, and kube-proxy goes on too.
public struct Sysctls: NodePreparation {
    /// Where the sysctl files are (tests point this at a directory of their own).
    public var root: String

    public init(root: String = "/proc/sys") { self.root = root }

    public func prepare(_ c: KubeProxyConfiguration, localhostNodePorts: Bool, logger: Logger) {
        func set(_ path: String, _ value: String) {
            let file = self.root + "/" + path
            let name = path.replacingOccurrences(of: "/", with: ".")
            let current = (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            if current == value { return }
            do {
                try value.write(toFile: file, atomically: false, encoding: .utf8)
                logger.info("set sysctl \(name) = \(value)")
            } catch {
                logger.warning("could not set sysctl \(name) = \(value): \(error.localizedDescription)")
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

/// `--random-fully` / `--nfacct-counters`: yes, no, or decided on this machine.
public enum FeatureChoice: String, CaseIterable, Sendable {
    case auto, yes, no
}

extension KernelFeatures {
    /// Decides the optional rule features the same way for `--dry-run`, `--once` and the daemon, so a dry run
    /// prints what `--once` would write on this machine. `--random-fully auto` follows kube-proxy: the host's
    /// iptables is 1.6.2 or newer (its `--version` needs no privileges); without an iptables binary, the kernel
    /// decides (NF_NAT_RANGE_PROTO_RANDOM_FULLY exists since 3.13). `kernelRelease` (tests): the running kernel's
    /// release, as uname(2) gives it.
    ///
    /// `--nfacct-counters auto` follows kube-proxy's `NewProxier`: each nfacct object is created (`create`, the
    /// modes that write rules) and its match written only when that worked; a dry run (`create` false) asks whether
    /// the kernel could hold it, and creates nothing. `yes` writes both matches (creating the objects when
    /// `create`; a failure is logged, the rules then fail to load as they would with `iptables`); `no` writes none.
    public static func decide(randomFully: FeatureChoice, nfacctCounters: FeatureChoice, create: Bool = false,
                              objects: NFAcctObjects = KernelNFAcct(), logger: Logger? = nil,
                              iptables: () -> IptablesVersion? = IptablesVersion.detect,
                              kernelRelease: () -> String? = KernelFeatures.kernelRelease) -> KernelFeatures {
        let random: Bool
        switch randomFully {
        case .yes: random = true
        case .no: random = false
        case .auto: random = iptables()?.supportsRandomFully ?? kernelRelease().map(kernelHasRandomFully) ?? false
        }
        var counters = Set<NFAcctCounter>()
        if nfacctCounters != .no {
            for counter in NFAcctCounter.allCases.sorted() {
                let name = counter.rawValue
                if create {
                    do {
                        try objects.ensure(name)
                        counters.insert(counter)
                    } catch {
                        if nfacctCounters == .yes {
                            logger?.warning("cannot create nfacct object \(name), which the rules use (--nfacct-counters yes): \(error)")
                            counters.insert(counter)
                        } else {
                            logger?.warning("nfacct object \(name) not available, its match and metric are left out: \(error)")
                        }
                    }
                } else if nfacctCounters == .yes || objects.available(name) {
                    counters.insert(counter)
                }
            }
        }
        return KernelFeatures(randomFully: random, nfacct: counters)
    }

    /// The running kernel's release (uname -r), nil when uname fails.
    public static func kernelRelease() -> String? {
        var u = utsname()
        guard uname(&u) == 0 else { return nil }
        return withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// NF_NAT_RANGE_PROTO_RANDOM_FULLY exists since Linux 3.13.
    static func kernelHasRandomFully(_ release: String) -> Bool {
        let parts = release.split(separator: ".").prefix(2).map { Int($0.prefix { $0.isNumber }) ?? 0 }
        guard parts.count == 2 else { return false }
        return parts[0] > 3 || (parts[0] == 3 && parts[1] >= 13)
    }
}
