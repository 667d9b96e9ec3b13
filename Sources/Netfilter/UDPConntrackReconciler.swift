import CNetfilter
import Dispatch
import KubeModel
import Ruleset

/// Decides which UDP conntrack entries are stale, as upstream's `CleanStaleEntries` (reference §5): an entry
/// whose original destination is a service frontend (`ip:port`), or whose original destination port is a
/// NodePort, and whose reply source is not one of that frontend's serving endpoints. Such an entry was DNATed
/// to an endpoint that no longer serves (or was never DNATed, when the Service had no endpoints); one-way UDP
/// keeps refreshing it, so without a delete the client would stay blackholed (kubernetes #19029, #126130).
public struct StaleUDPEntryMatcher: Sendable {
    /// An address as two host-order words, the layout the C shim hands over: no allocation per entry.
    struct Address: Hashable, Sendable {
        var high: UInt64
        var low: UInt64
        init(_ ip: IPAddress) { (self.high, self.low) = (ip.high, ip.low) }
        init(high: UInt64, low: UInt64) { (self.high, self.low) = (high, low) }
    }
    struct Frontend: Hashable, Sendable {
        var address: Address
        var port: UInt16
    }

    private let byFrontend: [Frontend: Set<Address>]
    private let byNodePort: [UInt16: Set<Address>]

    public init(_ frontends: UDPServiceFrontends) {
        var byFrontend: [Frontend: Set<Address>] = [:]
        for (f, serving) in frontends.byAddress where (1...65535).contains(f.port) {
            byFrontend[Frontend(address: Address(f.ip), port: UInt16(f.port))] = Set(serving.map(Address.init))
        }
        var byNodePort: [UInt16: Set<Address>] = [:]
        for (port, serving) in frontends.byNodePort where (1...65535).contains(port) {
            byNodePort[UInt16(port)] = Set(serving.map(Address.init))
        }
        self.byFrontend = byFrontend
        self.byNodePort = byNodePort
    }

    /// True when nothing can be stale (no UDP service port has a serving endpoint).
    public var isEmpty: Bool { self.byFrontend.isEmpty && self.byNodePort.isEmpty }

    /// Whether a UDP entry with this original destination and reply source must be deleted.
    public func isStale(originalDestination: IPAddress, port: Int, replySource: IPAddress) -> Bool {
        guard let p = UInt16(exactly: port) else { return false }
        return self.isStale(Address(originalDestination), p, Address(replySource))
    }

    func isStale(_ destination: Address, _ port: UInt16, _ replySource: Address) -> Bool {
        if let serving = self.byFrontend[Frontend(address: destination, port: port)], !serving.contains(replySource) {
            return true
        }
        if let serving = self.byNodePort[port], !serving.contains(replySource) {
            return true
        }
        return false
    }
}

/// What one conntrack reconciliation did (`kubeproxy_conntrack_reconciler_deleted_entries_total`,
/// `kubeproxy_conntrack_reconciler_sync_duration_seconds`).
public struct UDPConntrackReport: Sendable, CustomStringConvertible {
    public var family: IPFamily
    /// False when no UDP service port had a serving endpoint, so the table was not read.
    public var scanned = false
    /// Entries of the family read (every protocol), of which UDP, stale, and deleted.
    public var entries: UInt64 = 0
    public var udpEntries: UInt64 = 0
    public var stale: UInt64 = 0
    public var deleted: UInt64 = 0
    /// Stale entries that expired between the dump and the delete.
    public var vanished: UInt64 = 0
    public var deleteFailures: UInt64 = 0
    public var durationSeconds: Double = 0
    /// Why the walk or a delete failed; the counts above still say what was done.
    public var error: ConntrackError?

    public init(family: IPFamily) { self.family = family }

    public var description: String {
        guard self.scanned else {
            return "\(self.family.flagName) conntrack: no UDP Service with serving endpoints, table not read"
        }
        return
            "\(self.family.flagName) conntrack: deleted \(self.deleted) stale UDP entries of \(self.udpEntries) UDP / "
            + "\(self.entries) entries in \(String(format: "%.1f", self.durationSeconds * 1000)) ms"
            + (self.vanished > 0 ? ", \(self.vanished) already gone" : "")
            + (self.error.map { ", \($0)" } ?? "")
    }
}

/// A failure talking to conntrack over netlink.
public struct ConntrackError: Error, Sendable, CustomStringConvertible {
    public var family: IPFamily
    public var errno: Int32
    public var message: String
    public var description: String { "\(self.message) (errno \(self.errno))" }
}

/// Deletes the stale UDP conntrack entries of one family in the caller's network namespace, streaming the
/// table through the C shim (nothing of it is held). Never flushes: entries of UDP Services without serving
/// endpoints, and every entry that does not point at a service frontend, are left alone (kubernetes #122740).
public struct UDPConntrackReconciler: Sendable {
    public init() {}

    public func reconcile(_ frontends: UDPServiceFrontends) -> UDPConntrackReport {
        var report = UDPConntrackReport(family: frontends.family)
        let started = DispatchTime.now().uptimeNanoseconds
        let matcher = StaleUDPEntryMatcher(frontends)
        if !matcher.isEmpty {
            report.scanned = true
            let box = MatcherBox(matcher)
            var result = knat_ct_result()
            let rc = withExtendedLifetime(box) {
                knat_ct_reconcile_udp(
                    frontends.family == .ipv4 ? 4 : 6,
                    { context, flow in
                        guard let context, let flow else { return 0 }
                        let box = Unmanaged<MatcherBox>.fromOpaque(context).takeUnretainedValue()
                        let f = flow.pointee
                        return box.matcher.isStale(
                            .init(high: f.orig_dst_high, low: f.orig_dst_low), f.orig_dst_port,
                            .init(high: f.reply_src_high, low: f.reply_src_low)) ? 1 : 0
                    },
                    Unmanaged.passUnretained(box).toOpaque(), &result)
            }
            report.entries = result.entries
            report.udpEntries = result.udp_entries
            report.stale = result.stale
            report.deleted = result.deleted
            report.vanished = result.vanished
            report.deleteFailures = result.delete_failures
            if rc != 0 {
                let message = withUnsafeBytes(of: result.message) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                report.error = ConntrackError(family: frontends.family, errno: rc, message: message)
            }
        }
        report.durationSeconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        return report
    }
}

private final class MatcherBox {
    let matcher: StaleUDPEntryMatcher
    init(_ matcher: StaleUDPEntryMatcher) { self.matcher = matcher }
}
