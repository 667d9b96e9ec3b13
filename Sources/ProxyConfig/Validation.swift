import KubeModel

extension KubeProxyConfiguration {
    /// Checks the defaulted configuration as kube-proxy's `validation.Validate` does, plus kube-natd's
    /// own limit (iptables mode only), and returns every problem.
    public func validate() -> [ConfigProblem] {
        let sink = DecodeSink()
        validate(sink: sink)
        return sink.problems
    }

    func validate(sink: DecodeSink) {
        func invalid(_ path: String, _ reason: String, _ got: String) {
            sink.problem(.invalid(path: path, reason: reason, got: got))
        }
        func quoted(_ s: String) -> String { "\"\(s)\"" }

        if mode != "iptables" {
            invalid("mode", "kube-natd implements iptables mode only", quoted(mode))
        }

        // iptables: upstream checks the bit range always, the periods for the active mode.
        if !(0...31).contains(iptables.masqueradeBit) {
            invalid("iptables.masqueradeBit", "must be 0..31", String(iptables.masqueradeBit))
        }
        if iptables.syncPeriod <= .zero {
            invalid("iptables.syncPeriod", "must be greater than 0", iptables.syncPeriod.description)
        }
        if iptables.minSyncPeriod < .zero {
            invalid("iptables.minSyncPeriod", "must be greater than or equal to 0", iptables.minSyncPeriod.description)
        }
        if iptables.minSyncPeriod > iptables.syncPeriod, iptables.syncPeriod > .zero {
            invalid(
                "iptables.syncPeriod",
                "must be greater than or equal to iptables.minSyncPeriod (\(iptables.minSyncPeriod))",
                iptables.syncPeriod.description)
        }

        let ctPaths: [(String, Int)] = [
            ("conntrack.maxPerCore", conntrack.maxPerCore), ("conntrack.min", conntrack.min),
        ]
        for (path, value) in ctPaths where value < 0 {
            invalid(path, "must be greater than or equal to 0", String(value))
        }
        let ctDurations: [(String, GoDuration)] = [
            ("conntrack.tcpEstablishedTimeout", conntrack.tcpEstablishedTimeout),
            ("conntrack.tcpCloseWaitTimeout", conntrack.tcpCloseWaitTimeout),
            ("conntrack.udpTimeout", conntrack.udpTimeout),
            ("conntrack.udpStreamTimeout", conntrack.udpStreamTimeout),
        ]
        for (path, value) in ctDurations where value < .zero {
            invalid(path, "must be greater than or equal to 0", value.description)
        }

        if !(-1000...1000).contains(oomScoreAdj) {
            invalid("oomScoreAdj", "must be -1000..1000", String(oomScoreAdj))
        }
        if clientConnection.burst < 0 {
            invalid("clientConnection.burst", "must be greater than or equal to 0", String(clientConnection.burst))
        }
        if configSyncPeriod <= .zero {
            invalid("configSyncPeriod", "must be greater than 0", configSyncPeriod.description)
        }

        if IPAddress(bindAddress) == nil {
            invalid("bindAddress", "must be an IP address", quoted(bindAddress))
        }
        // Empty: the server is off (kube-proxy validates these only when set).
        if !healthzBindAddress.isEmpty { validateHostPort(healthzBindAddress, path: "healthzBindAddress", sink: sink) }
        if !metricsBindAddress.isEmpty { validateHostPort(metricsBindAddress, path: "metricsBindAddress", sink: sink) }
        for problem in FeatureGates.check(featureGates) { sink.problem(problem) }
        for warning in FeatureGates.warnings(featureGates) { sink.warning(warning) }

        if !clusterCIDR.isEmpty {
            let parts = clusterCIDR.split(separator: ",", omittingEmptySubsequences: false)
            let cidrs = parts.map { CIDR($0) }
            if parts.count > 2 {
                invalid(
                    "clusterCIDR", "must be one CIDR or a dual-stack pair (e.g. 10.100.0.0/16,fde4:8dba:82e1::/48)",
                    quoted(clusterCIDR))
            } else if parts.count == 2 {
                if cidrs.contains(nil) || cidrs[0]?.family == cidrs[1]?.family {
                    invalid(
                        "clusterCIDR",
                        "must be a valid dual-stack pair, one CIDR per family (e.g. 10.100.0.0/16,fde4:8dba:82e1::/48)",
                        quoted(clusterCIDR))
                }
            } else if cidrs[0] == nil {
                invalid(
                    "clusterCIDR", "must be a valid CIDR block (e.g. 10.100.0.0/16 or fde4:8dba:82e1::/48)",
                    quoted(clusterCIDR))
            }
        }

        if !portRange.isEmpty, Self.parsePortRange(portRange) == nil {
            invalid("portRange", "must be a valid port range (e.g. 300-2000)", quoted(portRange))
        }

        for (i, entry) in nodePortAddresses.enumerated() {
            if NodePortAddressKeyword(rawValue: entry) == nil, CIDR(entry) == nil {
                invalid(
                    "nodePortAddresses[\(i)]", "must be a CIDR or one of primary, localhost, all", quoted(entry))
            }
        }

        switch detectLocalMode {
        case .bridgeInterface where detectLocal.bridgeInterface.isEmpty:
            invalid("detectLocal.bridgeInterface", "must not be empty when detectLocalMode is BridgeInterface", "\"\"")
        case .interfaceNamePrefix where detectLocal.interfaceNamePrefix.isEmpty:
            invalid(
                "detectLocal.interfaceNamePrefix", "must not be empty when detectLocalMode is InterfaceNamePrefix",
                "\"\"")
        // The rules carry it as `-i NAME` (`-i PREFIX+`), which iptables stores in IFNAMSIZ bytes with the NUL
        // (Ruleset's KernelLimits.interfaceName, 15): refused here, once, rather than every Service's rules left
        // out for it at every sync.
        case .bridgeInterface where detectLocal.bridgeInterface.utf8.count > 15:
            invalid(
                "detectLocal.bridgeInterface", "must be at most 15 bytes (IFNAMSIZ)", quoted(detectLocal.bridgeInterface))
        case .interfaceNamePrefix where detectLocal.interfaceNamePrefix.utf8.count > 14:
            invalid(
                "detectLocal.interfaceNamePrefix", "must be at most 14 bytes (IFNAMSIZ, with the '+' the rules add)",
                quoted(detectLocal.interfaceNamePrefix))
        default:
            break
        }

        if !showHiddenMetricsForVersion.isEmpty, Self.parseMajorMinor(showHiddenMetricsForVersion) == nil {
            invalid("showHiddenMetricsForVersion", "must be a version like 1.30", quoted(showHiddenMetricsForVersion))
        }
        if !["text", "json"].contains(logging.format) {
            invalid("logging.format", "must be text or json", quoted(logging.format))
        }
        if logging.verbosity < 0 {
            invalid("logging.verbosity", "must be greater than or equal to 0", String(logging.verbosity))
        }
    }

