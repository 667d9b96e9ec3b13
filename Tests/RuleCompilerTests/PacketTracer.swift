import KubeModel
import Ruleset

/// Upstream's test packet tracer (proxier_test.go `tracePacket`, reference §2.4), over our typed Ruleset, plus a
/// model of the netfilter hooks (`flow`) that both rule layouts are judged by.
///
/// `trace` is upstream's: nat PREROUTING is run (following jumps); if a DNAT happened the destination becomes the
/// first DNAT's IP; then filter KUBE-SERVICES, KUBE-EXTERNAL-SERVICES, KUBE-NODEPORTS and KUBE-PROXY-FIREWALL are
/// run. `recent --rcheck`, `mark` and `conntrack` matches never match; statistic, nfacct and comments always do.
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

    static let defaultNodeIPs = ["192.168.0.2", "192.168.1.2", "192.168.99.11", "2001:db8::1", "2001:db8:1::2"]

    init(_ ruleset: Ruleset, nodeIPs: [String] = PacketTracer.defaultNodeIPs) {
        self.ruleset = ruleset
        self.nodeIPs = nodeIPs.map { IPAddress($0)! }
    }

    struct Packet {
        var source: IPAddress
        var proto: TransportProtocol
        var destination: IPAddress
        var port: Int
        /// Arrived on a pod's interface (matches `-i`, for the interface-based local-traffic detectors).
        var fromPod = false
        /// Its connection was DNATed (conntrack state DNAT).
        var dnat = false
    }

    /// How matches the tracer cannot know are decided.
    enum Model {
        /// Upstream's tracer: mark and conntrack matches never match; KUBE-MARK-MASQ only flags the packet.
        case upstream
        /// The first packet of a new connection: conntrack NEW (and DNAT once DNATed), marks as the rules set
        /// them, no `recent` entry yet.
        case newConnection
    }

    final class State {
        var outputs: [String] = []
        var masquerade = false
        var mark: UInt32 = 0
        /// The chain of a DROP or REJECT, or the terminal target (`MASQUERADE`), when the hook model reached one.
        var stoppedIn: String?
    }

    func trace(_ source: String, _ destination: String, _ port: Int, proto: TransportProtocol = .tcp) -> Result {
        var packet = Packet(source: IPAddress(source)!, proto: proto, destination: IPAddress(destination)!, port: port)
        let state = State()
        for jump in ruleset[.nat]!.baseJumps where jump.baseChain == "PREROUTING" {
            if run(rules: [jump.rule], table: .nat, chain: "PREROUTING", packet, state, .upstream) { break }
        }
        if let first = state.outputs.first, let ip = Self.ipOfDNAT(first) { packet.destination = ip }
        for chain in ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"] {
            if let c = ruleset[.filter]!.chain(named: chain) {
                _ = run(rules: c.rules, table: .filter, chain: chain, packet, state, .upstream)
            }
        }
        return Result(outputs: state.outputs, masquerade: state.masquerade)
    }

    static func ipOfDNAT(_ s: String) -> IPAddress? {
        if s.hasPrefix("[") { return IPAddress(s.dropFirst().prefix { $0 != "]" }) }
        guard s.contains(":") else { return nil }
        return IPAddress(s.prefix { $0 != ":" })
    }

    static func portOfDNAT(_ s: String) -> Int? { s.split(separator: ":").last.flatMap { Int($0) } }

    /// The rules a packet meets in `chain`: a base chain holds kube-natd's jumps then the ensured rules there; any
    /// other chain its owned rules then the ensured ones (nil when the table has neither: a jump there is a no-op).
    func rules(of chain: String, in table: Table) -> [Rule]? {
        guard let t = ruleset[table] else { return nil }
        let ensured = t.ensured.filter { $0.chain == chain }.map(\.rule)
        if Ownership.baseChains.contains(chain) { return t.baseJumps.filter { $0.baseChain == chain }.map(\.rule) + ensured }
        guard let owned = t.chain(named: chain) else { return ensured.isEmpty ? nil : ensured }
        return owned.rules + ensured
    }

    /// Runs rules; returns true when a terminating target was reached.
    func run(rules: [Rule], table: Table, chain: String, _ p: Packet, _ state: State, _ model: Model) -> Bool {
        for rule in rules where matches(rule, p, state, model) {
            switch rule.target {
            case .none: continue
            case .return: return false
            case .accept:
                state.outputs.append("ACCEPT")
                return true
            case .drop, .reject:
                state.outputs.append(rule.target == .drop ? "DROP" : "REJECT")
                state.stoppedIn = chain
                return true
            case .dnat(let ip, let port):
                state.outputs.append(ip.joined(port: port))
                return true
            case .masquerade:
                if model == .upstream { continue }
                state.masquerade = true
                return true
            case .markOr(let v): if model == .newConnection { state.mark |= v }
            case .markXor(let v): if model == .newConnection { state.mark ^= v }
            case .jump("KUBE-MARK-MASQ") where model == .upstream:
                state.masquerade = true
            case .jump(let name):
                guard let target = self.rules(of: name, in: table) else { continue }
                let terminated = run(rules: target, table: table, chain: name, p, state, model)
                let probabilistic = rule.matches.contains { if case .statisticRandom = $0 { true } else { false } }
                if terminated && !probabilistic { return true }
            }
        }
        return false
    }

    func isLocal(_ ip: IPAddress) -> Bool { ip.isLoopback || nodeIPs.contains(ip) }

    private func matches(_ rule: Rule, _ p: Packet, _ state: State, _ model: Model) -> Bool {
        for m in rule.matches {
            switch m {
            case .comment, .statisticRandom, .nfacct, .recentSet: continue
            case .recentCheck: return false
            case .mark(let value, let mask, let neg):
                if model == .upstream || ((state.mark & mask) == value) == neg { return false }
            case .conntrackState(let states, let neg):
                let current: [ConntrackState] = p.dnat ? [.new, .dnat] : [.new]
                if model == .upstream || states.contains(where: current.contains) == neg { return false }
            case .proto(let proto): if proto != p.proto { return false }
            case .destinationPort(let port): if port != p.port { return false }
            case .source(let a, let neg): if a.block.contains(p.source) == neg { return false }
            case .destination(let a, let neg): if a.block.contains(p.destination) == neg { return false }
            case .inInterface(_, let neg): if p.fromPod == neg { return false }
            case .addrTypeLocal(let dir):
                if !isLocal(dir == .source ? p.source : p.destination) { return false }
            }
        }
        return true
    }
}
