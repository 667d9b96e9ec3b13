import Foundation
import KubeSource
import Logging
import XCTest

/// Credentials as they reach the wire: bearer tokens (inline and rotated files), TLS with the
/// cluster CA, client certificates, insecure-skip-tls-verify.
final class AuthTests: XCTestCase {
    let pki = TestPKI.shared

    func testBearerTokenIsSentOnListAndWatch() async throws {
        let cluster = FakeCluster()
        cluster.requireAuthorization("Bearer abc.def.ghi")
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        try await withSource(ClusterCredentials(server: server.url, token: .inline("abc.def.ghi"))) { log in
            await log.wait(for: "synced Service")
            await log.wait { _ in server.requests.contains { $0.isWatch } }
        }
        XCTAssertTrue(server.requests.allSatisfy { $0.authorization == "Bearer abc.def.ghi" })
    }

    func testRotatedTokenFileIsUsedFromTheNextRequest() async throws {
        let tokenPath = try tempFile("token", "token-one\n")
        let cluster = FakeCluster()
        cluster.requireAuthorization("Bearer token-one")
        cluster.watch("/api/v1/services", .stream([.pause(milliseconds: 100), .end]))
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        try await withSource(ClusterCredentials(server: server.url, token: .file(tokenPath))) { log in
            await log.wait(for: "synced Service")
            // kubelet rotates the projected token; the apiserver stops accepting the old one.
            try "token-two\n".write(toFile: tokenPath, atomically: true, encoding: .utf8)
            cluster.requireAuthorization("Bearer token-two")
            await log.wait { _ in
                server.requests.contains {
                    $0.path == "/api/v1/services" && $0.isWatch && $0.authorization == "Bearer token-two"
                }
            }
        }
        let watches = server.requests.filter { $0.path == "/api/v1/services" && $0.isWatch }
        XCTAssertEqual(watches.first?.authorization, "Bearer token-one")
        XCTAssertEqual(watches.last?.authorization, "Bearer token-two")
    }

    func testTLSWithClusterCAAndClientCertificate() async throws {
        let cluster = FakeCluster()
        cluster.requireClientSubject("CN=system:kube-proxy")
        let server = try await cluster.start(tls: true)
        defer { Task { await server.stop() } }
        let creds = ClusterCredentials(
            server: server.url, certificateAuthorityPEM: Array(pki.caPEM.utf8),
            clientCertificatePEM: Array(pki.clientCertPEM.utf8), clientKeyPEM: Array(pki.clientKeyPEM.utf8))
        try await withSource(creds) { log in
            await log.wait(for: "synced Service")
            await log.wait(for: "synced EndpointSlice")
        }
        XCTAssertTrue(server.requests.allSatisfy { $0.clientSubject?.contains("CN=system:kube-proxy") == true })
    }

    func testUnknownServerCertificateIsRejected() async throws {
        let cluster = FakeCluster()
        let server = try await cluster.start(tls: true)
        defer { Task { await server.stop() } }
        let capture = LogCapture()
        // No CA: the system roots do not know the test CA.
        let clock = TestTiming()
        try await withSource(
            ClusterCredentials(server: server.url), options: .onTestClock(clock), logger: capture.logger
        ) { log in
            // Both loops (Services, EndpointSlice discovery) failed and sleep their backoff: nothing got through.
            await eventually("both loops backing off") {
                clock.sleeping == 2 && capture.count(.warning, containing: "list/watch Service failed") == 1
            }
            XCTAssertEqual(log.lines, [])
        }
        XCTAssertEqual(server.requests.count, 0)
    }

    func testInsecureSkipTLSVerifyAcceptsAnyServerCertificate() async throws {
        let cluster = FakeCluster()
        let server = try await cluster.start(tls: true)
        defer { Task { await server.stop() } }
        try await withSource(ClusterCredentials(server: server.url, insecureSkipTLSVerify: true, token: .inline("t"))) {
            log in
            await log.wait(for: "synced Service")
        }
    }

    func testClientCertificateFromAnotherCAIsRejectedByTheServer() async throws {
        let cluster = FakeCluster()
        let server = try await cluster.start(tls: true)
        defer { Task { await server.stop() } }
        let capture = LogCapture()
        let creds = ClusterCredentials(
            server: server.url, certificateAuthorityPEM: Array(pki.caPEM.utf8),
            clientCertificatePEM: Array(pki.strangerCertPEM.utf8), clientKeyPEM: Array(pki.strangerKeyPEM.utf8))
        try await withSource(creds, logger: capture.logger) { log in
            await log.wait { _ in capture.count(.warning, containing: "list/watch Service failed") == 1 }
            XCTAssertEqual(log.lines, [])
        }
        XCTAssertEqual(server.requests.count, 0)
    }

    func testUnauthorizedNamesTheFixInTheLog() async throws {
        let cluster = FakeCluster()
        cluster.requireAuthorization("Bearer right")
        let server = try await cluster.start()
        defer { Task { await server.stop() } }
        let capture = LogCapture()
        try await withSource(ClusterCredentials(server: server.url, token: .inline("wrong")), logger: capture.logger) {
            log in
            await log.wait { _ in capture.count(.warning, containing: "401 Unauthorized") >= 1 }
            // Several retries later, still one line for the streak.
            await log.wait { _ in server.requests.filter { $0.path == "/api/v1/services" }.count >= 3 }
            XCTAssertEqual(log.lines, [])
        }
        XCTAssertEqual(capture.count(.warning, containing: "list/watch Service failed"), 1)
        XCTAssertGreaterThanOrEqual(capture.count(.warning, containing: "token or client certificate was rejected"), 1)
    }
}
