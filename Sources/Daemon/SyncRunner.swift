import Foundation

/// kube-proxy's BoundedFrequencyRunner as a value: when a sync is due, and whether it is full. Pure (the caller
/// passes the time), so its rules are tested without a clock: at most one sync per `minInterval` (bursts of
/// requests coalesce into one), at least one per `maxInterval`, none before the source is ready, and after a
/// failure a full retry after a backoff (minInterval, doubling, capped at maxInterval) that changes wait for.
public struct SyncSchedule<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    public let minInterval: Duration
    public let maxInterval: Duration
    private var requested = false
    private var forceFull = true
    private var failures = 0
    private var lastStart: Instant?
    private var retryAt: Instant?

    public init(minInterval: Duration, maxInterval: Duration) {
        self.minInterval = minInterval
        self.maxInterval = maxInterval
    }

    /// Ask for a sync soon (coalesced with any other request before it runs).
    public mutating func request(full: Bool = false) {
        self.requested = true
        if full { self.forceFull = true }
    }

    /// Is a sync due at `now`?
    public func isDue(at now: Instant, ready: Bool) -> Bool {
        guard ready else { return false }
        guard let last = self.lastStart else { return true }
        // While a retry is pending, only its time counts: changes wait for it (it is a full sync).
        if let r = self.retryAt { return now >= r }
        if self.requested && last.duration(to: now) >= self.minInterval { return true }
        return last.duration(to: now) >= self.maxInterval
    }

    /// Marks a sync as started at `now`; returns whether it must be full (the first, a periodic or forced one,
    /// or a retry).
    public mutating func start(at now: Instant) -> Bool {
        let periodic = self.lastStart.map { $0.duration(to: now) >= self.maxInterval } ?? true
        let full = self.forceFull || periodic || self.failures > 0
        self.requested = false
        self.forceFull = false
        self.lastStart = now
        return full
    }

    /// Records how the sync that started last ended, at `now`.
    public mutating func finish(succeeded: Bool, at now: Instant) {
        if succeeded {
            self.failures = 0
            self.retryAt = nil
            return
        }
        self.failures += 1
        let backoff = min(self.minInterval * Int(pow(2.0, Double(min(self.failures - 1, 16)))), self.maxInterval)
        self.retryAt = now.advanced(by: backoff)
        self.forceFull = true
    }
}

/// Runs the schedule against a clock: checks it every `tick`, calls `idle` between checks (watchdog, periodic
/// drift checks) and `sync` when a sync is due. A tick of a few milliseconds keeps the reaction well under the
/// daemon's change-to-kernel budget at negligible cost. Tests pass a clock they advance by hand.
public final class SyncRunner<C: Clock>: @unchecked Sendable where C.Duration == Duration {
    public struct Outcome: Sendable {
        public var succeeded: Bool
        public init(succeeded: Bool) { self.succeeded = succeeded }
    }

    public let clock: C
    public let tick: Duration
    private let lock = NSLock()
    private var schedule: SyncSchedule<C.Instant>

    public init(minInterval: Duration, maxInterval: Duration, tick: Duration = .milliseconds(10), clock: C) {
        self.schedule = SyncSchedule(minInterval: minInterval, maxInterval: maxInterval)
        self.tick = tick
        self.clock = clock
    }

    public var minInterval: Duration { self.schedule.minInterval }
    public var maxInterval: Duration { self.schedule.maxInterval }

    /// Ask for a sync soon (any thread).
    public func request(full: Bool = false) {
        self.lock.withLock { self.schedule.request(full: full) }
    }

    /// Runs `sync(full)` until the task is cancelled. `ready()` gates the first run (both initial lists done).
    public func run(ready: @escaping @Sendable () -> Bool, idle: @escaping @Sendable () async -> Void,
                    sync: @escaping @Sendable (_ full: Bool) async -> Outcome) async {
        while !Task.isCancelled {
            await idle()
            let now = self.clock.now
            let isReady = ready()
            let full: Bool? = self.lock.withLock {
                self.schedule.isDue(at: now, ready: isReady) ? self.schedule.start(at: now) : nil
            }
            guard let full else {
                try? await self.clock.sleep(for: self.tick)
                continue
            }
            let outcome = await sync(full)
            let done = self.clock.now
            self.lock.withLock { self.schedule.finish(succeeded: outcome.succeeded, at: done) }
        }
    }
}

extension SyncRunner where C == ContinuousClock {
    public convenience init(minInterval: Duration, maxInterval: Duration, tick: Duration = .milliseconds(10)) {
        self.init(minInterval: minInterval, maxInterval: maxInterval, tick: tick, clock: ContinuousClock())
    }
}
