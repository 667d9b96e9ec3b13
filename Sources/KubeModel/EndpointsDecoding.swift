/// Decodes a discovery.k8s.io/v1 EndpointSlice. Only a missing Service label, an unknown address type or a
/// malformed structure reject the slice; a bad endpoint or port is dropped and the rest is used.
enum EndpointSliceDecoder {
    static func decode(_ object: JSONObject) -> DecodeResult {
        var r = FieldReader(kind: "EndpointSlice")
        guard let meta = ObjectMeta.read(object, &r) else {
            return DecodeResult(object: .rejected(kind: "EndpointSlice", name: nil), issues: r.issues)
        }
        let labelPath = "metadata.labels[\(EndpointSlice.serviceNameLabel)]"
        let serviceName = meta.labels[EndpointSlice.serviceNameLabel] ?? ""
        // A label of the wrong type was already reported; "required" on top would only confuse.
        if serviceName.isEmpty, !r.issues.contains(where: { $0.fieldPath.hasPrefix("metadata.labels") }) {
            // kube-proxy's EndpointSliceCache drops slices without the label: it cannot tell their Service.
            r.error(labelPath, "required")
        }
        var addressType: IPFamily?
        switch r.string(object["addressType"], "addressType") {
        case "IPv4": addressType = .ipv4
        case "IPv6": addressType = .ipv6
        case "FQDN": addressType = nil
        case nil:
            if isAbsent(object["addressType"]) { r.error("addressType", "required") }
        case let other?:
            r.error("addressType", "must be one of IPv4, IPv6, FQDN, got \"\(other)\"")
        }
        let lastChange = meta.lastChangeTriggerTime(&r)

        var endpoints: [Endpoint] = []
        for (i, item) in r.list(object["endpoints"], "endpoints").enumerated() {
            if let endpoint = readEndpoint(item, "endpoints[\(i)]", addressType, &r) { endpoints.append(endpoint) }
        }
        var ports: [EndpointPort] = []
        for (i, item) in r.list(object["ports"], "ports").enumerated() {
            if let port = readPort(item, "ports[\(i)]", &r) { ports.append(port) }
        }
        if r.hasErrors {
            return DecodeResult(object: .rejected(kind: "EndpointSlice", name: meta.name), issues: r.issues)
        }
        let slice = EndpointSlice(
            name: meta.name, serviceName: serviceName, resourceVersion: meta.resourceVersion,
            addressType: addressType, endpoints: endpoints, ports: ports, lastChangeTriggerTime: lastChange)
        return DecodeResult(object: .endpointSlice(slice), issues: r.issues)
    }

    private static func readEndpoint(
        _ item: JSONValue, _ path: @autoclosure () -> String, _ family: IPFamily?, _ r: inout FieldReader
    ) -> Endpoint? {
        guard let e = r.dictionary(item, path()) else {
            if isAbsent(item) { r.wrongType(path(), expected: "an object", item) }
            return nil
        }
        let texts = r.strings(e["addresses"], "\(path()).addresses")
        let conditionsObject = r.dictionary(e["conditions"], "\(path()).conditions") ?? JSONObject()
        let conditions = EndpointConditions(
            ready: r.bool(conditionsObject["ready"], "\(path()).conditions.ready"),
            serving: r.bool(conditionsObject["serving"], "\(path()).conditions.serving"),
            terminating: r.bool(conditionsObject["terminating"], "\(path()).conditions.terminating"))
        let nodeName = r.string(e["nodeName"], "\(path()).nodeName")
        let zone = r.string(e["zone"], "\(path()).zone")
        let hints = r.dictionary(e["hints"], "\(path()).hints") ?? JSONObject()
        let zoneHints = names(hints["forZones"], "\(path()).hints.forZones", &r)
        let nodeHints = names(hints["forNodes"], "\(path()).hints.forNodes", &r)
        // FQDN slices are never programmed (kube-proxy ignores them); their addresses are hostnames.
        guard let family else {
            return Endpoint(
                addresses: [], conditions: conditions, nodeName: nodeName, zone: zone, zoneHints: zoneHints,
                nodeHints: nodeHints)
        }
        if texts.isEmpty {
            if isAbsent(e["addresses"]) {
                r.warning("\(path()).addresses", "required; endpoint dropped")
            } else if e["addresses"]?.arrayValue?.isEmpty == true {
                r.warning("\(path()).addresses", "empty; endpoint dropped")
            }
            return nil
        }
        var addresses: [IPAddress] = []
        for (i, text) in texts {
            func at() -> String { "\(path()).addresses[\(i)]" }
            // kube-proxy uses addresses[0] only; a bad first address leaves nothing to program.
            let consequence = i == 0 ? "endpoint dropped" : "address dropped"
            guard let ip = IPAddress(text) else {
                r.warning(at(), "not an IP address: \"\(text)\"; \(consequence)")
                if i == 0 { return nil } else { continue }
            }
            guard ip.family == family else {
                r.warning(at(), "\(ip) is not \(family.rawValue) as the slice's addressType; \(consequence)")
                if i == 0 { return nil } else { continue }
            }
            addresses.append(ip)
        }
        return Endpoint(
            addresses: addresses, conditions: conditions, nodeName: nodeName, zone: zone, zoneHints: zoneHints,
            nodeHints: nodeHints)
    }

