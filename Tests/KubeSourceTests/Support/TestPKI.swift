import Crypto
import Foundation
import SwiftASN1
import X509

/// A throwaway CA with a server certificate for 127.0.0.1 and a client certificate for
/// `system:kube-proxy`, generated fresh for each test run.
struct TestPKI {
    let caPEM: String
    let serverCertPEM: String
    let serverKeyPEM: String
    let clientCertPEM: String
    let clientKeyPEM: String
    /// A client certificate signed by another CA: the server must reject it.
    let strangerCertPEM: String
    let strangerKeyPEM: String

    static let shared: TestPKI = try! TestPKI()

    private init() throws {
        let now = Date()
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("kube-natd test CA") }
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 3600, issuer: caName, subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(caKey))

        func leaf(
            _ cn: String, usage: ExtendedKeyUsage.Usage, issuer: DistinguishedName, issuerKey: P256.Signing.PrivateKey
        )
            throws -> (String, String)
        {
            let key = P256.Signing.PrivateKey()
            let cert = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
                notValidBefore: now - 3600, notValidAfter: now + 3600, issuer: issuer,
                subject: try DistinguishedName {
                    OrganizationName("system:node-proxier")
                    CommonName(cn)
                },
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage([usage])
                    SubjectAlternativeNames([
                        .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])), .dnsName("localhost"),
                    ])
                },
                issuerPrivateKey: .init(issuerKey))
            return (try cert.serializeAsPEM().pemString, key.pemRepresentation)
        }
        caPEM = try ca.serializeAsPEM().pemString
        (serverCertPEM, serverKeyPEM) = try leaf("127.0.0.1", usage: .serverAuth, issuer: caName, issuerKey: caKey)
        (clientCertPEM, clientKeyPEM) = try leaf(
            "system:kube-proxy", usage: .clientAuth, issuer: caName, issuerKey: caKey)
        let otherKey = P256.Signing.PrivateKey()
        let otherName = try DistinguishedName { CommonName("some other CA") }
        (strangerCertPEM, strangerKeyPEM) = try leaf(
            "system:kube-proxy", usage: .clientAuth, issuer: otherName, issuerKey: otherKey)
    }

    /// Subject of a DER certificate (`CN=...,O=...`), as the apiserver reads the user from it.
    static func subject(derBytes: [UInt8]) -> String? {
        guard let cert = try? Certificate(derEncoded: derBytes) else { return nil }
        return cert.subject.description
    }
}
