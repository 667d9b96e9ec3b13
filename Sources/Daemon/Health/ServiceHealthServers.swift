import Foundation
import KubeModel
import Logging
import NIOCore
import NIOHTTP1
import ProxyConfig
import RuleCompiler

/// A Service's `healthCheckNodePort`.
public typealias HealthCheckPort = Int

/// What a health-check port reports: the Service and its ready endpoints on this node.
///
/// Upstream runs one proxier per family, each with its own health-check server counting its own family's
/// endpoints: a listener on an address of one family answers with that family's count; a wildcard listener
/// (one socket for both families) with `localEndpoints`, the count of the first family, in the node's family
/// order, that has the port.
public struct ServiceHealthState: Hashable, Sendable {
    public var service: ObjectName
    /// Ready endpoints on this node (distinct IPs; terminating ones do not count, as upstream), as a wildcard
    /// listener reports them.
    public var localEndpoints: Int
    /// The same count per family that has this health-check port.
    public var localEndpointsByFamily: [IPFamily: Int]

    public init(service: ObjectName, localEndpoints: Int, localEndpointsByFamily: [IPFamily: Int] = [:]) {
        self.service = service
        self.localEndpoints = localEndpoints
        self.localEndpointsByFamily = localEndpointsByFamily
    }

    /// What a listener on an address of `family` (nil: a wildcard listener) reports.
    public func localEndpoints(listeningOn family: IPFamily?) -> Int {
        family.flatMap { self.localEndpointsByFamily[$0] } ?? self.localEndpoints
    }
}

