import KubeModel
import Ruleset

/// Upstream's test packet tracer (proxier_test.go `tracePacket`, reference §2.4), over our typed Ruleset.
///
/// nat PREROUTING is run (following jumps); if a DNAT happened the destination becomes the first DNAT's IP;
/// then filter KUBE-SERVICES, KUBE-EXTERNAL-SERVICES, KUBE-NODEPORTS and KUBE-PROXY-FIREWALL are run.
/// `recent --rcheck`, `mark` and `conntrack` matches never match; statistic, nfacct and comments always do.
/// A jump into a chain that terminated terminates the caller, unless the jump was probabilistic: then every
/// branch is collected, so a Service with three endpoints yields three outputs.
struct PacketTracer {
    struct Result: Equatable, CustomStringConvertible {
        var outputs: [String]
        var masquerade: Bool
        var description: String { "\(outputs.joined(separator: ", ")) masq=\(masquerade)" }
    }

    let ruleset: Ruleset
    /// Addresses that `--src-type/--dst-type LOCAL` treat as local (loopback is always local).
    let nodeIPs: [IPAddress]

    init(_ ruleset: Ruleset, nodeIPs: [String] = ["192.168.0.2", "192.168.1.2", "192.168.99.11", "2001:db8::1", "2001:db8:1::2"]) {
        self.ruleset = ruleset
        self.nodeIPs = nodeIPs.map { IPAddress($0)! }
    }

    private struct Packet {
        var source: IPAddress
        var proto: TransportProtocol
        var destination: IPAddress
        var port: Int
    }

    private final class State {
        var outputs: [String] = []
        var masquerade = false
    }

    func trace(_ source: String, _ destination: String, _ port: Int, proto: TransportProtocol = .tcp) -> Result {
        var packet = Packet(source: IPAddress(source)!, proto: proto, destination: IPAddress(destination)!, port: port)
        let state = State()
        for jump in ruleset[.nat]!.baseJumps where jump.baseChain == "PREROUTING" {
            if run(rules: [jump.rule], table: .nat, packet, state) { break }
        }
        if let first = state.outputs.first, let ip = Self.ipOfDNAT(first) { packet.destination = ip }
        for chain in ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"] {
            if let c = ruleset[.filter]!.chain(named: chain) { _ = run(rules: c.rules, table: .filter, packet, state) }
        }
        return Result(outputs: state.outputs, masquerade: state.masquerade)
    }

    static func ipOfDNAT(_ s: String) -> IPAddress? {
        if s.hasPrefix("[") { return IPAddress(s.dropFirst().prefix { $0 != "]" }) }
        guard s.contains(":") else { return nil }
        return IPAddress(s.prefix { $0 != ":" })
    }

    /// Runs rules; returns true when a terminating target was reached.
    private func run(rules: [Rule], table: Table, _ p: Packet, _ state: State) -> Bool {
        for rule in rules where matches(rule, p) {
            switch rule.target {
            case .none: continue
            case .return: return false
            case .accept: state.outputs.append("ACCEPT"); return true
            case .drop: state.outputs.append("DROP"); return true
            case .reject: state.outputs.append("REJECT"); return true
            case .dnat(let ip, let port): state.outputs.append(ip.joined(port: port)); return true
            case .masquerade, .markOr, .markXor: continue
            case .jump("KUBE-MARK-MASQ"):
                state.masquerade = true
            case .jump(let name):
                guard let chain = ruleset[table]!.chain(named: name) else { continue }
                let terminated = run(rules: chain.rules, table: table, p, state)
                let probabilistic = rule.matches.contains { if case .statisticRandom = $0 { true } else { false } }
                if terminated && !probabilistic { return true }
            }
        }
        return false
    }

    private func isLocal(_ ip: IPAddress) -> Bool { ip.isLoopback || nodeIPs.contains(ip) }

    private func matches(_ rule: Rule, _ p: Packet) -> Bool {
        for m in rule.matches {
            switch m {
            case .comment, .statisticRandom, .nfacct, .recentSet: continue
            case .recentCheck, .mark, .conntrackState: return false
            case .proto(let proto): if proto != p.proto { return false }
            case .destinationPort(let port): if port != p.port { return false }
            case .source(let a, let neg): if a.block.contains(p.source) == neg { return false }
            case .destination(let a, let neg): if a.block.contains(p.destination) == neg { return false }
            case .inInterface(_, let neg): if !neg { return false }
            case .addrTypeLocal(let dir):
                if !isLocal(dir == .source ? p.source : p.destination) { return false }
            }
        }
        return true
    }
}
