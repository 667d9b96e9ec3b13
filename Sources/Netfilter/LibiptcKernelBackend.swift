import Foundation
import KubeModel
import Ruleset

/// The libiptc backend behind the common protocol: legacy x_tables hosts, one locked commit per table.
extension LibiptcBackend: KernelBackend {
    public var name: String { "libiptc" }

    public func apply(_ rulesets: [Ruleset]) throws -> ApplyReport {
        try self.apply(rulesets, changes: [])
    }

    /// One commit per table, each table's program patched from the kept one for the chains its family's change
    /// names (see `LibiptcBackend.apply(_:change:)`).
    public func apply(_ rulesets: [Ruleset], changes: [RulesetChange]) throws -> ApplyReport {
        var report = ApplyReport()
        for ruleset in rulesets {
            report.merge(try self.apply(ruleset, change: changes.first { $0.family == ruleset.family }))
        }
        return report
    }

    public func readOwned(family: IPFamily) throws -> OwnedState {
        var state = OwnedState(family: family)
        for table in Ownership.canaryTables where Cleanup.tableExists(table, family: family) {
            var chains: [String: ChainDigest] = [:]
            for c in try TableReader.chains(family: family, table: table) where Ownership.isReadBack(c.name) {
                chains[c.name] = ChainDigest(ruleCount: c.ruleCount, digest: c.digest)
            }
            state.tables[table] = chains
        }
        return state
    }

    public func expectedOwned(_ ruleset: Ruleset) throws -> OwnedState {
        var state = OwnedState(family: ruleset.family)
        for table in ruleset.tables {
            var chains: [String: ChainDigest] = [:]
            for c in try TableReader.expectedChains(family: ruleset.family, table: table) {
                chains[c.name] = ChainDigest(ruleCount: c.ruleCount, digest: c.digest)
            }
            state.tables[table.table] = chains
        }
        return state
    }

    public func ensureCanaries(family: IPFamily) throws {
        _ = try self.createCanaries(family: family)
    }

    public func cleanup(families: [IPFamily]) throws -> ApplyReport {
        var report = ApplyReport()
        for r in try Cleanup.run(families: families, lockTimeoutMilliseconds: self.lockTimeoutMilliseconds) {
            report.merge(r)
        }
        return report
    }

    public func prefetch(families: [IPFamily]) {
        self.pendingPrefetch = TablePrefetch(
            families: families, tables: [.filter, .nat], lockTimeoutMilliseconds: self.lockTimeoutMilliseconds)
    }
}
