import Daemon
import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// A unix datagram socket standing in for systemd's notify socket.
private final class NotifySocket {
    let fd: Int32
    let path: String?

    /// Bound at `path`, or at the abstract `name` when `path` is nil.
    init(path: String?, abstractName: String? = nil) throws {
        self.fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        self.path = path
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes: [UInt8] = path.map { Array($0.utf8) } ?? ([0] + Array(abstractName!.utf8))
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
        let length = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + bytes.count + (path == nil ? 0 : 1)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(self.fd, $0, socklen_t(length)) }
        }
        guard rc == 0 else { throw SystemdNotifyError.socket(errno: errno) }
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next datagram, or nil after the 2 s receive timeout.
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(self.fd, &buffer, buffer.count, 0)
        return n < 0 ? nil : String(decoding: buffer[0..<n], as: UTF8.self)
    }

    deinit {
        close(self.fd)
        if let path { unlink(path) }
    }
}

final class SystemdNotifierTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("kube-natd-notify-\(UUID())")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: self.directory)
    }

    func testStatesArriveAsDatagramsOnThePathSocket() throws {
        let path = self.directory.appendingPathComponent("notify.sock").path
        let socket = try NotifySocket(path: path)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": path])
        XCTAssertTrue(notifier.isEnabled)
        try notifier.ready()
        try notifier.status("synced 12 services\nin 3ms")
        try notifier.watchdog()
        try notifier.stopping()
        XCTAssertEqual(socket.receive(), "READY=1")
        XCTAssertEqual(socket.receive(), "STATUS=synced 12 services in 3ms")
        XCTAssertEqual(socket.receive(), "WATCHDOG=1")
        XCTAssertEqual(socket.receive(), "STOPPING=1")
    }

    func testAtSignMeansAnAbstractSocket() throws {
        let name = "kube-natd-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let socket = try NotifySocket(path: nil, abstractName: name)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "@" + name])
        try notifier.ready()
        XCTAssertEqual(socket.receive(), "READY=1")
    }

    func testWithoutNotifySocketNothingIsSent() throws {
        let notifier = SystemdNotifier(environment: [:])
        XCTAssertFalse(notifier.isEnabled)
        XCTAssertNil(notifier.watchdogInterval)
        XCTAssertNoThrow(try notifier.ready())
    }

    func testMissingSocketIsAnError() {
        let path = self.directory.appendingPathComponent("absent.sock").path
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": path])
        XCTAssertThrowsError(try notifier.ready()) { error in
            guard case SystemdNotifyError.send(let p, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(p, path)
        }
        XCTAssertThrowsError(try SystemdNotifier(environment: ["NOTIFY_SOCKET": "relative"]).ready())
    }

    func testWatchdogIntervalIsHalfOfWatchdogUsec() {
        let notifier = SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000"])
        XCTAssertEqual(notifier.watchdogTimeout, .seconds(30))
        XCTAssertEqual(notifier.watchdogInterval, .seconds(15))
        let mine = SystemdNotifier(environment: ["WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "\(getpid())"])
        XCTAssertEqual(mine.watchdogTimeout, .seconds(1))
        let other = SystemdNotifier(environment: ["WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"])
        XCTAssertNil(other.watchdogTimeout, "meant for another process")
        XCTAssertNil(SystemdNotifier(environment: ["WATCHDOG_USEC": "0"]).watchdogTimeout)
    }
}
