/// Decodes a v1 Node: what a service proxy reads of its own Node. Only a missing name or a field of the wrong
/// type rejects the Node; a bad entry of a list (a taint without a key, an address or pod CIDR that does not
/// parse) only loses that entry, with a warning, as upstream's callers skip what `ParseIPSloppy` /
/// `ParseCIDRSloppy` refuse.
enum NodeDecoder {
    /// Address types whose value is a name, not an IP: not read, and not an issue.
    static let nameAddressTypes: Set<String> = ["Hostname", "InternalDNS", "ExternalDNS"]

    static func decode(_ object: JSONObject) -> DecodeResult {
        var r = FieldReader(kind: "Node")
        guard let meta = ObjectMeta.read(object, &r) else {
            return DecodeResult(object: .rejected(kind: "Node", name: nil), issues: r.issues)
        }
        // Nodes are cluster-scoped: no namespace, whatever the metadata reader defaulted to.
        let name = ObjectName(namespace: "", name: meta.name.name)
        r.object = name
        for i in r.issues.indices { r.issues[i].object = name }
        var node = Node(name: name.name, resourceVersion: meta.resourceVersion, labels: meta.labels)
        let metadata = r.dictionary(object["metadata"], "metadata") ?? JSONObject()
        node.deletionTimestamp = r.string(metadata["deletionTimestamp"], "metadata.deletionTimestamp")
            .flatMap { $0.isEmpty ? nil : $0 }

        let spec = r.dictionary(object["spec"], "spec") ?? JSONObject()
        for (i, item) in r.list(spec["taints"], "spec.taints").enumerated() {
            let path = "spec.taints[\(i)]"
            guard let taint = r.dictionary(item, path) else {
                if isAbsent(item) { r.warning(path, "null entry dropped") }
                continue
            }
            let key = r.string(taint["key"], "\(path).key") ?? ""
            let value = r.string(taint["value"], "\(path).value") ?? ""
            let effect = r.string(taint["effect"], "\(path).effect") ?? ""
            if key.isEmpty {
                r.warning("\(path).key", "required; taint dropped")
                continue
            }
            node.taints.append(NodeTaint(key: key, value: value, effect: effect))
        }
        // spec.podCIDRs wins; spec.podCIDR is what clusters before dual-stack set (and still mirror into [0]).
        let list = r.strings(spec["podCIDRs"], "spec.podCIDRs")
        let single = r.string(spec["podCIDR"], "spec.podCIDR").flatMap { $0.isEmpty ? nil : $0 }
        let (cidrs, cidrPath): ([(index: Int, value: String)], String) =
            list.isEmpty ? (single.map { [(0, $0)] } ?? [], "spec.podCIDR") : (list, "spec.podCIDRs")
        for (i, text) in cidrs {
            let at = cidrPath == "spec.podCIDRs" ? "spec.podCIDRs[\(i)]" : cidrPath
            if let cidr = CIDR(text.trimmingWhitespace()) {
                node.podCIDRs.append(cidr)
            } else {
                r.warning(at, "not a CIDR: \"\(text)\"; entry dropped")
            }
        }

        let status = r.dictionary(object["status"], "status") ?? JSONObject()
        for (i, item) in r.list(status["addresses"], "status.addresses").enumerated() {
            let path = "status.addresses[\(i)]"
            guard let entry = r.dictionary(item, path) else {
                if isAbsent(item) { r.warning(path, "null entry dropped") }
                continue
            }
            let type = r.string(entry["type"], "\(path).type") ?? ""
            let text = r.string(entry["address"], "\(path).address") ?? ""
            if Self.nameAddressTypes.contains(type) { continue }
            if let ip = IPAddress(text.trimmingWhitespace()) {
                node.addresses.append(NodeAddress(type: type, address: ip))
            } else {
                r.warning("\(path).address", "not an IP address: \"\(text)\"; entry dropped")
            }
        }

        if r.hasErrors {
            return DecodeResult(object: .rejected(kind: "Node", name: name), issues: r.issues)
        }
        return DecodeResult(object: .node(node), issues: r.issues)
    }
}
