import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// sd_notify(3) without libsystemd: state datagrams to the unix socket systemd names in
/// `$NOTIFY_SOCKET` (a path, or an abstract name when it starts with `@`).
public struct SystemdNotifier: Sendable {
    /// The socket from `$NOTIFY_SOCKET`; nil when not started by systemd with `Type=notify`.
    public let socketPath: String?
    /// `$WATCHDOG_USEC`: systemd kills the service if no `WATCHDOG=1` arrives within it. Nil when the
    /// watchdog is off or `$WATCHDOG_PID` names another process.
    public let watchdogTimeout: Duration?

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `environment`.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let socket = environment["NOTIFY_SOCKET"]
        self.socketPath = (socket?.isEmpty ?? true) ? nil : socket
        var timeout: Duration?
        if let usec = environment["WATCHDOG_USEC"].flatMap({ UInt64($0) }), usec > 0 {
            // sd_watchdog_enabled(3): the variables are meant for the process WATCHDOG_PID names.
            let pid = environment["WATCHDOG_PID"].flatMap { Int32($0) }
            if pid == nil || pid == getpid() { timeout = .microseconds(Int64(usec)) }
        }
        self.watchdogTimeout = timeout
    }

    /// How often to send `WATCHDOG=1`: half the timeout, as sd_watchdog_enabled(3) recommends.
    public var watchdogInterval: Duration? { self.watchdogTimeout.map { $0 / 2 } }

    /// Whether notifications go anywhere.
    public var isEnabled: Bool { self.socketPath != nil }

    /// Startup is finished: rules are in the kernel and the servers listen.
    public func ready() throws { try self.notify("READY=1") }

    /// Keep-alive for the systemd watchdog.
    public func watchdog() throws { try self.notify("WATCHDOG=1") }

    /// A one-line status `systemctl status` shows.
    public func status(_ text: String) throws {
        try self.notify("STATUS=" + text.replacingOccurrences(of: "\n", with: " "))
    }

    /// Shutdown has begun.
    public func stopping() throws { try self.notify("STOPPING=1") }

    /// Sends `state` (newline-separated `KEY=value` assignments) as one datagram. Does nothing when
    /// `$NOTIFY_SOCKET` is unset, as sd_notify does.
    public func notify(_ state: String) throws {
        guard let path = self.socketPath else { return }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(path.utf8)
        let abstract = pathBytes.first == UInt8(ascii: "@")
        // An abstract name starts with NUL in sun_path; '@' is how systemd writes it in the variable.
        if abstract { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity, abstract || pathBytes.first == UInt8(ascii: "/") else {
            throw SystemdNotifyError.badSocketPath(path)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        // An abstract address's length counts exactly its bytes; a path's includes the NUL.
        let length = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + pathBytes.count + (abstract ? 0 : 1)

        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemdNotifyError.socket(errno: errno) }
        defer { close(fd) }
        let payload = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                payload.withUnsafeBytes { bytes in
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), sa, socklen_t(length))
                }
            }
        }
        guard sent == payload.count else { throw SystemdNotifyError.send(path: path, errno: errno) }
    }
}

/// Why a notification could not be sent.
public enum SystemdNotifyError: Error, CustomStringConvertible, Equatable {
    case badSocketPath(String)
    case socket(errno: Int32)
    case send(path: String, errno: Int32)

    public var description: String {
        switch self {
        case .badSocketPath(let path):
            return "NOTIFY_SOCKET=\(path): must be an absolute path or an @abstract name shorter than 108 bytes"
        case .socket(let e):
            return "sd_notify: socket(AF_UNIX, SOCK_DGRAM): \(String(cString: strerror(e)))"
        case .send(let path, let e):
            return "sd_notify: sendto \(path): \(String(cString: strerror(e)))"
        }
    }
}
