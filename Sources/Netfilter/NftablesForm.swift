import CNftables

/// Which iptables-nft release's expressions kube-natd writes, so that the host's own `iptables-nft` reads
/// kube-natd's rules as its own (reference nftables.md §a.7): the tool of 1.8.7 cannot parse the native port and
/// mark matches 1.8.8 introduced, and 1.8.10 changed the order and encoding of header fields.
public enum NftablesForm: String, Sendable, CaseIterable, CustomStringConvertible {
    /// 1.8.7 and older, or no usable `iptables --version`: ports and marks as xt matches (every release reads it).
    case compat = "1.8.7"
    /// 1.8.8 and 1.8.9: native `--dport` and `-m mark`; `-i -o -p -s -d`, `-p` as `meta l4proto`.
    case v1_8_8 = "1.8.9"
    /// 1.8.10 and newer: `-s -d -i -o -p`, and IPv4 `-p` as a load of the header's protocol byte.
    case v1_8_10 = "1.8.10"

    /// The form for the host's iptables version (nil: unknown, the form every release reads).
    public init(hostVersion: IptablesVersion?) {
        guard let v = hostVersion else {
            self = .compat
            return
        }
        if v >= IptablesVersion(1, 8, 10) {
            self = .v1_8_10
        } else if v >= IptablesVersion(1, 8, 8) {
            self = .v1_8_8
        } else {
            self = .compat
        }
    }

    /// A release number (`1.8.7`, `1.8.9`, `1.8.11`...) or a form's name (`compat`).
    public init?(name: String) {
        if name == "compat" {
            self = .compat
            return
        }
        guard let v = IptablesVersion(parsing: "v" + name) else { return nil }
        self.init(hostVersion: v)
    }

    /// `KNAT_NFT_FORM` (tests) when set, else the host's `iptables --version`; with the reason for logs.
    public static func detect(environment: [String: String]) -> (form: NftablesForm, reason: String) {
        if let name = environment["KNAT_NFT_FORM"], !name.isEmpty {
            if let form = NftablesForm(name: name) { return (form, "KNAT_NFT_FORM=\(name)") }
        }
        let version = IptablesVersion.detect()
        let form = NftablesForm(hostVersion: version)
        return (form, version.map { "host iptables \($0)" } ?? "no iptables version found")
    }

    var cValue: knft_form {
        switch self {
        case .compat: KNFT_FORM_COMPAT
        case .v1_8_8: KNFT_FORM_1_8_8
        case .v1_8_10: KNFT_FORM_1_8_10
        }
    }

    public var description: String {
        switch self {
        case .compat: "all-compat (iptables <= 1.8.7)"
        case .v1_8_8: "iptables 1.8.8/1.8.9"
        case .v1_8_10: "iptables >= 1.8.10"
        }
    }
}
