import Foundation
@testable import KubeSource
import Logging
import XCTest

/// kube-proxy's credential search: --kubeconfig, clientConnection.kubeconfig, $KUBECONFIG,
/// in-cluster, --master; and the kubeconfig fields it reads.
final class CredentialTests: XCTestCase {
    let pki = TestPKI.shared
    let logger = Logger(label: "test")

    func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }

    func kubeconfig(server: String, cluster: String, user: String, current: String = "ctx") -> String {
        """
        apiVersion: v1
        kind: Config
        preferences: {}
        current-context: \(current)
        contexts:
        - name: other
          context: {cluster: nowhere, user: nobody}
        - name: ctx
          context:
            cluster: kind-kind
            user: system:kube-proxy
            namespace: kube-system
        clusters:
        - name: nowhere
          cluster: {server: "https://192.0.2.1:6443"}
        - name: kind-kind
          cluster:
            server: \(server)
        \(cluster)
        users:
        - name: system:kube-proxy
          user:
        \(user)
        """
    }

    func indent(_ lines: [String]) -> String { lines.map { "    " + $0 }.joined(separator: "\n") }

    func testKubeconfigWithInlineDataAndToken() throws {
        let path = try tempFile(
            "kubeconfig",
            kubeconfig(
                server: "https://10.0.0.1:6443",
                cluster: indent(["certificate-authority-data: \(b64(pki.caPEM))"]),
                user: indent([
                    "client-certificate-data: \(b64(pki.clientCertPEM))", "client-key-data: \(b64(pki.clientKeyPEM))",
                    "token: inline-token",
                ])))
        let creds = try CredentialSearch(kubeconfigFlag: path, environment: [:]).resolve(logger: logger)
        XCTAssertEqual(creds.server, "https://10.0.0.1:6443")
        XCTAssertEqual(creds.certificateAuthorityPEM, Array(pki.caPEM.utf8))
        XCTAssertEqual(creds.clientCertificatePEM, Array(pki.clientCertPEM.utf8))
        XCTAssertEqual(creds.clientKeyPEM, Array(pki.clientKeyPEM.utf8))
        XCTAssertEqual(creds.token, .inline("inline-token"))
        XCTAssertFalse(creds.insecureSkipTLSVerify)
    }

    func testKubeconfigFilesAreResolvedRelativeToTheKubeconfig() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kube-natd-\(UUID().uuidString)")
        _ = try tempFile("ca.crt", pki.caPEM, in: dir)
        _ = try tempFile("client.crt", pki.clientCertPEM, in: dir)
        _ = try tempFile("client.key", pki.clientKeyPEM, in: dir)
        let tokenPath = try tempFile("token", "from-file\n", in: dir)
        let path = try tempFile(
            "kubeconfig",
            kubeconfig(
                server: "https://10.0.0.1:6443", cluster: indent(["certificate-authority: ca.crt"]),
                user: indent([
                    "client-certificate: client.crt", "client-key: \(dir.path)/client.key", "tokenFile: token",
                ])),
            in: dir)
        let creds = try CredentialSearch(configKubeconfig: path, environment: [:]).resolve(logger: logger)
        XCTAssertEqual(creds.certificateAuthorityPEM, Array(pki.caPEM.utf8))
        XCTAssertEqual(creds.clientCertificatePEM, Array(pki.clientCertPEM.utf8))
        XCTAssertEqual(creds.clientKeyPEM, Array(pki.clientKeyPEM.utf8))
        XCTAssertEqual(creds.token, .file(tokenPath))
        XCTAssertEqual(try creds.token?.current(), "from-file")
    }

    func testPrecedenceFlagThenConfigThenEnvironmentThenInCluster() throws {
        let flag = try tempFile(
            "kubeconfig", kubeconfig(server: "https://flag:6443", cluster: "", user: indent(["token: a"])))
        let config = try tempFile(
            "kubeconfig", kubeconfig(server: "https://config:6443", cluster: "", user: indent(["token: b"])))
        let env = try tempFile(
            "kubeconfig", kubeconfig(server: "https://env:6443", cluster: "", user: indent(["token: c"])))
        let sa = try makeServiceAccountDirectory()
        let inCluster = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
        let environment = inCluster.merging(["KUBECONFIG": "/nonexistent/config:\(env)"]) { a, _ in a }
        func server(_ s: CredentialSearch) throws -> String { try s.resolve(logger: logger).server }

        XCTAssertEqual(
            try server(
                .init(
                    kubeconfigFlag: flag, configKubeconfig: config, environment: environment,
                    serviceAccountDirectory: sa)),
            "https://flag:6443")
        XCTAssertEqual(
            try server(.init(configKubeconfig: config, environment: environment, serviceAccountDirectory: sa)),
            "https://config:6443")
        XCTAssertEqual(try server(.init(environment: environment, serviceAccountDirectory: sa)), "https://env:6443")
        XCTAssertEqual(try server(.init(environment: inCluster, serviceAccountDirectory: sa)), "https://10.96.0.1:443")
    }

    func testMasterOverridesTheServerAndAloneMeansNoCredentials() throws {
        let flag = try tempFile(
            "kubeconfig", kubeconfig(server: "https://flag:6443", cluster: "", user: indent(["token: a"])))
        let withConfig = try CredentialSearch(
            kubeconfigFlag: flag, masterOverride: "https://master:6443", environment: [:]
        )
        .resolve(logger: logger)
        XCTAssertEqual(withConfig.server, "https://master:6443")
        XCTAssertEqual(withConfig.token, .inline("a"))

        let alone = try CredentialSearch(masterOverride: "http://127.0.0.1:8080", environment: [:]).resolve(
            logger: logger)
        XCTAssertEqual(alone.server, "http://127.0.0.1:8080")
        XCTAssertNil(alone.token)
        XCTAssertNil(alone.certificateAuthorityPEM)
    }

    func testInClusterUsesTheServiceAccountAndBracketsIPv6() throws {
        let sa = try makeServiceAccountDirectory()
        let creds = try CredentialSearch(
            environment: ["KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443"],
            serviceAccountDirectory: sa
        ).resolve(logger: logger)
        XCTAssertEqual(creds.server, "https://[fd00:10:96::1]:443")
        XCTAssertEqual(creds.token, .file(sa + "/token"))
        XCTAssertEqual(creds.certificateAuthorityPEM, Array(pki.caPEM.utf8))
    }

    func testOutsideAClusterWithoutKubeconfigIsAnActionableError() {
        XCTAssertThrowsError(
            try CredentialSearch(environment: [:], serviceAccountDirectory: "/nonexistent").resolve(logger: logger)
        ) {
            XCTAssertEqual($0 as? CredentialsError, .notInCluster)
            XCTAssertTrue("\($0)".contains("pass --kubeconfig"))
        }
    }

    func testKubeconfigErrorsNameTheFieldToFix() throws {
        let missingCtx = try tempFile(
            "kubeconfig", kubeconfig(server: "https://x", cluster: "", user: indent(["token: a"]), current: "prod"))
        XCTAssertThrowsError(try CredentialSearch(kubeconfigFlag: missingCtx, environment: [:]).resolve(logger: logger))
        {
            XCTAssertEqual($0 as? CredentialsError, .missingContext(missingCtx, name: "prod"))
        }
        let exec = try tempFile(
            "kubeconfig",
            kubeconfig(
                server: "https://x", cluster: "",
                user: indent(["exec:", "  command: aws", "  apiVersion: client.authentication.k8s.io/v1"])))
        XCTAssertThrowsError(try CredentialSearch(kubeconfigFlag: exec, environment: [:]).resolve(logger: logger)) {
            XCTAssertEqual(
                $0 as? CredentialsError, .unsupportedAuth(exec, user: "system:kube-proxy", mechanism: "exec"))
        }
        XCTAssertThrowsError(
            try CredentialSearch(kubeconfigFlag: "/nonexistent/kubeconfig", environment: [:]).resolve(logger: logger)
        ) {
            XCTAssertEqual($0 as? CredentialsError, .unreadableFile("/nonexistent/kubeconfig", purpose: "kubeconfig"))
        }
    }

    func testInsecureSkipTLSVerifyIsHonouredWithAWarning() throws {
        let path = try tempFile(
            "kubeconfig",
            kubeconfig(
                server: "https://10.0.0.1:6443", cluster: indent(["insecure-skip-tls-verify: true"]),
                user: indent(["token: a"])))
        let capture = LogCapture()
        let creds = try CredentialSearch(kubeconfigFlag: path, environment: [:]).resolve(logger: capture.logger)
        XCTAssertTrue(creds.insecureSkipTLSVerify)
        XCTAssertEqual(capture.count(.warning, containing: "insecure-skip-tls-verify"), 1)
    }

    func testUnusableCredentialsStopTheSourceAtStartWithTheReason() async {
        let logger = self.logger
        func startError(_ creds: ClusterCredentials) async -> String {
            let source = APIServerSource(credentials: creds, logger: logger, decode: TestObject.decode)
            do {
                try await source.run { _ in }
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        let badCA = await startError(
            ClusterCredentials(server: "https://127.0.0.1:1", certificateAuthorityPEM: Array("not a pem".utf8)))
        XCTAssertTrue(badCA.contains("not a valid PEM"), badCA)
        let badURL = await startError(ClusterCredentials(server: "ftp://apiserver"))
        XCTAssertTrue(badURL.contains("expected http(s)://host"), badURL)
    }

    // MARK: - End to end: found credentials against the TLS test apiserver

    func testKubeconfigClientCertificateReachesTheServer() async throws {
        let cluster = FakeCluster()
        cluster.requireClientSubject("CN=system:kube-proxy")
        let server = try await cluster.start(tls: true)
        defer { Task { await server.stop() } }
        let path = try tempFile(
            "kubeconfig",
            kubeconfig(
                server: server.url, cluster: indent(["certificate-authority-data: \(b64(pki.caPEM))"]),
                user: indent([
                    "client-certificate-data: \(b64(pki.clientCertPEM))", "client-key-data: \(b64(pki.clientKeyPEM))",
                ])))
        let creds = try CredentialSearch(environment: ["KUBECONFIG": path]).resolve(logger: logger)
        try await withSource(creds) { log in await log.wait(for: "synced Service") }
    }

    func testInClusterTokenAndCAReachTheServer() async throws {
        let cluster = FakeCluster()
        cluster.requireAuthorization("Bearer sa-token")
        let server = try await cluster.start(tls: true)
        defer { Task { await server.stop() } }
        let sa = try makeServiceAccountDirectory()
        let creds = try CredentialSearch(
            environment: ["KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "\(server.port)"],
            serviceAccountDirectory: sa
        ).resolve(logger: logger)
        try await withSource(creds) { log in await log.wait(for: "synced Service") }
    }

    func makeServiceAccountDirectory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kube-natd-sa-\(UUID().uuidString)")
        _ = try tempFile("ca.crt", pki.caPEM, in: dir)
        _ = try tempFile("token", "sa-token", in: dir)
        _ = try tempFile("namespace", "kube-system", in: dir)
        return dir.path
    }
}

final class BackoffTests: XCTestCase {
    func testDelaysAreClientGoReflectorBackoff() {
        // wait.NewExponentialBackoffManager(800ms, 30s, 2m, 2.0, 1.0): base doubles to a 30 s cap, then jitter
        // stretches each delay by up to itself.
        let policy = BackoffPolicy()
        XCTAssertEqual(policy.delay(attempt: 0, random: 0), .milliseconds(800))
        XCTAssertEqual(policy.delay(attempt: 1, random: 0), .milliseconds(1600))
        XCTAssertEqual(policy.delay(attempt: 2, random: 0.5), .milliseconds(4800))
        XCTAssertEqual(policy.delay(attempt: 10, random: 0), .seconds(30))
        XCTAssertEqual(policy.delay(attempt: 1000, random: 0.5), .seconds(45))
        let jittered = Set((0..<20).map { _ in policy.delay(attempt: 3) })
        XCTAssertGreaterThan(jittered.count, 1, "retries of many nodes must not line up")
    }

    func testTheSequenceStartsOverAfterTwoQuietMinutes() {
        let clock = TestTiming()
        var backoff = Backoff(policy: BackoffPolicy(), timing: clock.timing)
        XCTAssertEqual(backoff.next(), .milliseconds(800))
        XCTAssertEqual(backoff.next(), .milliseconds(1600))
        clock.advance(by: .seconds(120))
        XCTAssertEqual(backoff.next(), .milliseconds(3200), "two minutes exactly is not quiet enough")
        clock.advance(by: .seconds(121))
        XCTAssertEqual(backoff.next(), .milliseconds(800))
    }
}

final class RequestRateLimiterTests: XCTestCase {
    func testBurstGoesAtOnceThenOneTokenPerOneOverQPS() {
        let clock = TestTiming()
        let limiter = RequestRateLimiter(qps: 5, burst: 10, timing: clock.timing)
        for _ in 0..<10 { XCTAssertEqual(limiter.reserve(), .zero) }
        XCTAssertEqual(limiter.reserve(), .milliseconds(200))
        XCTAssertEqual(limiter.reserve(), .milliseconds(400), "a wait reserves its token: waiters queue")
        clock.advance(by: .seconds(10))
        // 10 s at 5/s refills far beyond the burst: the bucket holds at most 10 (minus the 2 owed).
        for _ in 0..<10 { XCTAssertEqual(limiter.reserve(), .zero) }
        XCTAssertEqual(limiter.reserve(), .milliseconds(200))
    }

    func testANegativeQPSTurnsLimitingOff() {
        let limiter = RequestRateLimiter(qps: -1, burst: 1, timing: TestTiming().timing)
        for _ in 0..<100 { XCTAssertEqual(limiter.reserve(), .zero) }
    }
}
