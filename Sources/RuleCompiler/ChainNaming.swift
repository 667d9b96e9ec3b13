import Foundation
import KubeModel
import Ruleset

/// Upstream kube-proxy's chain names and probability text, to the letter.
public enum ChainNaming {
    /// `portProtoHash`: the first 16 characters of base32(sha256(servicePortName + protocol)).
    public static func portProtoHash(_ servicePortName: String, _ proto: String) -> String {
        ChainHash(servicePortName, proto).chainName("")
    }

    public static func serviceChain(_ spn: String, _ proto: String) -> String {
        ChainHash(spn, proto).chainName(Ownership.svcPrefix)
    }
    public static func localServiceChain(_ spn: String, _ proto: String) -> String {
        ChainHash(spn, proto).chainName(Ownership.svlPrefix)
    }
    public static func externalChain(_ spn: String, _ proto: String) -> String {
        ChainHash(spn, proto).chainName(Ownership.extPrefix)
    }
    public static func firewallChain(_ spn: String, _ proto: String) -> String {
        ChainHash(spn, proto).chainName(Ownership.fwPrefix)
    }

    /// `servicePortEndpointChainName`: KUBE-SEP- + hash of servicePortName + protocol + `ip:port`.
    public static func endpointChain(_ spn: String, _ proto: String, _ endpoint: String) -> String {
        ChainHash(spn, proto, endpoint).chainName(Ownership.sepPrefix)
    }

    /// `computeProbability`: `fmt.Sprintf("%0.10f", 1.0/float64(n))`.
    public static func probability(_ n: Int) -> String {
        if n > 0, n < precomputed.count { return precomputed[n] }
        return n <= 0 ? "<bad value>" : String(format: "%0.10f", 1.0 / Double(n))
    }

    private static let precomputed: [String] = (0..<1025).map {
        $0 == 0 ? "<bad value>" : String(format: "%0.10f", 1.0 / Double($0))
    }
}
