import Foundation

/// A `Clock` that only moves when the test says so, so the sync runner is tested without real sleeps.
/// (swift-clocks' TestClock would do; the copy available here needs a newer toolchain.)
final class ManualClock: Clock, @unchecked Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by d: Duration) -> Instant { Instant(offset: self.offset + d) }
        func duration(to other: Instant) -> Duration { other.offset - self.offset }
        static func < (a: Instant, b: Instant) -> Bool { a.offset < b.offset }
    }

    private struct Sleeper {
        var id: UInt64
        var deadline: Instant
        var continuation: CheckedContinuation<Void, Error>
    }

    private let lock = NSLock()
    private var current = Instant(offset: .zero)
    private var sleepers: [Sleeper] = []
    private var nextID: UInt64 = 0

    var now: Instant { self.lock.withLock { self.current } }
    var minimumResolution: Duration { .zero }

    /// How many tasks are suspended in `sleep` now.
    var sleeping: Int { self.lock.withLock { self.sleepers.count } }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        let id: UInt64 = self.lock.withLock {
            self.nextID += 1
            return self.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                let resumeNow: Bool = self.lock.withLock {
                    if deadline <= self.current || Task.isCancelled { return true }
                    self.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: c))
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            let s: Sleeper? = self.lock.withLock {
                guard let i = self.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return self.sleepers.remove(at: i)
            }
            s?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes every sleeper whose deadline has come.
    func advance(by d: Duration) {
        let woken: [Sleeper] = self.lock.withLock {
            self.current = self.current.advanced(by: d)
            let due = self.sleepers.filter { $0.deadline <= self.current }
            self.sleepers.removeAll { $0.deadline <= self.current }
            return due
        }
        for s in woken { s.continuation.resume() }
    }

    /// Waits (without sleeping on a timer) until `count` tasks are suspended in `sleep`.
    func waitForSleepers(_ count: Int = 1) async {
        for _ in 0..<1_000_000 where self.sleeping < count { await Task.yield() }
    }
}
