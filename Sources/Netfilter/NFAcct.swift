import CNetfilter
import Foundation

/// nfacct accounting objects in this network namespace: what `-m nfacct --nfacct-name` counts into. The rule
/// refuses to load unless its object exists, so kube-natd (as kube-proxy) creates them before writing the rules.
public protocol NFAcctObjects: Sendable {
    /// Creates the object unless it exists (an existing one keeps its counts).
    func ensure(_ name: String) throws
    /// The kernel could hold the object: it exists, or nfnetlink_acct answers that it does not yet (what a dry run
    /// asks, so it decides as `--once` would without creating anything).
    func available(_ name: String) -> Bool
    /// The object's packet count.
    func packets(_ name: String) throws -> UInt64
}

/// An nfacct request the kernel refused.
public struct NFAcctError: Error, CustomStringConvertible {
    public var errno: Int32
    public var description: String
    public init(errno: Int32, description: String) {
        self.errno = errno
        self.description = description
    }
}

/// The kernel's nfacct objects, through nfnetlink_acct (the C shim's `knat_nfacct_*`).
public struct KernelNFAcct: NFAcctObjects {
    public init() {}

    public func ensure(_ name: String) throws {
        var message = [CChar](repeating: 0, count: 256)
        let rc = knat_nfacct_ensure(name, &message, message.count)
        if rc != 0 { throw NFAcctError(errno: rc, description: String(cString: message)) }
    }

    public func available(_ name: String) -> Bool {
        var message = [CChar](repeating: 0, count: 256)
        switch knat_nfacct_get(name, nil, nil, &message, message.count) {
        case 0, ENOENT: return true
        // Without CAP_NET_ADMIN nfnetlink refuses every request (a dry run as an ordinary user): the module's
        // presence is the best answer then.
        case EPERM: return FileManager.default.fileExists(atPath: "/sys/module/nfnetlink_acct")
        default: return false
        }
    }

    public func packets(_ name: String) throws -> UInt64 {
        var message = [CChar](repeating: 0, count: 256)
        var packets: UInt64 = 0
        let rc = knat_nfacct_get(name, &packets, nil, &message, message.count)
        if rc != 0 { throw NFAcctError(errno: rc, description: String(cString: message)) }
        return packets
    }
}
