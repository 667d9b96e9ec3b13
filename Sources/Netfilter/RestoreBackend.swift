import KubeModel
import Ruleset

/// Feeds the rendered text to `iptables-restore --noflush` (legacy or nft), as upstream kube-proxy does.
///
/// Stale service chains are found with `iptables-save -t TABLE` and deleted with `-X` in the same payload;
/// base-chain jumps are ensured afterwards with `iptables -C` / `-I`, as upstream's `EnsureRule(Prepend)`.
public struct RestoreBackend: RulesetBackend {
    public var mode: HostMode

    public init(mode: HostMode) { self.mode = mode }

    func tool(_ family: IPFamily, _ suffix: String) -> String {
        (family == .ipv4 ? "iptables" : "ip6tables") + "-" + self.mode.rawValue + suffix
    }

    public func apply(_ ruleset: Ruleset) throws -> ApplyReport {
        var payload = ruleset
        var report = ApplyReport()
        for i in payload.tables.indices {
            let table = payload.tables[i]
            let save = try Command.run([self.tool(ruleset.family, "-save"), "-t", table.table.rawValue])
            guard save.status == 0 else {
                throw NetfilterError.command(
                    "\(self.tool(ruleset.family, "-save")) -t \(table.table.rawValue)",
                    status: save.status, stderr: save.stderr)
            }
            let declared = Set(table.chains.map(\.name))
            var deleted = table.deletedChains
            for line in save.stdout.split(separator: "\n") where line.hasPrefix(":") {
                let name = String(line.dropFirst().prefix { $0 != " " })
                if Ownership.isServiceChain(name), !declared.contains(name), !deleted.contains(name) {
                    deleted.append(name)
                }
            }
            payload.tables[i].deletedChains = deleted
            payload.tables[i].baseJumps = []
            var r = ApplyReport.TableReport(family: ruleset.family, table: table.table)
            r.rulesAppended = table.ruleCount
            r.chainsDeleted = deleted.count
            report.tables.append(r)
        }
        let text = TextRenderer.renderBytes(payload)
        let restore = self.tool(ruleset.family, "-restore")
        // Like upstream, wait for /run/xtables.lock (`-w 5 -W 100000`) rather than fail when another agent holds it.
        let out = try Command.run([restore, "-w", "5", "-W", "100000", "--noflush"], input: text)
        guard out.status == 0 else {
            throw NetfilterError.command("\(restore) --noflush", status: out.status, stderr: out.stderr)
        }
        let binary = self.tool(ruleset.family, "")
        for (i, table) in ruleset.tables.enumerated() {
            // Prepending each missing jump in reverse leaves them first, in the given order, on a fresh chain.
            for jump in table.baseJumps.reversed() {
                let args = Self.arguments(jump.rule)
                let check = try Command.run([binary, "-w", "-t", table.table.rawValue, "-C", jump.baseChain] + args)
                if check.status == 0 { continue }
                let insert = try Command.run([binary, "-w", "-t", table.table.rawValue, "-I", jump.baseChain] + args)
                guard insert.status == 0 else {
                    throw NetfilterError.command(
                        "\(binary) -t \(table.table.rawValue) -I \(jump.baseChain)",
                        status: insert.status, stderr: insert.stderr)
                }
                report.tables[i].jumpsInserted += 1
            }
        }
        report.text = String(decoding: text, as: UTF8.self)
        return report
    }

    /// A rule as an argv (the rendered `-A CHAIN ...` line, split the way iptables-restore would).
    static func arguments(_ rule: Rule) -> [String] {
        let line = TextRenderer.line(chain: "X", rule: rule)
        var args: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        var inToken = false
        for ch in line {
            if escaped {
                current.append(ch)
                escaped = false
            } else if ch == "\\" && quoted {
                escaped = true
            } else if ch == "\"" {
                quoted.toggle()
                inToken = true
            } else if ch == " " && !quoted {
                if inToken { args.append(current) }
                current = ""
                inToken = false
            } else {
                current.append(ch)
                inToken = true
            }
        }
        if inToken { args.append(current) }
        return Array(args.dropFirst(2))  // "-A X"
    }
}
