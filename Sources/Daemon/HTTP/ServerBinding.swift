import Foundation
import Logging

/// How the daemon's healthz and metrics servers come up, as kube-proxy's `serveHealthz`/`serveMetrics` do:
/// when the address cannot be bound, `bindAddressHardFail` makes that fatal (the daemon exits non-zero);
/// otherwise the failure is logged and binding is tried again every 5 s (`wait.Until(fn, 5*time.Second)`)
/// in the background until it works or the daemon stops. The sleeper is injected so tests need no wall time.
public struct ServerBinding: Sendable {
    /// The pause between attempts; upstream's is 5 s.
    public var retryInterval: Duration
    /// Waits `retryInterval`; throws when cancelled.
    public var sleep: @Sendable (Duration) async throws -> Void

    public init(
        retryInterval: Duration = .seconds(5),
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) {
        self.retryInterval = retryInterval
        self.sleep = sleep
    }

    /// The server once bound, and the retrying task while it is not.
    public final class Slot<Server: Sendable>: @unchecked Sendable {
        private let lock = NSLock()
        private var server: Server?
        private var retry: Task<Void, Never>?

        /// The bound server (nil while it is still being retried).
        public var current: Server? { self.lock.withLock { self.server } }

        func set(_ server: Server) { self.lock.withLock { self.server = server } }
        func set(retry: Task<Void, Never>) { self.lock.withLock { self.retry = retry } }

        /// Waits until the retrying (if any) has ended, without stopping it.
        func retried() async {
            let task = self.lock.withLock { self.retry }
            await task?.value
        }

        /// Stops retrying; returns the server to stop, if one was bound.
        public func end() async -> Server? {
            let task = self.lock.withLock { self.retry }
            task?.cancel()
            await task?.value
            return self.current
        }
    }

    /// Binds with `bind`; on failure throws when `hardFail`, otherwise logs and keeps trying in the background.
    public func start<Server: Sendable>(
        _ what: String, address: String, hardFail: Bool, logger: Logger,
        bind: @escaping @Sendable () async throws -> Server
    ) async throws -> Slot<Server> {
        let slot = Slot<Server>()
        do {
            slot.set(try await bind())
            return slot
        } catch {
            if hardFail {
                logger.error("cannot serve \(what) on \(address): \(error) (bindAddressHardFail: exiting)")
                throw error
            }
            logger.error(
                "cannot serve \(what) on \(address): \(error); trying again every \(self.retryInterval)")
        }
        let (interval, sleep) = (self.retryInterval, self.sleep)
        slot.set(
            retry: Task {
                while !Task.isCancelled {
                    do { try await sleep(interval) } catch { return }
                    do {
                        slot.set(try await bind())
                        logger.info("serving \(what) on \(address) after retrying")
                        return
                    } catch {
                        logger.warning("cannot serve \(what) on \(address) yet: \(error)")
                    }
                }
            })
        return slot
    }
}
