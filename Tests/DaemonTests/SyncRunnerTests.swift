import Foundation
import KubeModel
import XCTest

@testable import Daemon

/// kube-proxy's BoundedFrequencyRunner semantics. Assertions are upper bounds on how often syncs run and
/// bounded waits for them to happen, not timing targets.
final class SyncRunnerTests: XCTestCase {
    final class Log: @unchecked Sendable {
        let lock = NSLock()
        var runs: [(full: Bool, at: ContinuousClock.Instant)] = []
        var fail = 0
        func add(_ full: Bool) -> Bool {
            lock.lock(); defer { lock.unlock() }
            runs.append((full, .now))
            if fail > 0 { fail -= 1; return false }
            return true
        }
        var count: Int { lock.lock(); defer { lock.unlock() }; return runs.count }
        var snapshot: [(full: Bool, at: ContinuousClock.Instant)] { lock.lock(); defer { lock.unlock() }; return runs }
    }

    func start(_ runner: SyncRunner, _ log: Log, ready: @escaping @Sendable () -> Bool = { true }) -> Task<Void, Never> {
        Task { await runner.run(ready: ready, idle: {}, sync: { full in SyncRunner.Outcome(succeeded: log.add(full)) }) }
    }

    func waitUntil(_ what: String, timeout: Double = 5, _ cond: () -> Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        while !cond() && Date() < deadline { usleep(5_000) }
        XCTAssertTrue(cond(), "timed out waiting for \(what)")
    }

    func testNoSyncBeforeTheInitialListsThenAFullOne() {
        let runner = SyncRunner(minInterval: .milliseconds(50), maxInterval: .seconds(60))
        let log = Log()
        let ready = ManagedAtomicFlag()
        let task = start(runner, log, ready: { ready.value })
        usleep(200_000)
        XCTAssertEqual(log.count, 0, "synced before both initial lists were complete")
        ready.value = true
        waitUntil("the first sync") { log.count == 1 }
        XCTAssertEqual(log.snapshot.first?.full, true)
        task.cancel()
    }

    func testBurstsOfRequestsCoalesceAndRespectMinInterval() {
        let runner = SyncRunner(minInterval: .milliseconds(300), maxInterval: .seconds(60))
        let log = Log()
        let task = start(runner, log)
        waitUntil("the first sync") { log.count == 1 }
        for _ in 0..<100 { runner.request(); usleep(1_000) }
        waitUntil("the coalesced sync") { log.count == 2 }
        usleep(100_000)
        XCTAssertEqual(log.count, 2, "100 requests must coalesce into one sync")
        let runs = log.snapshot
        XCTAssertGreaterThanOrEqual(runs[1].at - runs[0].at, .milliseconds(300), "two syncs closer than minSyncPeriod")
        XCTAssertEqual(runs[1].full, false)
        task.cancel()
    }

    func testAFullSyncHappensEverySyncPeriodWithoutRequests() {
        let runner = SyncRunner(minInterval: .milliseconds(10), maxInterval: .milliseconds(300))
        let log = Log()
        let task = start(runner, log)
        waitUntil("three periodic syncs") { log.count >= 3 }
        XCTAssertTrue(log.snapshot.allSatisfy(\.full), "periodic syncs are full")
        task.cancel()
    }

    func testAFailedSyncIsRetriedWithBackoffAndTheRetryIsFull() {
        let runner = SyncRunner(minInterval: .milliseconds(100), maxInterval: .seconds(60))
        let log = Log()
        log.fail = 2
        let task = start(runner, log)
        waitUntil("two retries") { log.count >= 3 }
        let runs = log.snapshot
        XCTAssertTrue(runs.allSatisfy(\.full))
        // Backoff doubles from minSyncPeriod: 100 ms, then 200 ms.
        XCTAssertGreaterThanOrEqual(runs[1].at - runs[0].at, .milliseconds(100))
        XCTAssertGreaterThanOrEqual(runs[2].at - runs[1].at, .milliseconds(200))
        usleep(300_000)
        XCTAssertEqual(log.count, 3, "no more syncs once one succeeded and nothing was requested")
        task.cancel()
    }
}

/// A tiny thread-safe Bool for the tests.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var v = false
    var value: Bool {
        get { lock.lock(); defer { lock.unlock() }; return v }
        set { lock.lock(); v = newValue; lock.unlock() }
    }
}

final class ClusterStoreTests: XCTestCase {
    func svc(_ name: String, _ ip: String) -> Service {
        Service(name: ObjectName(namespace: "ns", name: name), clusterIPs: [IPAddress(ip)!], ports: [ServicePort(port: 80)])
    }

    func testReplaceCountsOnlyDifferencesAndGatesOnBothLists() {
        let store = ClusterStore()
        XCTAssertFalse(store.isInitialized)
        store.replace(.service, services: [svc("a", "10.0.0.1"), svc("b", "10.0.0.2")])
        store.markSynced(.service)
        XCTAssertFalse(store.isInitialized, "endpoints not listed yet")
        store.markSynced(.endpointSlice)
        XCTAssertTrue(store.isInitialized)
        XCTAssertEqual(store.take().serviceChanges, 2)
        store.replace(.service, services: [svc("a", "10.0.0.1"), svc("b", "10.0.0.3")])
        XCTAssertEqual(store.take().serviceChanges, 1, "only b changed")
        store.replace(.service, services: [svc("a", "10.0.0.1")])
        let snap = store.take()
        XCTAssertEqual(snap.serviceChanges, 1, "b went away")
        XCTAssertEqual(snap.state.services.count, 1)
    }

    func testTriggerTimesTravelToTheNextSync() {
        let store = ClusterStore()
        var slice = EndpointSlice(name: ObjectName(namespace: "ns", name: "a-1"), serviceName: "a")
        slice.lastChangeTriggerTime = "2026-11-22T10:00:00Z"
        store.upsert(slice)
        let snap = store.take()
        XCTAssertEqual(snap.triggerTimes.count, 1)
        XCTAssertEqual(snap.endpointChanges, 1)
        XCTAssertEqual(store.take().triggerTimes.count, 0, "observed once")
    }
}
