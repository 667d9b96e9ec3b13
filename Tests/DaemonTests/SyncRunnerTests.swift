import Foundation
import XCTest

@testable import Daemon

/// kube-proxy's BoundedFrequencyRunner semantics, on a clock the tests move by hand: no real sleeps, no timing.
final class SyncScheduleTests: XCTestCase {
    typealias Schedule = SyncSchedule<ManualClock.Instant>
    let t0 = ManualClock.Instant(offset: .zero)
    func at(_ ms: Int) -> ManualClock.Instant { t0.advanced(by: .milliseconds(ms)) }

    func testNoSyncBeforeTheInitialListsThenAFullOne() {
        var s = Schedule(minInterval: .seconds(1), maxInterval: .seconds(30))
        XCTAssertFalse(s.isDue(at: at(0), ready: false), "synced before both initial lists were complete")
        XCTAssertTrue(s.isDue(at: at(0), ready: true))
        XCTAssertTrue(s.start(at: at(0)), "the first sync is full")
    }

    func testBurstsOfRequestsCoalesceAndRespectMinInterval() {
        var s = Schedule(minInterval: .milliseconds(300), maxInterval: .seconds(60))
        _ = s.start(at: at(0))
        s.finish(succeeded: true, at: at(50))
        for _ in 0..<100 { s.request() }
        XCTAssertFalse(s.isDue(at: at(299), ready: true), "two syncs closer than minSyncPeriod")
        XCTAssertTrue(s.isDue(at: at(300), ready: true))
        XCTAssertFalse(s.start(at: at(300)), "a requested sync is partial")
        s.finish(succeeded: true, at: at(310))
        XCTAssertFalse(s.isDue(at: at(10_000), ready: true), "100 requests coalesced into one sync")
    }

    func testAFullSyncHappensEverySyncPeriodWithoutRequests() {
        var s = Schedule(minInterval: .milliseconds(10), maxInterval: .milliseconds(300))
        _ = s.start(at: at(0))
        s.finish(succeeded: true, at: at(1))
        XCTAssertFalse(s.isDue(at: at(299), ready: true))
        XCTAssertTrue(s.isDue(at: at(300), ready: true))
        XCTAssertTrue(s.start(at: at(300)), "periodic syncs are full")
    }

    func testARequestedFullSyncIsFull() {
        var s = Schedule(minInterval: .milliseconds(10), maxInterval: .seconds(30))
        _ = s.start(at: at(0))
        s.finish(succeeded: true, at: at(1))
        s.request(full: true)
        s.request()
        XCTAssertTrue(s.isDue(at: at(10), ready: true))
        XCTAssertTrue(s.start(at: at(10)))
    }

    func testAFailedSyncIsRetriedWithDoublingBackoffCappedAtSyncPeriodAndTheRetryIsFull() {
        var s = Schedule(minInterval: .milliseconds(100), maxInterval: .milliseconds(500))
        _ = s.start(at: at(0))
        s.finish(succeeded: false, at: at(0))
        s.request()
        XCTAssertFalse(s.isDue(at: at(99), ready: true), "changes wait for the retry")
        XCTAssertTrue(s.isDue(at: at(100), ready: true), "first retry after minSyncPeriod")
        XCTAssertTrue(s.start(at: at(100)), "a retry is full")
        s.finish(succeeded: false, at: at(100))
        XCTAssertFalse(s.isDue(at: at(299), ready: true))
        XCTAssertTrue(s.isDue(at: at(300), ready: true), "second retry after twice minSyncPeriod")
        _ = s.start(at: at(300))
        s.finish(succeeded: false, at: at(300))
        _ = s.start(at: at(700))
        s.finish(succeeded: false, at: at(700))
        XCTAssertFalse(s.isDue(at: at(1199), ready: true))
        XCTAssertTrue(s.isDue(at: at(1200), ready: true), "backoff capped at syncPeriod")
        XCTAssertTrue(s.start(at: at(1200)))
        s.finish(succeeded: true, at: at(1200))
        XCTAssertFalse(s.isDue(at: at(1300), ready: true), "no more syncs once one succeeded and nothing was requested")
    }
}

final class SyncRunnerTests: XCTestCase {
    final class Log: @unchecked Sendable {
        let lock = NSLock()
        var runs: [Bool] = []
        var fail = 0
        func add(_ full: Bool) -> Bool {
            lock.withLock {
                runs.append(full)
                if fail > 0 { fail -= 1; return false }
                return true
            }
        }
        var count: Int { lock.withLock { runs.count } }
        var snapshot: [Bool] { lock.withLock { runs } }
    }

    /// The runner's loop on a manual clock: each step advances time and waits until the loop sleeps again.
    func testTheLoopFollowsTheScheduleOnTheInjectedClock() async {
        let clock = ManualClock()
        let runner = SyncRunner(minInterval: .milliseconds(100), maxInterval: .seconds(1), tick: .milliseconds(10),
                                clock: clock)
        let log = Log()
        let ready = ManagedAtomicFlag()
        let task = Task {
            await runner.run(ready: { ready.value }, idle: {}, sync: { full in .init(succeeded: log.add(full)) })
        }
        await clock.waitForSleepers()
        XCTAssertEqual(log.count, 0, "no sync before the initial lists")
        ready.value = true
        clock.advance(by: .milliseconds(10))
        await clock.waitForSleepers()
        XCTAssertEqual(log.snapshot, [true], "the first sync is full")
        for _ in 0..<50 { runner.request() }
        for _ in 0..<9 {
            clock.advance(by: .milliseconds(10))
            await clock.waitForSleepers()
        }
        XCTAssertEqual(log.count, 1, "requested sync ran before minSyncPeriod")
        clock.advance(by: .milliseconds(10))
        await clock.waitForSleepers()
        XCTAssertEqual(log.snapshot, [true, false], "50 requests coalesced into one partial sync")
        for _ in 0..<100 {
            clock.advance(by: .milliseconds(10))
            await clock.waitForSleepers()
        }
        XCTAssertEqual(log.snapshot, [true, false, true], "a periodic full sync once a syncPeriod passed")
        task.cancel()
        await task.value
    }
}

/// A tiny thread-safe Bool for the tests.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var v = false
    var value: Bool {
        get { lock.withLock { v } }
        set { lock.withLock { v = newValue } }
    }
}
