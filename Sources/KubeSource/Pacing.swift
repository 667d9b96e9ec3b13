import Foundation

/// Where the apiserver source reads time, sleeps and draws jitter. `live` in production; tests inject a clock that
/// moves only when they say so, so backoff, rate limiting and polling are tested without sleeping.
public struct SourceTiming: Sendable {
    /// A monotonic reading.
    public var now: @Sendable () -> Duration
    /// Sleeps for the duration on that clock; throws when the task is cancelled.
    public var sleep: @Sendable (Duration) async throws -> Void
    /// A random number in [0, 1) (backoff jitter, watch timeouts).
    public var random: @Sendable () -> Double

    public init(
        now: @escaping @Sendable () -> Duration, sleep: @escaping @Sendable (Duration) async throws -> Void,
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) {
        self.now = now
        self.sleep = sleep
        self.random = random
    }

    /// The process's monotonic clock.
    public static let live: SourceTiming = {
        let origin = ContinuousClock.now
        return SourceTiming(now: { ContinuousClock.now - origin }, sleep: { try await Task.sleep(for: $0) })
    }()
}

/// Exponential backoff with jitter, as client-go's reflector paces its list/watch retries
/// (`wait.NewExponentialBackoffManager(800ms, 30s, 2m, 2.0, 1.0)`): the base delay doubles from `initial` up to
/// `cap`, each delay is stretched by up to `jitter` times itself (so [30 s, 60 s) once capped), and the sequence
/// starts over when no backoff was asked for during `resetAfter`.
public struct BackoffPolicy: Sendable {
    public var initial: Duration = .milliseconds(800)
    public var cap: Duration = .seconds(30)
    public var factor: Double = 2
    /// Each delay is stretched by a random fraction of itself up to this.
    public var jitter: Double = 1.0
    /// A quiet period after which the next delay is `initial` again.
    public var resetAfter: Duration = .seconds(120)

    public init(
        initial: Duration = .milliseconds(800), cap: Duration = .seconds(30), factor: Double = 2, jitter: Double = 1.0,
        resetAfter: Duration = .seconds(120)
    ) {
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self.resetAfter = resetAfter
    }

    /// Delay before retry number `attempt` (0-based) of one streak.
    public func delay(attempt: Int, random: Double = Double.random(in: 0..<1)) -> Duration {
        let base = min(initial.seconds * pow(factor, Double(min(attempt, 62))), cap.seconds)
        return .nanoseconds(Int64(base * (1 + jitter * random) * 1e9))
    }
}

/// One loop's backoff state (client-go keeps one backoff manager per reflector).
struct Backoff: Sendable {
    let policy: BackoffPolicy
    let timing: SourceTiming
    private var attempt = 0
    private var lastStart: Duration?

    init(policy: BackoffPolicy, timing: SourceTiming) {
        self.policy = policy
        self.timing = timing
    }

    /// The next delay; the sequence restarts when the previous backoff began more than `resetAfter` ago.
    mutating func next() -> Duration {
        let now = timing.now()
        if let lastStart, now - lastStart > policy.resetAfter { attempt = 0 }
        lastStart = now
        defer { attempt += 1 }
        return policy.delay(attempt: attempt, random: timing.random())
    }

    /// Sleeps the next delay; false when cancelled during the sleep.
    mutating func sleep() async -> Bool {
        let delay = next()
        do {
            try await timing.sleep(delay)
            return true
        } catch {
            return false
        }
    }
}

/// A client-side token bucket in front of every request to the apiserver, list and watch alike, as client-go's
/// default rate limiter (`flowcontrol.NewTokenBucketRateLimiter(qps, burst)`, from `clientConnection.qps` and
/// `burst`): `burst` requests may go at once, then one every 1/qps seconds. qps <= 0 turns it off (client-go
/// builds no limiter for a negative qps).
public final class RequestRateLimiter: @unchecked Sendable {
    public let qps: Double
    public let burst: Int
    let timing: SourceTiming
    private let lock = NSLock()
    private var tokens: Double
    private var last: Duration?
    private var _waiting = 0
    private var _granted = 0

    public init(qps: Double, burst: Int, timing: SourceTiming = .live) {
        self.qps = qps
        self.burst = max(1, burst)
        self.timing = timing
        self.tokens = Double(max(1, burst))
    }

    /// Requests let through so far.
    public var granted: Int { lock.withLock { _granted } }
    /// Requests waiting for a token now.
    public var waiting: Int { lock.withLock { _waiting } }

    /// Takes a token and says how long to wait for it (zero when one was there): the bucket refills at `qps` per
    /// second up to `burst`, and a wait reserves its token, so waiters are served in order.
    func reserve() -> Duration {
        guard qps > 0 else { return .zero }
        return lock.withLock {
            let now = timing.now()
            if let last { tokens = min(Double(burst), tokens + (now - last).seconds * qps) }
            last = now
            tokens -= 1
            return tokens >= 0 ? .zero : .nanoseconds(Int64(-tokens / qps * 1e9))
        }
    }

    /// Waits for a token; throws when the task is cancelled while waiting.
    func acquire() async throws {
        let delay = reserve()
        if delay > .zero {
            lock.withLock { _waiting += 1 }
            defer { lock.withLock { _waiting -= 1 } }
            try await timing.sleep(delay)
        }
        lock.withLock { _granted += 1 }
    }
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}
