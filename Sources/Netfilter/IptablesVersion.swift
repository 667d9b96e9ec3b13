/// The host's `iptables --version`: which rule encodings its tools write and read (nf_tables backend, reference
/// nftables.md §a.7) and whether `MASQUERADE --random-fully` is available (kube-proxy: iptables >= 1.6.2).
public struct IptablesVersion: Comparable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var patch: Int
    /// The `(nf_tables)` / `(legacy)` suffix; nil when the tool printed none (before 1.8).
    public var mode: HostMode?

    public init(_ major: Int, _ minor: Int, _ patch: Int, mode: HostMode? = nil) {
        self.major = major
        self.minor = minor
        self.patch = patch
        self.mode = mode
    }

    /// Parses `iptables v1.8.9 (nf_tables)`; nil for anything else.
    public init?(parsing text: String) {
        guard let v = text.split(separator: " ").first(where: { $0.hasPrefix("v") }) else { return nil }
        let numbers = v.dropFirst().split(separator: ".").map { Int($0) }
        guard numbers.count == 3, let a = numbers[0], let b = numbers[1], let c = numbers[2] else { return nil }
        self.init(a, b, c, mode: text.contains("(nf_tables)") ? .nft : text.contains("(legacy)") ? .legacy : nil)
    }

    /// Runs `iptables --version` (nil when it is missing or prints something else).
    public static func detect() -> IptablesVersion? {
        guard let out = try? Command.run(["iptables", "--version"]), out.status == 0 else { return nil }
        return IptablesVersion(parsing: out.stdout)
    }

    /// kube-proxy uses `--random-fully` from iptables 1.6.2 on (`iptablesRandomFullyVersion`).
    public var supportsRandomFully: Bool { self >= IptablesVersion(1, 6, 2) }

    public static func < (a: IptablesVersion, b: IptablesVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }

    /// Equal versions (the mode suffix aside).
    public static func == (a: IptablesVersion, b: IptablesVersion) -> Bool {
        (a.major, a.minor, a.patch) == (b.major, b.minor, b.patch)
    }

    public var description: String {
        "\(self.major).\(self.minor).\(self.patch)" + (self.mode.map { " (\($0 == .nft ? "nf_tables" : "legacy"))" } ?? "")
    }
}
