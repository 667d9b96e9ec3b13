import KubeModel
import Ruleset

/// The netfilter hooks a new connection's first packet meets, for judging a whole ruleset (base jumps, owned
/// chains and ensured rules alike) rather than upstream's fixed list of chains: what the v1.23 layout needs,
/// since it drops in nat by marking (KUBE-MARK-DROP) and leaves the drop to kubelet's filter KUBE-FIREWALL,
/// which only INPUT and OUTPUT jump to.
///
/// A packet from a pod or from outside the node runs nat PREROUTING, then filter INPUT when its (DNATed)
/// destination is a local address, else filter FORWARD, then nat POSTROUTING unless it was delivered locally.
/// A packet the node sends runs nat OUTPUT, filter OUTPUT (and filter INPUT when it stays on the node), then nat
/// POSTROUTING. Marks are set and tested as the rules say; conntrack state is NEW (plus DNAT once DNATed); no
/// `recent` list holds the client yet; statistic branches are all collected, the first one carries on.
extension PacketTracer {
    enum Origin: String {
        /// From a pod on this node (its interface matches the interface-based local detectors).
        case pod
        /// From outside the node.
        case remote
        /// From the node itself (a host process).
        case node
    }

    enum Fate: String {
        case passed, dropped, rejected
    }

    /// What happened to the flow: which endpoints it reached (every statistic branch), whether it left
    /// masqueraded, and whether filter let it through.
    struct Verdict: Equatable, CustomStringConvertible {
        var endpoints: [String]
        var masquerade: Bool
        var fate: Fate
        /// Not compared: where a drop happened, and the mark the packet left nat with.
        var droppedIn: String?
        var mark: UInt32 = 0

        static func == (a: Verdict, b: Verdict) -> Bool {
            a.endpoints == b.endpoints && a.masquerade == b.masquerade && a.fate == b.fate
        }

        var description: String {
            let reached = endpoints.isEmpty ? "no endpoint" : endpoints.joined(separator: ", ")
            let stop = droppedIn.map { " in \($0)" } ?? ""
            return "\(reached), masq=\(masquerade), \(fate.rawValue)\(stop), mark=0x\(String(mark, radix: 16))"
        }
    }

    func flow(_ origin: Origin, _ source: String, _ destination: String, _ port: Int, proto: TransportProtocol = .tcp)
        -> Verdict
    {
        var p = Packet(source: IPAddress(source)!, proto: proto, destination: IPAddress(destination)!, port: port)
        p.fromPod = origin == .pod
        let state = State()
        _ = hook(.nat, origin == .node ? "OUTPUT" : "PREROUTING", p, state)
        let endpoints = state.outputs.filter { Self.ipOfDNAT($0) != nil }
        if let first = endpoints.first {
            p.destination = Self.ipOfDNAT(first)!
            p.port = Self.portOfDNAT(first) ?? p.port
            p.dnat = true
        }
        let natMark = state.mark
        let stays = isLocal(p.destination)
        let filterHooks = origin == .node ? (stays ? ["OUTPUT", "INPUT"] : ["OUTPUT"]) : [stays ? "INPUT" : "FORWARD"]
        for base in filterHooks {
            state.outputs = []
            _ = hook(.filter, base, p, state)
            if let last = state.outputs.last, last == "DROP" || last == "REJECT" {
                return Verdict(
                    endpoints: endpoints, masquerade: false, fate: last == "DROP" ? .dropped : .rejected,
                    droppedIn: state.stoppedIn, mark: natMark)
            }
        }
        if origin != .node && stays {
            return Verdict(endpoints: endpoints, masquerade: false, fate: .passed, mark: natMark)
        }
        _ = hook(.nat, "POSTROUTING", p, state)
        return Verdict(endpoints: endpoints, masquerade: state.masquerade, fate: .passed, mark: natMark)
    }

    /// Runs one base chain of one table; true when it ended in a terminating target.
    private func hook(_ table: Table, _ base: String, _ p: Packet, _ state: State) -> Bool {
        guard let rules = rules(of: base, in: table) else { return false }
        return run(rules: rules, table: table, chain: base, p, state, .newConnection)
    }
}
