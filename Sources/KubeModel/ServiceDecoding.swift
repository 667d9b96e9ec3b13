/// Decodes a v1 Service. Fields kube-proxy cannot do without (cluster IPs, ports, type, policies)
/// reject the Service when bad; per-entry lists kube-proxy filters itself (externalIPs, source
/// ranges, LB ingress) only lose the bad entry, as upstream's `MapIPsByIPFamily` / `MapCIDRsByIPFamily` do.
enum ServiceDecoder {
    /// `sessionAffinityConfig.clientIP.timeoutSeconds` default (`v1.DefaultClientIPServiceAffinitySeconds`).
    static let defaultAffinityTimeout = 10800
    /// apiserver's upper bound for the affinity timeout (`v1.MaxClientIPServiceAffinitySeconds`).
    static let maxAffinityTimeout = 86400

    static func decode(_ object: JSONObject) -> DecodeResult {
        var r = FieldReader(kind: "Service")
        guard let meta = ObjectMeta.read(object, &r) else {
            return DecodeResult(object: .rejected(kind: "Service", name: nil), issues: r.issues)
        }
        let spec = r.dictionary(object["spec"], "spec") ?? JSONObject()
        var service = Service(name: meta.name, resourceVersion: meta.resourceVersion, labels: meta.labels)

        if let t = r.string(spec["type"], "spec.type"), !t.isEmpty {
            if let type = ServiceType(rawValue: t) {
                service.type = type
            } else {
                r.error("spec.type", "must be one of ClusterIP, NodePort, LoadBalancer, ExternalName, got \"\(t)\"")
            }
        }
        readClusterIPs(spec, &service, &r)
        service.ports = readPorts(spec, &r)

        for (i, text) in r.strings(spec["externalIPs"], "spec.externalIPs") {
            if let ip = IPAddress(text) {
                service.externalIPs.append(ip)
            } else {
                r.warning("spec.externalIPs[\(i)]", "not an IP address: \"\(text)\"; entry dropped")
            }
        }
        for (i, text) in r.strings(spec["loadBalancerSourceRanges"], "spec.loadBalancerSourceRanges") {
            // Upstream trims spaces and parses with ParseCIDRSloppy; a bad range is logged and skipped.
            if let cidr = CIDR(text) {
                service.loadBalancerSourceRanges.append(cidr)
            } else {
                r.warning("spec.loadBalancerSourceRanges[\(i)]", "not a CIDR: \"\(text)\"; entry dropped")
            }
        }
        service.externalTrafficPolicy = readPolicy(spec["externalTrafficPolicy"], "spec.externalTrafficPolicy", &r)
        service.internalTrafficPolicy = readPolicy(spec["internalTrafficPolicy"], "spec.internalTrafficPolicy", &r)
        if let hc = r.int(spec["healthCheckNodePort"], "spec.healthCheckNodePort") {
            if (0...65535).contains(hc) {
                service.healthCheckNodePort = hc
            } else {
                r.error("spec.healthCheckNodePort", "must be 1-65535, got \(hc)")
            }
        }
        readAffinity(spec, &service, &r)
        // As upstream's service.go: the current annotation wins, the deprecated one is the fallback.
        let modeKey = "service.kubernetes.io/topology-mode"
        let deprecatedModeKey = "service.kubernetes.io/topology-aware-hints"
        let mode = r.string(meta.annotations[modeKey], "metadata.annotations[\(modeKey)]") ?? ""
        let deprecatedMode =
            r.string(meta.annotations[deprecatedModeKey], "metadata.annotations[\(deprecatedModeKey)]") ?? ""
        service.topologyMode = !mode.isEmpty ? mode : (!deprecatedMode.isEmpty ? deprecatedMode : nil)
        service.trafficDistribution = r.string(spec["trafficDistribution"], "spec.trafficDistribution")
            .flatMap { $0.isEmpty ? nil : $0 }
        readIngress(object, &service, &r)

        if r.hasErrors {
            return DecodeResult(object: .rejected(kind: "Service", name: meta.name), issues: r.issues)
        }
        return DecodeResult(object: .service(service), issues: r.issues)
    }

    /// `spec.clusterIPs` wins over `spec.clusterIP`, as in upstream's `GetClusterIPByFamily`.
    private static func readClusterIPs(_ spec: JSONObject, _ service: inout Service, _ r: inout FieldReader) {
        let single = r.string(spec["clusterIP"], "spec.clusterIP")
        let list = r.strings(spec["clusterIPs"], "spec.clusterIPs")
        let (texts, path): ([(index: Int, value: String)], String) =
            list.isEmpty ? (single.map { [(0, $0)] } ?? [], "spec.clusterIP") : (list, "spec.clusterIPs")
        if let first = texts.first?.value, first == "None" {
            service.isHeadless = true
            return
        }
        if !list.isEmpty, let single, !single.isEmpty, single != list[0].value {
            r.warning(
                "spec.clusterIP",
                "\"\(single)\" differs from spec.clusterIPs[0] \"\(list[0].value)\"; using spec.clusterIPs")
        }
        var seen: Set<IPFamily> = []
        for (i, text) in texts where !text.isEmpty {
            let at = path == "spec.clusterIP" ? path : "\(path)[\(i)]"
            guard let ip = IPAddress(text) else {
                r.error(at, "not an IP address: \"\(text)\"")
                continue
            }
            guard seen.insert(ip.family).inserted else {
                r.warning(at, "a second \(ip.family.rawValue) cluster IP \(ip); entry dropped")
                continue
            }
            service.clusterIPs.append(ip)
        }
    }

