import Foundation
import Logging

/// Where the apiserver is and how to prove who we are to it: the outcome of kube-proxy's
/// credential search (flag, config file, `$KUBECONFIG`, in-cluster service account).
public struct ClusterCredentials: Sendable {
    /// Base URL of the apiserver, e.g. `https://10.0.0.1:6443` (may carry a path prefix).
    public var server: String
    /// PEM bytes of the CAs that sign the apiserver's certificate; nil means the system roots.
    public var certificateAuthorityPEM: [UInt8]?
    /// `insecure-skip-tls-verify`: the apiserver's certificate is not checked at all.
    public var insecureSkipTLSVerify: Bool
    /// PEM bytes of the client certificate chain, for client-certificate auth.
    public var clientCertificatePEM: [UInt8]?
    /// PEM bytes of the client certificate's private key.
    public var clientKeyPEM: [UInt8]?
    /// Bearer token, fixed or read from a file on each request.
    public var token: BearerToken?
    /// Where these credentials came from, for the startup log line.
    public var origin: String

    public init(
        server: String, certificateAuthorityPEM: [UInt8]? = nil, insecureSkipTLSVerify: Bool = false,
        clientCertificatePEM: [UInt8]? = nil, clientKeyPEM: [UInt8]? = nil, token: BearerToken? = nil,
        origin: String = "explicit"
    ) {
        self.server = server
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
        self.token = token
        self.origin = origin
    }
}

/// A bearer token: inline, or a file that is re-read for every request so that a rotated
/// projected service-account token is used from the next request on (kubelet rewrites it
/// long before expiry; the file is a few hundred bytes, and watches make few requests).
public enum BearerToken: Sendable, Equatable {
    case inline(String)
    case file(String)

    /// The token to send now.
    public func current() throws(CredentialsError) -> String {
        switch self {
        case .inline(let t):
            return t
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path),
                let text = String(data: data, encoding: .utf8)
            else { throw .unreadableFile(path, purpose: "bearer token") }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if token.isEmpty { throw .emptyTokenFile(path) }
            return token
        }
    }
}

/// Why no usable credentials were found; each case says what the operator can change.
public enum CredentialsError: Error, CustomStringConvertible, Equatable {
    case unreadableFile(String, purpose: String)
    case emptyTokenFile(String)
    case invalidKubeconfig(String, reason: String)
    case missingContext(String, name: String)
    case missingCluster(String, name: String)
    case missingUser(String, name: String)
    case unsupportedAuth(String, user: String, mechanism: String)
    case notInCluster
    case invalidBase64(String, field: String)
    case invalidPEM(String)

    public var description: String {
        switch self {
        case .unreadableFile(let path, let purpose):
            return "cannot read \(purpose) file \(path): check the path and that kube-natd may read it"
        case .emptyTokenFile(let path):
            return "bearer token file \(path) is empty: is the service-account token projected into the pod?"
        case .invalidKubeconfig(let path, let reason):
            return "kubeconfig \(path): \(reason)"
        case .missingContext(let path, let name):
            return "kubeconfig \(path): current-context \"\(name)\" is not in contexts[]: fix current-context"
        case .missingCluster(let path, let name):
            return "kubeconfig \(path): cluster \"\(name)\" named by the context is not in clusters[]"
        case .missingUser(let path, let name):
            return "kubeconfig \(path): user \"\(name)\" named by the context is not in users[]"
        case .unsupportedAuth(let path, let user, let mechanism):
            return "kubeconfig \(path): user \"\(user)\" uses \(mechanism), which kube-natd does not support: "
                + "use a client certificate, token or tokenFile"
        case .notInCluster:
            return "no kubeconfig given and not running in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
                + "are unset; pass --kubeconfig or set clientConnection.kubeconfig"
        case .invalidBase64(let path, let field):
            return "kubeconfig \(path): \(field) is not valid base64"
        case .invalidPEM(let what):
            return "\(what) is not a valid PEM certificate or key"
        }
    }
}

