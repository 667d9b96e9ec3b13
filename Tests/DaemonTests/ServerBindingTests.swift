import Logging
import NIOPosix
import XCTest

@testable import Daemon

/// kube-proxy's bind behaviour for the healthz and metrics servers: fatal with bindAddressHardFail, else retried
/// every 5 s. The sleeper is a fake that records the pauses; no wall time.
final class ServerBindingTests: XCTestCase {
    struct Refused: Error {}

    /// Counts bind attempts and fails the first `failures` of them.
    final class Binder: @unchecked Sendable {
        let lock = NSLock()
        var attempts = 0
        let failures: Int
        init(failures: Int) { self.failures = failures }
        func bind() throws -> Int {
            try lock.withLock {
                attempts += 1
                if attempts <= failures { throw Refused() }
                return attempts
            }
        }
    }

    final class Pauses: @unchecked Sendable {
        let lock = NSLock()
        var taken: [Duration] = []
        func add(_ d: Duration) { lock.withLock { taken.append(d) } }
        var all: [Duration] { lock.withLock { taken } }
    }

    func testHardFailThrowsAtTheFirstFailureWithoutRetrying() async {
        let binder = Binder(failures: 1)
        let pauses = Pauses()
        let binding = ServerBinding(sleep: { pauses.add($0) })
        do {
            _ = try await binding.start(
                "healthz", address: "0.0.0.0:10256", hardFail: true, logger: Logger(label: "t")
            ) {
                try binder.bind()
            }
            XCTFail("bind failure with hard fail did not throw")
        } catch {
            XCTAssertTrue(error is Refused)
        }
        XCTAssertEqual(binder.attempts, 1)
        XCTAssertEqual(pauses.all, [])
    }

    func testSoftFailRetriesEveryFiveSecondsUntilItBinds() async throws {
        let binder = Binder(failures: 3)
        let pauses = Pauses()
        let binding = ServerBinding(sleep: { pauses.add($0) })
        let slot = try await binding.start(
            "metrics", address: "127.0.0.1:10249", hardFail: false, logger: Logger(label: "t")
        ) {
            try binder.bind()
        }
        await slot.retried()
        XCTAssertEqual(slot.current, 4)
        XCTAssertEqual(binder.attempts, 4)
        XCTAssertEqual(pauses.all, [.seconds(5), .seconds(5), .seconds(5)])
    }

    func testFirstBindThatWorksNeedsNoRetry() async throws {
        let binder = Binder(failures: 0)
        let pauses = Pauses()
        let slot = try await ServerBinding(sleep: { pauses.add($0) }).start(
            "healthz", address: "x", hardFail: false, logger: Logger(label: "t")
        ) { try binder.bind() }
        XCTAssertEqual(slot.current, 1)
        XCTAssertEqual(pauses.all, [])
    }

    /// The real listener against a port already taken: the failure reaches the caller (hard fail) instead of
    /// being swallowed.
    func testTakenPortFailsTheRealHealthServer() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let health = ProxyHealth(syncPeriod: .seconds(30))
        let first = try await HealthServer.start(
            host: "127.0.0.1", port: 0, health: health, metrics: nil, group: group)
        let port = first.port
        do {
            _ = try await ServerBinding(sleep: { _ in }).start(
                "healthz", address: "127.0.0.1:\(port)", hardFail: true, logger: Logger(label: "t")
            ) {
                try await HealthServer.start(
                    host: "127.0.0.1", port: port, health: health, metrics: nil, group: group)
            }
            XCTFail("a second server bound a taken port")
        } catch {}
        await first.stop()
        try await group.shutdownGracefully()
    }
}