    private static func readPorts(_ spec: JSONObject, _ r: inout FieldReader) -> [ServicePort] {
        var ports: [ServicePort] = []
        var firstIndexByKey: [String: Int] = [:]
        for (i, item) in r.list(spec["ports"], "spec.ports").enumerated() {
            func path() -> String { "spec.ports[\(i)]" }
            guard let p = r.dictionary(item, path()) else {
                if isAbsent(item) { r.wrongType(path(), expected: "an object", item) }
                continue
            }
            let name = r.string(p["name"], "\(path()).name") ?? ""
            let proto = r.transportProtocol(p["protocol"], "\(path()).protocol", severity: .error)
            var port = 0
            if let n = r.int(p["port"], "\(path()).port") {
                if (1...65535).contains(n) { port = n } else { r.error("\(path()).port", "must be 1-65535, got \(n)") }
            } else if isAbsent(p["port"]) {
                r.error("\(path()).port", "required")
            }
            var nodePort = 0
            if let n = r.int(p["nodePort"], "\(path()).nodePort") {
                if (0...65535).contains(n) {
                    nodePort = n
                } else {
                    r.error("\(path()).nodePort", "must be 1-65535, got \(n)")
                }
            }
            let targetPort = readTargetPort(p["targetPort"], "\(path()).targetPort", &r)
            guard let proto, port != 0 else { continue }
            // Two ports with one name would collide in ServicePortName and in the chain names.
            let key = name
            if let first = firstIndexByKey[key] {
                r.warning(path(), "port name \"\(name)\" repeats spec.ports[\(first)]; entry dropped")
                continue
            }
            firstIndexByKey[key] = i
            ports.append(
                ServicePort(name: name, protocol: proto, port: port, targetPort: targetPort, nodePort: nodePort))
        }
        return ports
    }

    /// kube-proxy never reads targetPort (endpoint ports come from the slices), so a bad one is only a warning.
    private static func readTargetPort(_ value: JSONValue?, _ path: @autoclosure () -> String, _ r: inout FieldReader)
        -> IntOrString?
    {
        guard let value, !isAbsent(value) else { return nil }
        if case .string(let s) = value {
            if let n = Int(s), (1...65535).contains(n) { return .int(n) }
            if s.isEmpty { return nil }
            return .string(s)
        }
        if let n = value.integerValue {
            if n == 0 { return nil }
            if (1...65535).contains(n) { return .int(n) }
            r.warning(path(), "must be 1-65535, got \(n); ignored")
            return nil
        }
        r.warning(path(), "expected an integer or a string, got \(value.typeName); ignored")
        return nil
    }

    private static func readPolicy(_ value: JSONValue?, _ path: String, _ r: inout FieldReader) -> TrafficPolicy {
        guard let text = r.string(value, path), !text.isEmpty else { return .cluster }
        if let policy = TrafficPolicy(rawValue: text) { return policy }
        r.error(path, "must be Cluster or Local, got \"\(text)\"")
        return .cluster
    }

    private static func readAffinity(_ spec: JSONObject, _ service: inout Service, _ r: inout FieldReader) {
        let affinity = r.string(spec["sessionAffinity"], "spec.sessionAffinity") ?? ""
        switch affinity {
        case "", "None":
            return
        case "ClientIP":
            break
        default:
            r.error("spec.sessionAffinity", "must be None or ClientIP, got \"\(affinity)\"")
            return
        }
        let path = "spec.sessionAffinityConfig.clientIP.timeoutSeconds"
        let config = r.dictionary(spec["sessionAffinityConfig"], "spec.sessionAffinityConfig")
        let clientIP = r.dictionary(config?["clientIP"], "spec.sessionAffinityConfig.clientIP")
        guard let timeout = r.int(clientIP?["timeoutSeconds"], path) else {
            service.sessionAffinityTimeout = defaultAffinityTimeout
            return
        }
        if (1...maxAffinityTimeout).contains(timeout) {
            service.sessionAffinityTimeout = timeout
        } else {
            r.error(path, "must be 1-\(maxAffinityTimeout), got \(timeout)")
        }
    }

    private static func readIngress(_ object: JSONObject, _ service: inout Service, _ r: inout FieldReader) {
        let status = r.dictionary(object["status"], "status")
        let lb = r.dictionary(status?["loadBalancer"], "status.loadBalancer")
        for (i, item) in r.list(lb?["ingress"], "status.loadBalancer.ingress").enumerated() {
            func path() -> String { "status.loadBalancer.ingress[\(i)]" }
            guard let entry = r.dictionary(item, path()) else { continue }
            // ipMode Proxy: the load balancer proxies, so packets arrive at the node for the node's own
            // IPs, not for the VIP; kube-proxy does not program the VIP (KEP-1860).
            let mode = r.string(entry["ipMode"], "\(path()).ipMode")
            guard let text = r.string(entry["ip"], "\(path()).ip"), !text.isEmpty else { continue }
            if mode == "Proxy" { continue }
            if let ip = IPAddress(text) {
                service.loadBalancerIngressIPs.append(ip)
            } else {
                r.warning("\(path()).ip", "not an IP address: \"\(text)\"; entry dropped")
            }
        }
    }
}
