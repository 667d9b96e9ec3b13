import Foundation
import Yams

/// Reads the parts of a kubeconfig file that kube-proxy uses: the current context's cluster and user.
enum Kubeconfig {
    static func load(path: String) throws(CredentialsError) -> ClusterCredentials {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
        else { throw .unreadableFile(path, purpose: "kubeconfig") }
        let root: [String: Any]
        do {
            guard let parsed = try Yams.load(yaml: text) as? [String: Any] else {
                throw CredentialsError.invalidKubeconfig(path, reason: "top level is not a mapping")
            }
            root = parsed
        } catch let e as CredentialsError {
            throw e
        } catch {
            throw .invalidKubeconfig(path, reason: "not valid YAML: \(error)")
        }
        // Relative file references are relative to the kubeconfig's directory, as clientcmd resolves them.
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        func resolvePath(_ p: String) -> String {
            p.hasPrefix("/") ? p : base.appendingPathComponent(p).path
        }
        func named(_ list: String, _ name: String, _ inner: String) -> [String: Any]? {
            let entries = root[list] as? [[String: Any]] ?? []
            guard let entry = entries.first(where: { $0["name"] as? String == name }) else { return nil }
            return entry[inner] as? [String: Any] ?? [:]
        }

        guard let contextName = nonEmpty(root["current-context"] as? String) else {
            throw .invalidKubeconfig(path, reason: "current-context is not set")
        }
        guard let context = named("contexts", contextName, "context") else {
            throw .missingContext(path, name: contextName)
        }
        let clusterName = context["cluster"] as? String ?? ""
        guard let cluster = named("clusters", clusterName, "cluster") else {
            throw .missingCluster(path, name: clusterName)
        }
        guard let server = nonEmpty(cluster["server"] as? String) else {
            throw .invalidKubeconfig(path, reason: "cluster \"\(clusterName)\" has no server")
        }
        var creds = ClusterCredentials(server: server, origin: "kubeconfig \(path)")
        creds.insecureSkipTLSVerify = cluster["insecure-skip-tls-verify"] as? Bool ?? false
        creds.certificateAuthorityPEM = try bytes(
            inline: cluster["certificate-authority-data"], file: cluster["certificate-authority"],
            field: "clusters[\(clusterName)].certificate-authority", path: path, resolve: resolvePath)

        let userName = context["user"] as? String ?? ""
        if !userName.isEmpty {
            guard let user = named("users", userName, "user") else { throw .missingUser(path, name: userName) }
            for mechanism in ["exec", "auth-provider", "username"] where user[mechanism] != nil {
                throw .unsupportedAuth(path, user: userName, mechanism: mechanism)
            }
            creds.clientCertificatePEM = try bytes(
                inline: user["client-certificate-data"], file: user["client-certificate"],
                field: "users[\(userName)].client-certificate", path: path, resolve: resolvePath)
            creds.clientKeyPEM = try bytes(
                inline: user["client-key-data"], file: user["client-key"],
                field: "users[\(userName)].client-key", path: path, resolve: resolvePath)
            if (creds.clientCertificatePEM == nil) != (creds.clientKeyPEM == nil) {
                throw .invalidKubeconfig(
                    path, reason: "user \"\(userName)\" has a client certificate without a key, or a key without one")
            }
            // client-go prefers tokenFile over token: the file is the one that gets rotated.
            if let file = nonEmpty(user["tokenFile"] as? String) {
                creds.token = .file(resolvePath(file))
            } else if let token = nonEmpty(user["token"] as? String) {
                creds.token = .inline(token)
            }
        }
        return creds
    }

    /// `<field>-data` (inline base64) wins over `<field>` (a file), as in clientcmd.
    private static func bytes(
        inline: Any?, file: Any?, field: String, path: String, resolve: (String) -> String
    ) throws(CredentialsError) -> [UInt8]? {
        if let b64 = nonEmpty(inline as? String) {
            guard let data = Data(base64Encoded: b64, options: .ignoreUnknownCharacters) else {
                throw .invalidBase64(path, field: field + "-data")
            }
            return Array(data)
        }
        if let f = nonEmpty(file as? String) {
            let full = resolve(f)
            guard let data = FileManager.default.contents(atPath: full) else {
                throw .unreadableFile(full, purpose: field)
            }
            return Array(data)
        }
        return nil
    }
}
