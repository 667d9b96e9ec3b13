import Foundation

/// kube-proxy's BoundedFrequencyRunner: run at most once per `minInterval` (bursts of requests coalesce into one
/// run), at least once per `maxInterval`, and after a failure retry with backoff.
///
/// Requests set a flag; the loop checks it every `tick`. A tick of a few milliseconds keeps the reaction well
/// under the 0.5 s change-to-kernel budget at negligible cost, and keeps the runner free of continuation juggling.
public final class SyncRunner: @unchecked Sendable {
    public struct Outcome: Sendable {
        public var succeeded: Bool
        public init(succeeded: Bool) { self.succeeded = succeeded }
    }

    public let minInterval: Duration
    public let maxInterval: Duration
    public let tick: Duration
    private let lock = NSLock()
    private var requested = false
    private var forceFull = true
    private var failures = 0

    public init(minInterval: Duration, maxInterval: Duration, tick: Duration = .milliseconds(10)) {
        self.minInterval = minInterval
        self.maxInterval = maxInterval
        self.tick = tick
    }

    /// Ask for a sync soon (coalesced with any other request before it runs).
    public func request(full: Bool = false) {
        lock.lock()
        requested = true
        if full { forceFull = true }
        lock.unlock()
    }

    private func takeRequest() -> (Bool, Bool) {
        lock.lock(); defer { lock.unlock() }
        let r = (requested, forceFull)
        requested = false
        forceFull = false
        return r
    }

    /// Runs `sync(full)` until the task is cancelled. `ready()` gates the first run (both initial lists done);
    /// `idle()` is called every tick (watchdog, periodic checks).
    public func run(ready: @escaping () -> Bool, idle: @escaping () async -> Void,
                    sync: @escaping (_ full: Bool) async -> Outcome) async {
        let clock = ContinuousClock()
        var lastStart: ContinuousClock.Instant?
        var retryAt: ContinuousClock.Instant?
        while !Task.isCancelled {
            await idle()
            let now = clock.now
            let due: Bool = {
                lock.lock(); defer { lock.unlock() }
                if !ready() { return false }
                guard let last = lastStart else { return true }
                // While a retry is pending, only its time counts: changes wait for it (it is a full sync).
                if let r = retryAt { return now >= r }
                if requested && now - last >= minInterval { return true }
                return now - last >= maxInterval
            }()
            if !due {
                try? await Task.sleep(for: tick)
                continue
            }
            let (_, full) = takeRequest()
            let periodic = lastStart.map { now - $0 >= maxInterval } ?? true
            lastStart = now
            let outcome = await sync(full || periodic || failures > 0)
            if outcome.succeeded {
                failures = 0
                retryAt = nil
            } else {
                failures += 1
                // minInterval, doubling, capped at maxInterval; the next sync is full.
                let backoff = min(minInterval * Int(pow(2.0, Double(min(failures - 1, 16)))), maxInterval)
                retryAt = clock.now + backoff
                lock.withLock { forceFull = true }
            }
        }
    }
}
