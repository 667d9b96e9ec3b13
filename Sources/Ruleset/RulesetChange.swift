import KubeModel

/// What changed in one family's ruleset since an earlier one, as the compiler knows it: the chains (per table)
/// that were added, removed or rewritten. A backend that keeps per-chain work between applies (encodings,
/// digests) may redo only these chains when the ruleset it last applied is the change's `base`; any other
/// backend, or one that holds another ruleset, treats the ruleset as new (`everything`).
///
/// How a backend encodes and whether it compares the whole ruleset with the kernel are separate questions: a full
/// sync (start, drift, periodic) sets `full` and keeps `base`, so the encoder still redoes only the touched chains
/// while the kernel side takes no shortcut the change would allow (`comparesAll`).
///
/// Base-chain jumps, ensured rules and deleted fixed chains are small and are not tracked here: a backend
/// treats them as changed on every apply.
public struct RulesetChange: Hashable, Sendable {
    public var family: IPFamily
    /// Names the ruleset this change leads to (unique per compile, across compilers).
    public var id: UInt64
    /// The ruleset the change starts from; nil: everything changed (a full compile, or nothing known).
    public var base: UInt64?
    /// Per table, the chains added, removed or rewritten since `base`. A table not listed: none of its chains
    /// changed. Meaningless when `base` is nil.
    public var touched: [Table: Set<String>]
    /// A full sync: the backend compares every chain with the kernel, not only the touched ones. `base` and
    /// `touched` still say what the encoding kept from `base` may be reused for.
    public var full: Bool

    public init(family: IPFamily, id: UInt64, base: UInt64?, touched: [Table: Set<String>] = [:], full: Bool = false) {
        self.family = family
        self.id = id
        self.base = base
        self.touched = touched
        self.full = full
    }

    /// A ruleset compiled anew: nothing may be reused from an earlier one.
    public static func everything(_ family: IPFamily, id: UInt64) -> RulesetChange {
        RulesetChange(family: family, id: id, base: nil)
    }

    /// Nothing may be reused from an earlier ruleset (no base): encode everything.
    public var isEverything: Bool { self.base == nil }

    /// Whether the backend compares the whole ruleset with the kernel (a full sync, or nothing known).
    public var comparesAll: Bool { self.full || self.base == nil }

    /// The same ruleset marked as wholly changed: nothing reused, everything compared.
    public var asEverything: RulesetChange { .everything(self.family, id: self.id) }

    /// The same change for a full sync (start, drift, periodic resync): everything compared with the kernel, the
    /// encoding of `base` still reused outside the touched chains.
    public var asFullSync: RulesetChange {
        var change = self
        change.full = true
        return change
    }

    /// A fresh id for a compiled ruleset.
    public static func newID() -> UInt64 { UInt64.random(in: 1...UInt64.max) }
}
