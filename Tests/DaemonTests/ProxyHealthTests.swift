import Daemon
import KubeModel
import XCTest

final class ProxyHealthTests: XCTestCase {
    func testGoTimeFormatTrimsFractionAndPrintsUTC() {
        XCTAssertEqual(
            WallTime(secondsSince1970: 1_704_067_200, nanoseconds: 1).description,
            "2024-01-01 00:00:00.000000001 +0000 UTC")
        XCTAssertEqual(
            WallTime(secondsSince1970: 1_704_067_200, nanoseconds: 120_000_000).description,
            "2024-01-01 00:00:00.12 +0000 UTC")
        XCTAssertEqual(WallTime(secondsSince1970: 1_718_454_896).description, "2024-06-15 12:34:56 +0000 UTC")
    }

    func testHealthyWhileStartingUpEvenWithQueuedUpdates() {
        let clock = TestClock()
        let health = ProxyHealth(healthTimeout: .seconds(60), clock: clock.read)
        health.queuedUpdate(family: .ipv4)
        clock.advance(.seconds(3600))
        // Upstream only judges families that have synced once; the sync loop calls updated() at start.
        XCTAssertTrue(health.isHealthy())
        XCTAssertNil(health.status().lastUpdated)
    }

    func testQueuedUpdateOlderThanTimeoutWithoutSyncIsUnhealthy() {
        let clock = TestClock()
        let health = ProxyHealth(syncPeriod: .seconds(30), clock: clock.read)
        XCTAssertEqual(health.healthTimeout, .seconds(60))
        let start = clock.now
        health.updated(family: .ipv4)
        clock.advance(.seconds(10))
        health.queuedUpdate(family: .ipv4)
        clock.advance(.seconds(59))
        XCTAssertTrue(health.isHealthy(), "pending, but not late yet")
        clock.advance(.seconds(1))
        XCTAssertFalse(health.isHealthy(), "pending for exactly healthTimeout")
        XCTAssertEqual(health.status().lastUpdated, start)

        health.updated(family: .ipv4)
        XCTAssertTrue(health.isHealthy(), "a successful sync clears the pending update")
        XCTAssertEqual(health.status().lastUpdated, clock.now)
    }

    func testOnlyTheOldestPendingUpdateCounts() {
        let clock = TestClock()
        let health = ProxyHealth(healthTimeout: .seconds(60), clock: clock.read)
        health.updated(family: .ipv4)
        health.queuedUpdate(family: .ipv4)
        clock.advance(.seconds(50))
        health.queuedUpdate(family: .ipv4)  // must not restart the timer
        clock.advance(.seconds(20))
        XCTAssertFalse(health.isHealthy())
    }

    func testOneLateFamilyMakesTheProxyUnhealthy() {
        let clock = TestClock()
        let health = ProxyHealth(healthTimeout: .seconds(60), clock: clock.read)
        health.updated(family: .ipv4)
        health.updated(family: .ipv6)
        health.queuedUpdate(family: .ipv6)
        clock.advance(.seconds(30))
        health.queuedUpdate(family: .ipv4)
        health.updated(family: .ipv4)
        XCTAssertTrue(health.isHealthy())
        clock.advance(.seconds(30))
        XCTAssertFalse(health.isHealthy())
        health.updated(family: .ipv6)
        XCTAssertTrue(health.isHealthy())
    }

    func testExplicitTimesOverrideTheClock() {
        let health = ProxyHealth(healthTimeout: .seconds(60), clock: { WallTime(secondsSince1970: 0) })
        let t0 = WallTime(secondsSince1970: 1000)
        health.updated(family: .ipv4, at: t0)
        health.queuedUpdate(family: .ipv4, at: t0)
        XCTAssertTrue(health.isHealthy(now: t0.advanced(by: .seconds(59))))
        XCTAssertFalse(health.isHealthy(now: t0.advanced(by: .seconds(61))))
    }

    func testNodeEligibilityFollowsUpstreamRule() {
        XCTAssertTrue(ProxyHealth.isNodeEligible(beingDeleted: false, taintKeys: ["node.kubernetes.io/unschedulable"]))
        XCTAssertFalse(ProxyHealth.isNodeEligible(beingDeleted: true, taintKeys: []))
        XCTAssertFalse(ProxyHealth.isNodeEligible(beingDeleted: false, taintKeys: ["ToBeDeletedByClusterAutoscaler"]))
        let health = ProxyHealth(healthTimeout: .seconds(60))
        XCTAssertTrue(health.nodeEligible, "eligible until a node event says otherwise")
        health.nodeEligible = false
        XCTAssertFalse(health.nodeEligible)
        XCTAssertTrue(health.isHealthy(), "eligibility is not part of the proxy's own health")
    }
}
