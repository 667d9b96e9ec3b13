extension KubeProxyConfiguration {
    /// The effective configuration as YAML, every default filled in, keys sorted as kube-proxy's
    /// `--write-config-to` writes them. Parsing the output gives back an equal configuration.
    public func render() -> String {
        var out = ""
        Self.emit(.map(tree.sortedKeys()), indent: 0, into: &out)
        return out
    }

    /// This configuration as a value tree (document order irrelevant; `render` sorts).
    var tree: ConfigValue {
        func s(_ v: String) -> ConfigValue { .string(v) }
        func d(_ v: GoDuration) -> ConfigValue { .string(v.description) }
        func m(_ pairs: [(String, ConfigValue)]) -> ConfigValue {
            .map(pairs.map { ConfigEntry(key: $0.0, value: $0.1) })
        }
        let qps: ConfigValue =
            clientConnection.qps == clientConnection.qps.rounded() && abs(clientConnection.qps) < 1e15
            ? .int(Int(clientConnection.qps)) : .float(clientConnection.qps)
        return m([
            ("apiVersion", s(Self.apiVersion)),
            ("kind", s(Self.kind)),
            ("bindAddress", s(bindAddress)),
            ("bindAddressHardFail", .bool(bindAddressHardFail)),
            (
                "clientConnection",
                m([
                    ("acceptContentTypes", s(clientConnection.acceptContentTypes)),
                    ("burst", .int(clientConnection.burst)),
                    ("contentType", s(clientConnection.contentType)),
                    ("kubeconfig", s(clientConnection.kubeconfig)),
                    ("qps", qps),
                ])
            ),
            ("clusterCIDR", s(clusterCIDR)),
            ("configSyncPeriod", d(configSyncPeriod)),
            (
                "conntrack",
                m([
                    ("maxPerCore", .int(conntrack.maxPerCore)),
                    ("min", .int(conntrack.min)),
                    ("tcpBeLiberal", .bool(conntrack.tcpBeLiberal)),
                    ("tcpCloseWaitTimeout", d(conntrack.tcpCloseWaitTimeout)),
                    ("tcpEstablishedTimeout", d(conntrack.tcpEstablishedTimeout)),
                    ("udpStreamTimeout", d(conntrack.udpStreamTimeout)),
                    ("udpTimeout", d(conntrack.udpTimeout)),
                ])
            ),
            (
                "detectLocal",
                m([
                    ("bridgeInterface", s(detectLocal.bridgeInterface)),
                    ("interfaceNamePrefix", s(detectLocal.interfaceNamePrefix)),
                ])
            ),
            ("detectLocalMode", s(detectLocalMode.rawValue)),
            ("enableProfiling", .bool(enableProfiling)),
            (
                "featureGates",
                .map(featureGates.keys.sorted().map { ConfigEntry(key: $0, value: .bool(featureGates[$0]!)) })
            ),
            ("healthzBindAddress", s(healthzBindAddress)),
            ("hostnameOverride", s(hostnameOverride)),
            (
                "iptables",
                m([
                    ("localhostNodePorts", .bool(iptables.localhostNodePorts)),
                    ("masqueradeAll", .bool(iptables.masqueradeAll)),
                    ("masqueradeBit", .int(iptables.masqueradeBit)),
                    ("minSyncPeriod", d(iptables.minSyncPeriod)),
                    ("snatNodeInternalIP", .bool(iptables.snatNodeInternalIP)),
                    ("syncPeriod", d(iptables.syncPeriod)),
                ])
            ),
            (
                "ipvs",
                m([
                    ("excludeCIDRs", .list(ipvs.excludeCIDRs.map(s))),
                    ("minSyncPeriod", d(ipvs.minSyncPeriod)),
                    ("scheduler", s(ipvs.scheduler)),
                    ("strictARP", .bool(ipvs.strictARP)),
                    ("syncPeriod", d(ipvs.syncPeriod)),
                    ("tcpFinTimeout", d(ipvs.tcpFinTimeout)),
                    ("tcpTimeout", d(ipvs.tcpTimeout)),
                    ("udpTimeout", d(ipvs.udpTimeout)),
                ])
            ),
            (
                "logging",
                m([
                    ("flushFrequency", d(logging.flushFrequency)),
                    ("format", s(logging.format)),
                    ("options", logging.options),
                    ("verbosity", .int(logging.verbosity)),
                    (
                        "vmodule",
                        .list(
                            logging.vmodule.map {
                                m([("filePattern", s($0.filePattern)), ("verbosity", .int($0.verbosity))])
                            })
                    ),
                ])
            ),
            ("metricsBindAddress", s(metricsBindAddress)),
            ("mode", s(mode)),
            (
                "nftables",
                m([
                    ("masqueradeAll", .bool(nftables.masqueradeAll)),
                    ("masqueradeBit", .int(nftables.masqueradeBit)),
                    ("minSyncPeriod", d(nftables.minSyncPeriod)),
                    ("syncPeriod", d(nftables.syncPeriod)),
                ])
            ),
            ("nodePortAddresses", .list(nodePortAddresses.map(s))),
            ("oomScoreAdj", .int(oomScoreAdj)),
            ("portRange", s(portRange)),
            ("showHiddenMetricsForVersion", s(showHiddenMetricsForVersion)),
            ("windowsRunAsService", .bool(windowsRunAsService)),
            (
                "winkernel",
                m([
                    ("enableDSR", .bool(winkernel.enableDSR)),
                    ("forwardHealthCheckVip", .bool(winkernel.forwardHealthCheckVip)),
                    ("networkName", s(winkernel.networkName)),
                    ("rootHnsEndpointName", s(winkernel.rootHnsEndpointName)),
                    ("sourceVip", s(winkernel.sourceVip)),
                ])
            ),
        ])
    }

    /// Block-style YAML; empty containers inline (`{}`, `[]`).
    static func emit(_ value: ConfigValue, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        switch value {
        case .map(let entries):
            for e in entries {
                out += pad + yamlKey(e.key) + ":"
                switch e.value {
                case .map(let inner) where !inner.isEmpty:
                    out += "\n"
                    emit(e.value, indent: indent + 2, into: &out)
                case .list(let items) where !items.isEmpty:
                    out += "\n"
                    emit(e.value, indent: indent, into: &out)
                default:
                    out += " " + scalar(e.value) + "\n"
                }
            }
        case .list(let items):
            for item in items {
                switch item {
                case .map(let inner) where !inner.isEmpty:
                    var nested = ""
                    emit(item, indent: indent + 2, into: &nested)
                    // First key goes on the dash line.
                    out += pad + "- " + nested.dropFirst(indent + 2)
                case .list(let inner) where !inner.isEmpty:
                    out += pad + "-\n"
                    emit(item, indent: indent + 2, into: &out)
                default:
                    out += pad + "- " + scalar(item) + "\n"
                }
            }
        default:
            out += pad + scalar(value) + "\n"
        }
    }

    static func yamlKey(_ key: String) -> String { quoteIfNeeded(key) }

    static func scalar(_ value: ConfigValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .float(let d): return d.isFinite ? String(d) : (d.isNaN ? ".nan" : (d > 0 ? ".inf" : "-.inf"))
        case .string(let s): return quoteIfNeeded(s)
        case .map: return "{}"
        case .list: return "[]"
        }
    }

    /// Plain when YAML would read the text back as the same string, double-quoted otherwise.
    static func quoteIfNeeded(_ s: String) -> String {
        let safe =
            !s.isEmpty
            && s.unicodeScalars.allSatisfy { c in
                (c.value >= 0x30 && c.value <= 0x39) || (c.value >= 0x41 && c.value <= 0x5A)
                    || (c.value >= 0x61 && c.value <= 0x7A) || "./_-+:".unicodeScalars.contains(c)
            }
        let first =
            s.unicodeScalars.first.map { c in
                (c.value >= 0x41 && c.value <= 0x5A) || (c.value >= 0x61 && c.value <= 0x7A) || c == "/" || c == "_"
            } ?? false
        let special: Set<String> = [
            "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
        ]
        // Durations (`30s`, `15m0s`) read back as strings; other digit-led text may be a number or date.
        let duration = s != "0" && GoDuration(parsing: s) != nil && !s.hasPrefix("-") && !s.hasPrefix("+")
        if safe, first || duration, !special.contains(s.lowercased()), !s.contains(": "), !s.hasSuffix(":") {
            return s
        }
        var q = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": q += "\\\""
            case "\\": q += "\\\\"
            case "\n": q += "\\n"
            case "\t": q += "\\t"
            case "\r": q += "\\r"
            default:
                if c.value < 0x20 {
                    q += "\\x" + String(c.value, radix: 16).leftPadded(to: 2)
                } else {
                    q.unicodeScalars.append(c)
                }
            }
        }
        return q + "\""
    }
}

extension ConfigValue {
    /// Maps with keys sorted, recursively (how Go's JSON-then-YAML marshalling orders them).
    func sortedKeys() -> [ConfigEntry] {
        guard case .map(let entries) = self else { return [] }
        return entries.sorted { $0.key < $1.key }.map { e in
            switch e.value {
            case .map: return ConfigEntry(key: e.key, value: .map(e.value.sortedKeys()))
            case .list(let items):
                return ConfigEntry(
                    key: e.key,
                    value: .list(items.map { if case .map = $0 { return .map($0.sortedKeys()) } else { return $0 } }))
            default: return e
            }
        }
    }
}

extension String {
    fileprivate func leftPadded(to n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