/// The per-Service health-check servers of `externalTrafficPolicy: Local` Services, as upstream's
/// pkg/proxy/healthcheck/service_health.go: one HTTP server per `healthCheckNodePort` (and per
/// node address when nodePortAddresses names addresses), any path, 200 when the node has a ready
/// local endpoint and the proxy is healthy, else 503, so cloud load balancers skip the node.
public actor ServiceHealthServers {
    private let health: ProxyHealth
    private let addresses: [String]
    private let group: any EventLoopGroup
    private let logger: Logger
    private let states = LockedStates()
    private var listeners: [HealthCheckPort: [HTTPListener]] = [:]
    private var lastSync: Task<Void, Never>?

    /// - Parameter addresses: where each port listens; `["0.0.0.0"]` unless nodePortAddresses
    ///   lists addresses, then one listener per address (upstream's `nodeIPs`).
    public init(
        health: ProxyHealth, addresses: [String] = ["0.0.0.0"], group: any EventLoopGroup,
        logger: Logger = Logger(label: "kube-natd.service-health")
    ) {
        self.health = health
        self.addresses = addresses.isEmpty ? ["0.0.0.0"] : addresses
        self.group = group
        self.logger = logger
    }

    /// Where health-check ports listen for a `nodePortAddresses` setting: every address unless it
    /// names node addresses, then each of those (upstream's `nodeIPs`).
    public static func listenAddresses(for nodePortAddresses: NodePortAddresses) -> [String] {
        switch nodePortAddresses {
        case .all: return ["0.0.0.0"]
        case .addresses(let ips): return ips.isEmpty ? ["0.0.0.0"] : ips.map(\.description)
        }
    }

    /// Every health-check port the node's families need and what each reports, from the cluster state (one
    /// `settings` per family, the node's primary family first). A port named by Services of different families
    /// keeps the first family's Service, as the first upstream proxier to bind it would.
    public static func states(_ state: ClusterState, settings: [NodeSettings]) -> [HealthCheckPort: ServiceHealthState] {
        var out: [HealthCheckPort: ServiceHealthState] = [:]
        for family in settings {
            for hc in RuleCompiler.healthCheckEndpoints(state, settings: family) {
                var entry = out[hc.healthCheckNodePort]
                    ?? ServiceHealthState(service: hc.service, localEndpoints: hc.localReadyEndpoints)
                guard entry.service == hc.service else { continue }
                entry.localEndpointsByFamily[family.family] = hc.localReadyEndpoints
                out[hc.healthCheckNodePort] = entry
            }
        }
        return out
    }

    /// Makes the open ports exactly `wanted`: closes ports no longer wanted, opens new ones and
    /// updates what every port reports. A port that cannot be bound is logged and left closed;
    /// the next sync tries it again. Never throws: one bad port must not stop the others.
    public func sync(_ wanted: [HealthCheckPort: ServiceHealthState]) async {
        // Binding and closing suspend the actor; chaining keeps overlapping calls from both
        // opening one port (the loser would then forget the winner's state).
        let previous = self.lastSync
        let task = Task {
            await previous?.value
            await self.apply(wanted)
        }
        self.lastSync = task
        await task.value
    }

    private func apply(_ wanted: [HealthCheckPort: ServiceHealthState]) async {
        for (port, listeners) in self.listeners where wanted[port] == nil {
            self.logger.info(
                "Closing healthcheck",
                metadata: ["service": "\(self.states[port]?.service.description ?? "?")", "port": "\(port)"])
            self.listeners[port] = nil
            self.states[port] = nil
            for listener in listeners { await listener.close() }
        }
        for (port, state) in wanted.sorted(by: { $0.key < $1.key }) {
            // Counts are published before a new port opens, so its first answer is already right.
            self.states[port] = state
            if self.listeners[port] != nil { continue }
            do {
                self.listeners[port] = try await self.open(port: port)
                self.logger.info("Opening healthcheck", metadata: ["service": "\(state.service)", "port": "\(port)"])
            } catch {
                self.states[port] = nil
                // Upstream also records a FailedToStartServiceHealthcheck event on the Service.
                self.logger.error(
                    "Failed to start healthcheck",
                    metadata: ["service": "\(state.service)", "port": "\(port)", "error": "\(error)"])
            }
        }
    }

    /// The ports currently listening.
    public var openPorts: [HealthCheckPort] { self.listeners.keys.sorted() }

    /// Closes every listener.
    public func stop() async {
        await self.sync([:])
    }

    /// Binds `port` on every address, or none: a half-open port is closed again so a later sync
    /// (or the port's new owner) can take it, as upstream's `listenAndServeAll` does.
    private func open(port: HealthCheckPort) async throws -> [HTTPListener] {
        var opened: [HTTPListener] = []
        let states = self.states
        let health = self.health
        do {
            for address in self.addresses {
                // A wildcard listener takes both families on one socket, as Go's listener on 0.0.0.0 does.
                let family = ["", "0.0.0.0", "::"].contains(address) ? nil : IPAddress(address)?.family
                let listener = try await HTTPListener.bind(host: address, port: port, group: self.group) { _ in
                    ServiceHealthServers.reply(state: states[port], proxyHealthy: health.isHealthy(), family: family)
                }
                opened.append(listener)
            }
        } catch {
            for listener in opened { await listener.close() }
            throw error
        }
        return opened
    }

    /// Upstream's answer for one Service: `localEndpoints != 0 && proxyHealthy` gives 200, else 503;
    /// the body is upstream's dedented, tab-indented JSON, and `X-Load-Balancing-Endpoint-Weight` carries the
    /// count (load balancers that weigh nodes by it send traffic in proportion to local endpoints). A port
    /// closed between accept and answer gets an empty 503 (upstream writes nothing and logs).
    /// - Parameter family: the family of the address the listener is bound to, nil for a wildcard listener.
    public static func reply(state: ServiceHealthState?, proxyHealthy: Bool, family: IPFamily? = nil) -> HTTPReply {
        guard let state else { return .json(.serviceUnavailable, "") }
        let count = state.localEndpoints(listeningOn: family)
        let ok = count != 0 && proxyHealthy
        let body = """
            {
            \t"service": {
            \t\t"namespace": \(goQuote(state.service.namespace)),
            \t\t"name": \(goQuote(state.service.name))
            \t},
            \t"localEndpoints": \(count),
            \t"serviceProxyHealthy": \(proxyHealthy)
            }
            """
        var reply = HTTPReply.json(ok ? .ok : .serviceUnavailable, body)
        reply.headers.append(("X-Load-Balancing-Endpoint-Weight", String(count)))
        return reply
    }

    /// Go's `%q` for the characters Kubernetes names may hold (DNS labels need no escapes).
    static func goQuote(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }
}

/// The states the listeners read on their event loops while `sync` writes them.
private final class LockedStates: @unchecked Sendable {
    private let lock = NSLock()
    private var states: [HealthCheckPort: ServiceHealthState] = [:]

    subscript(port: HealthCheckPort) -> ServiceHealthState? {
        get { self.lock.withLock { self.states[port] } }
        set { self.lock.withLock { self.states[port] = newValue } }
    }
}
