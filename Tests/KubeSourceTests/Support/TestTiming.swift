import Foundation
import KubeSource
import XCTest

/// Time for the source that moves only when the test says so: sleeps (backoff, rate limiter, poll interval) wait
/// until `advance` passes their deadline; jitter is fixed at `random`. (DaemonTests has the same idea as a `Clock`
/// for the sync runner; the source takes plain closures, see `SourceTiming`.)
final class TestTiming: @unchecked Sendable {
    private struct Sleeper {
        var id: UInt64
        var deadline: Duration
        var continuation: CheckedContinuation<Void, Error>
    }

    private let lock = NSLock()
    private var current = Duration.zero
    private var sleepers: [Sleeper] = []
    private var nextID: UInt64 = 0
    let random: Double

    init(random: Double = 0) { self.random = random }

    var now: Duration { lock.withLock { current } }
    /// How many tasks are suspended in `sleep` now.
    var sleeping: Int { lock.withLock { sleepers.count } }
    /// The durations the sleepers asked for, measured from now.
    var pending: [Duration] { lock.withLock { sleepers.map { $0.deadline - current }.sorted() } }

    var timing: SourceTiming {
        SourceTiming(now: { self.now }, sleep: { try await self.sleep($0) }, random: { self.random })
    }

    func sleep(_ d: Duration) async throws {
        let id: UInt64 = lock.withLock {
            nextID += 1
            return nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                let resumeNow: Bool = lock.withLock {
                    if d <= .zero || Task.isCancelled { return true }
                    sleepers.append(Sleeper(id: id, deadline: current + d, continuation: c))
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            let s: Sleeper? = lock.withLock {
                guard let i = sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return sleepers.remove(at: i)
            }
            s?.continuation.resume(throwing: CancellationError())
        }
        try Task.checkCancellation()
    }

    /// Moves time forward and wakes every sleeper whose deadline has come.
    func advance(by d: Duration) {
        let woken: [Sleeper] = lock.withLock {
            current += d
            let due = sleepers.filter { $0.deadline <= current }
            sleepers.removeAll { $0.deadline <= current }
            return due
        }
        for s in woken { s.continuation.resume() }
    }
}

/// Waits until `condition` holds, checking every few milliseconds; fails the test when it never does within `bound`.
/// The bound only keeps a broken build from hanging the suite: nothing asserts how fast the condition came.
@discardableResult
func eventually(
    _ what: @autoclosure () -> String = "condition", bound: Duration = .seconds(30), file: StaticString = #filePath,
    line: UInt = #line, _ condition: () -> Bool
) async -> Bool {
    let start = ContinuousClock.now
    while !condition() {
        if ContinuousClock.now - start > bound {
            XCTFail("never happened: \(what())", file: file, line: line)
            return false
        }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return true
}