    /// Go's `net.SplitHostPort` then an IP and a port 1...65535, as kube-proxy's `validateHostPort`.
    private func validateHostPort(_ input: String, path: String, sink: DecodeSink) {
        guard let (host, port) = Self.splitHostPort(input) else {
            sink.problem(.invalid(path: path, reason: "must be IP:port", got: "\"\(input)\""))
            return
        }
        if IPAddress(host) == nil {
            sink.problem(.invalid(path: path, reason: "must be IP:port with a valid IP", got: "\"\(input)\""))
        }
        if Int(port).map({ (1...65535).contains($0) }) != true {
            sink.problem(.invalid(path: path, reason: "must be IP:port with a port in 1..65535", got: "\"\(input)\""))
        }
    }

    /// `host:port` or `[v6host]:port`.
    static func splitHostPort(_ s: String) -> (String, String)? {
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            let host = String(s[s.index(after: s.startIndex)..<close])
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            return (host, String(rest.dropFirst()))
        }
        guard let colon = s.lastIndex(of: ":") else { return nil }
        let host = String(s[..<colon])
        if host.contains(":") { return nil }  // Go: "too many colons"
        return (host, String(s[s.index(after: colon)...]))
    }

    /// apimachinery's `ParsePortRange`: `base-max`, `base+size`, or a single port.
    static func parsePortRange(_ s: String) -> ClosedRange<Int>? {
        let text = s.trimmingWhitespace()
        func port(_ t: Substring) -> Int? { Int(t).flatMap { (0...65535).contains($0) ? $0 : nil } }
        if let dash = text.firstIndex(of: "-") {
            guard let lo = port(text[..<dash]), let hi = port(text[text.index(after: dash)...]), lo <= hi else {
                return nil
            }
            return lo...hi
        }
        if let plus = text.firstIndex(of: "+") {
            guard let lo = port(text[..<plus]), let size = Int(text[text.index(after: plus)...]), size >= 0,
                lo + size - 1 <= 65535, size > 0
            else { return nil }
            return lo...(lo + size - 1)
        }
        guard let p = port(Substring(text)) else { return nil }
        return p...p
    }

    /// `1.30`-style versions (component-base accepts `major.minor`).
    static func parseMajorMinor(_ s: String) -> (Int, Int)? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]), a >= 0, b >= 0 else { return nil }
        return (a, b)
    }
}

/// Keywords allowed in `nodePortAddresses` besides CIDRs.
public enum NodePortAddressKeyword: String, Sendable, CaseIterable {
    /// The node's primary IP of each family.
    case primary
    /// 127.0.0.0/8 and ::1/128.
    case localhost
    /// 0.0.0.0/0 and ::/0.
    case all
}

extension KubeProxyConfiguration {
    /// `healthzBindAddress` as host and port for the daemon's listener (nil when empty: the server is off).
    public var healthzListenAddress: (host: String, port: Int)? { Self.hostPort(healthzBindAddress) }

    /// `metricsBindAddress` as host and port for the daemon's listener (nil when empty: the server is off).
    public var metricsListenAddress: (host: String, port: Int)? { Self.hostPort(metricsBindAddress) }

    private static func hostPort(_ text: String) -> (host: String, port: Int)? {
        guard let (host, port) = splitHostPort(text), let p = Int(port) else { return nil }
        return (host, p)
    }
}
