import Daemon
import Foundation
import Logging
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// A clock the test moves by hand.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current: WallTime

    init(_ start: WallTime = WallTime(secondsSince1970: 1_704_067_200)) {  // 2024-01-01 00:00:00 UTC
        self.current = start
    }

    var now: WallTime { self.lock.withLock { self.current } }

    func advance(_ d: Duration) {
        self.lock.withLock { self.current = self.current.advanced(by: d) }
    }

    var read: @Sendable () -> WallTime { { self.now } }
}

/// One parsed HTTP response.
struct HTTPResult {
    var status: Int
    var headers: [String: String]  // names lowercased
    var body: String
}

enum HTTPTestError: Error {
    case connect(Int32)
    case timeout
    case malformed(String)
}

/// A minimal blocking HTTP/1.1 GET over a TCP socket, every step bounded by `timeout` seconds.
/// Written against raw sockets so the server is tested from outside NIO.
func httpGet(port: Int, path: String, host: String = "127.0.0.1", timeout: Int = 3) throws -> HTTPResult {
    let text = try httpExchange(
        port: port, request: "GET \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n", host: host,
        timeout: timeout)
    guard let split = text.range(of: "\r\n\r\n") else { throw HTTPTestError.malformed(text) }
    let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
    let statusParts = lines[0].split(separator: " ")
    guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw HTTPTestError.malformed(lines[0]) }
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return HTTPResult(status: status, headers: headers, body: String(text[split.upperBound...]))
}

/// Sends `request` as is and returns everything the server writes until it closes the connection.
func httpExchange(port: Int, request: String, host: String = "127.0.0.1", timeout: Int = 3) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HTTPTestError.connect(errno) }
    defer { close(fd) }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, host, &addr.sin_addr)
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard rc == 0 else { throw HTTPTestError.connect(errno) }
    let bytes = Array(request.utf8)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var data = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n == 0 { break }
        if n < 0 { throw HTTPTestError.timeout }
        data += buffer[0..<n]
    }
    return String(decoding: data, as: UTF8.self)
}

/// A client connection kept open between requests, as a load balancer's health checker keeps it.
final class KeepAliveConnection {
    let fd: Int32

    init(port: Int, timeout: Int = 3) throws {
        self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(self.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            close(self.fd)
            throw HTTPTestError.connect(errno)
        }
    }

    /// One keep-alive request; returns the head and body of the response (read until Content-Length).
    func get(_ path: String) throws -> String {
        let bytes = Array("GET \(path) HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
        _ = bytes.withUnsafeBytes { send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(self.fd, &buffer, buffer.count, 0)
            if n <= 0 { throw HTTPTestError.timeout }
            data += buffer[0..<n]
            let text = String(decoding: data, as: UTF8.self)
            guard let split = text.range(of: "\r\n\r\n") else { continue }
            let length =
                text[..<split.lowerBound].components(separatedBy: "\r\n")
                .first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            if text[split.upperBound...].utf8.count >= length { return text }
        }
    }

    /// True when the server closes the connection (recv returns 0) within the receive timeout.
    func waitForClose() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 1024)
        return recv(self.fd, &buffer, buffer.count, 0) == 0
    }

    deinit { close(self.fd) }
}

/// A port free right now on 127.0.0.1 (bound to 0, read back, released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa -> Int32 in
            _ = bind(fd, sa, len)
            return getsockname(fd, sa, &len)
        }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// A TCP listener held by the test, to make a port unbindable.
final class PortSquatter {
    let fd: Int32
    init(port: Int) throws {
        self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(self.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0, listen(self.fd, 1) == 0 else { throw HTTPTestError.connect(errno) }
    }
    func release() { close(self.fd) }
}

/// A log handler that keeps every message, to assert what operators would see.
final class CapturedLogs: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [(Logger.Level, String, Logger.Metadata)] = []

    func append(_ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata) {
        self.lock.withLock { self.entries.append((level, message, metadata)) }
    }

    var all: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] {
        self.lock.withLock { self.entries.map { (level: $0.0, message: $0.1, metadata: $0.2) } }
    }

    var logger: Logger {
        Logger(label: "test") { _ in CapturingHandler(logs: self) }
    }
}

struct CapturingHandler: LogHandler {
    let logs: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        self.logs.append(event.level, "\(event.message)", self.metadata.merging(event.metadata ?? [:]) { $1 })
    }
}