    /// The `name` of each entry of `hints.forZones` / `hints.forNodes`.
    private static func names(_ value: JSONValue?, _ path: @autoclosure () -> String, _ r: inout FieldReader)
        -> [String]
    {
        var out: [String] = []
        for (i, item) in r.list(value, path()).enumerated() {
            guard let entry = r.dictionary(item, "\(path())[\(i)]") else { continue }
            if let name = r.string(entry["name"], "\(path())[\(i)].name"), !name.isEmpty { out.append(name) }
        }
        return out
    }

    static func readPort(_ item: JSONValue, _ path: @autoclosure () -> String, _ r: inout FieldReader) -> EndpointPort?
    {
        guard let p = r.dictionary(item, path()) else {
            if isAbsent(item) { r.wrongType(path(), expected: "an object", item) }
            return nil
        }
        let name = r.string(p["name"], "\(path()).name")
        let port = r.int(p["port"], "\(path()).port")
        guard let proto = r.transportProtocol(p["protocol"], "\(path()).protocol", severity: .warning) else {
            return nil
        }
        if let port, !(1...65535).contains(port) {
            r.warning("\(path()).port", "must be 1-65535, got \(port); port dropped")
            return nil
        }
        return EndpointPort(name: name, port: port, protocol: proto)
    }
}

/// Converts a v1 Endpoints into one slice named like it, for clusters (or manifests) without
/// EndpointSlices: `addresses` become ready endpoints, `notReadyAddresses` not-ready ones, as the
/// EndpointSlice mirroring controller converts them.
enum EndpointsDecoder {
    static func decode(_ object: JSONObject) -> DecodeResult {
        var r = FieldReader(kind: "Endpoints")
        guard let meta = ObjectMeta.read(object, &r) else {
            return DecodeResult(object: .rejected(kind: "Endpoints", name: nil), issues: r.issues)
        }
        let lastChange = meta.lastChangeTriggerTime(&r)
        var family: IPFamily?
        var endpoints: [Endpoint] = []
        var ports: [EndpointPort]?
        var portsFrom = 0
        for (s, item) in r.list(object["subsets"], "subsets").enumerated() {
            let path = "subsets[\(s)]"
            guard let subset = r.dictionary(item, path) else { continue }
            var subsetPorts: [EndpointPort] = []
            for (i, p) in r.list(subset["ports"], "\(path).ports").enumerated() {
                if let port = EndpointSliceDecoder.readPort(p, "\(path).ports[\(i)]", &r) { subsetPorts.append(port) }
            }
            // One slice has one port list. The endpoints controller only splits subsets when their ports
            // differ, so a subset whose ports differ from the first one's cannot be merged into it.
            if let ports, Set(ports) != Set(subsetPorts) {
                r.warning(
                    "\(path).ports",
                    "differ from subsets[\(portsFrom)].ports; kube-natd converts an Endpoints to a single slice, subset dropped (use EndpointSlices)"
                )
                continue
            }
            if ports == nil {
                ports = subsetPorts
                portsFrom = s
            }
            for (key, ready) in [("addresses", true), ("notReadyAddresses", false)] {
                for (i, a) in r.list(subset[key], "\(path).\(key)").enumerated() {
                    let at = "\(path).\(key)[\(i)]"
                    guard let address = r.dictionary(a, at) else { continue }
                    guard let text = r.string(address["ip"], "\(at).ip") else {
                        if isAbsent(address["ip"]) { r.warning("\(at).ip", "required; address dropped") }
                        continue
                    }
                    let nodeName = r.string(address["nodeName"], "\(at).nodeName")
                    guard let ip = IPAddress(text) else {
                        r.warning("\(at).ip", "not an IP address: \"\(text)\"; address dropped")
                        continue
                    }
                    // The first address decides the slice's family; the mirroring controller would
                    // split families into two slices, kube-proxy reads one family per proxier anyway.
                    if let family, ip.family != family {
                        r.warning("\(at).ip", "\(ip) is not \(family.rawValue) like the first address; address dropped")
                        continue
                    }
                    family = ip.family
                    endpoints.append(
                        Endpoint(addresses: [ip], conditions: EndpointConditions(ready: ready), nodeName: nodeName))
                }
            }
        }
        if r.hasErrors {
            return DecodeResult(object: .rejected(kind: "Endpoints", name: meta.name), issues: r.issues)
        }
        let slice = EndpointSlice(
            name: meta.name, serviceName: meta.name.name, resourceVersion: meta.resourceVersion,
            addressType: family ?? .ipv4, endpoints: endpoints, ports: ports ?? [], lastChangeTriggerTime: lastChange,
            fromEndpoints: true)
        return DecodeResult(object: .endpoints(slice), issues: r.issues)
    }
}
