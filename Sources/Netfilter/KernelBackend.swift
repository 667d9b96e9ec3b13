import KubeModel
import Ruleset

/// How rules reach the kernel. Every backend (libiptc, libnftnl, restore, text) implements all of it, so the sync
/// path, drift checks, canaries and `--cleanup` work the same through any of them; no caller asks which one it has.
///
/// A backend touches only what `Ownership` says kube-natd owns, plus the rules a ruleset only ensures
/// (`EnsuredRule`): it never flushes a base chain, changes a policy, or removes a rule it did not write.
public protocol KernelBackend: AnyObject {
    /// For logs and metrics: `libiptc`, `libnftnl`, `iptables-nft-restore`, `text`.
    var name: String { get }

    /// Makes the kernel hold exactly these rulesets' owned chains (at most one ruleset per family) and says what
    /// changed. Each transaction is all or nothing (one table for x_tables, one batch for nf_tables): when this
    /// throws, the transaction that failed left the kernel as it was.
    func apply(_ rulesets: [Ruleset]) throws -> ApplyReport

    /// `apply`, told what changed in each ruleset since the compile before it (`RuleCompiler.lastChange`; a
    /// ruleset without a change, or with `everything`, is new). A backend that keeps per-chain work between
    /// applies redoes only the changed chains; the others ignore `changes` (the default).
    func apply(_ rulesets: [Ruleset], changes: [RulesetChange]) throws -> ApplyReport

    /// What the kernel holds now of kube-natd's chains in one family: every owned chain (fixed, per-service,
    /// canary) of every table, each with a digest in this backend's own encoding.
    func readOwned(family: IPFamily) throws -> OwnedState

    /// What `readOwned` shows of the ruleset's declared chains once the ruleset is applied (drift is the
    /// difference). Computed without the kernel where the backend can; a backend that can only learn its encoding
    /// from the kernel (restore) answers from what it read back after its last apply of this ruleset.
    func expectedOwned(_ ruleset: Ruleset) throws -> OwnedState

    /// Creates the empty canary chain in each of `Ownership.canaryTables` where it is missing.
    func ensureCanaries(family: IPFamily) throws

    /// Removes everything kube-natd owns in either layout (fixed and per-service chains, canaries, its base-chain
    /// jumps) from each family, and nothing else.
    func cleanup(families: [IPFamily]) throws -> ApplyReport

    /// A hint before a compile: start reading what the next apply will compare against (on another core), so
    /// the apply only compares. Backends that gain nothing from it ignore it.
    func prefetch(families: [IPFamily])
}

extension KernelBackend {
    public func prefetch(families: [IPFamily]) {}
    public func apply(_ rulesets: [Ruleset], changes: [RulesetChange]) throws -> ApplyReport {
        try self.apply(rulesets)
    }
}

/// One owned chain as a backend sees it: its rule count and a digest of its rules (matches and targets, not
/// counters), comparable only with digests of the same backend.
public struct ChainDigest: Hashable, Sendable {
    public var ruleCount: Int
    public var digest: UInt64
    public init(ruleCount: Int, digest: UInt64) {
        self.ruleCount = ruleCount
        self.digest = digest
    }
}

/// kube-natd's chains in one family, per table, by name.
public struct OwnedState: Equatable, Sendable {
    public var family: IPFamily
    public var tables: [Table: [String: ChainDigest]]
    public init(family: IPFamily, tables: [Table: [String: ChainDigest]] = [:]) {
        self.family = family
        self.tables = tables
    }

    /// Does the table hold the canary chain?
    public func hasCanary(_ table: Table) -> Bool { self.tables[table]?[Ownership.canary] != nil }
}