/// The inputs of kube-proxy's credential search, in order of precedence.
public struct CredentialSearch: Sendable {
    /// `--kubeconfig`.
    public var kubeconfigFlag: String?
    /// `clientConnection.kubeconfig` from the KubeProxyConfiguration file.
    public var configKubeconfig: String?
    /// `--master`: replaces the server URL of whatever credentials are found.
    public var masterOverride: String?
    /// The process environment (`KUBECONFIG`, `KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT`).
    public var environment: [String: String]
    /// Where the pod's service account is mounted.
    public var serviceAccountDirectory: String

    public init(
        kubeconfigFlag: String? = nil, configKubeconfig: String? = nil, masterOverride: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        serviceAccountDirectory: String = "/var/run/secrets/kubernetes.io/serviceaccount"
    ) {
        self.kubeconfigFlag = kubeconfigFlag
        self.configKubeconfig = configKubeconfig
        self.masterOverride = masterOverride
        self.environment = environment
        self.serviceAccountDirectory = serviceAccountDirectory
    }

    /// Finds credentials the way kube-proxy does: `--kubeconfig`, then `clientConnection.kubeconfig`,
    /// then `$KUBECONFIG` (first existing file of the list; files are not merged), then the pod's
    /// service account. `--master` alone (no kubeconfig anywhere) means that URL without
    /// credentials, as upstream's clientcmd does.
    public func resolve(logger: Logger) throws(CredentialsError) -> ClusterCredentials {
        var creds: ClusterCredentials
        if let path = nonEmpty(kubeconfigFlag) ?? nonEmpty(configKubeconfig) ?? kubeconfigFromEnvironment() {
            creds = try Kubeconfig.load(path: path)
        } else if let master = nonEmpty(masterOverride) {
            creds = ClusterCredentials(server: master, origin: "--master without kubeconfig")
        } else {
            creds = try inCluster()
        }
        if let master = nonEmpty(masterOverride) { creds.server = master }
        if creds.insecureSkipTLSVerify {
            logger.warning(
                "insecure-skip-tls-verify is set: the apiserver's certificate is not verified",
                metadata: ["server": "\(creds.server)", "origin": "\(creds.origin)"])
        }
        logger.info(
            "apiserver credentials found", metadata: ["server": "\(creds.server)", "origin": "\(creds.origin)"])
        return creds
    }

    private func kubeconfigFromEnvironment() -> String? {
        guard let list = nonEmpty(environment["KUBECONFIG"]) else { return nil }
        let paths = list.split(separator: ":").map(String.init).filter { !$0.isEmpty }
        return paths.first { FileManager.default.fileExists(atPath: $0) } ?? paths.first
    }

    private func inCluster() throws(CredentialsError) -> ClusterCredentials {
        guard let host = nonEmpty(environment["KUBERNETES_SERVICE_HOST"]),
            let port = nonEmpty(environment["KUBERNETES_SERVICE_PORT"])
        else { throw .notInCluster }
        let dir = serviceAccountDirectory
        let tokenPath = dir + "/token"
        guard FileManager.default.isReadableFile(atPath: tokenPath) else {
            throw .unreadableFile(tokenPath, purpose: "service-account token")
        }
        let caPath = dir + "/ca.crt"
        guard let ca = FileManager.default.contents(atPath: caPath) else {
            throw .unreadableFile(caPath, purpose: "service-account CA")
        }
        // IPv6 literals need brackets in a URL, as rest.InClusterConfig does with net.JoinHostPort.
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return ClusterCredentials(
            server: "https://\(hostPart):\(port)", certificateAuthorityPEM: Array(ca), token: .file(tokenPath),
            origin: "in-cluster service account \(dir)")
    }
}

func nonEmpty(_ s: String?) -> String? {
    guard let s, !s.isEmpty else { return nil }
    return s
}
