import Foundation
import KubeModel
import KubeSource
import ProxyConfig
import Ruleset
import XCTest

@testable import RuleCompiler

/// Upstream kube-proxy's own expectations as an independent oracle: every test of
/// `pkg/proxy/iptables/proxier_test.go` that states whole expected rules or packet flows, re-typed as data under
/// `Golden/upstream-iptables/<TestName>/` (see `Golden/README.md` for the format). Nothing here is written by
/// kube-natd: the expectations are upstream's, and there is no UPDATE_GOLDEN branch.
///
/// Rules are compared as upstream compares them (`assertIPTablesRulesEqual`): our restore payload (no base-chain
/// jumps, no ensured rules) goes through upstream's `sortIPTablesRules` (`upstreamSorted`), the expectation is
/// taken as written. A mismatch is reported chain by chain (the chain named, expected and actual rules shown);
/// when every chain agrees the whole sorted text must also be identical. Flows go through `PacketTracer.trace`,
/// upstream's tracer semantics, and both the output and the masquerade bit must be upstream's.
final class UpstreamIptablesOracleTests: XCTestCase {
    /// Where upstream and kube-natd disagree today, by `<case>: <expectation>` key, with the reason. Each entry
    /// must still fail: the test fails when a listed difference no longer occurs, so the list cannot go stale.
    static let knownDifferences: [String: String] = [:]

    /// What the suite holds, so that a lost case directory or flow line fails instead of passing quietly.
    static let expectedTests = 18
    static let expectedExpectations = 275

    static var root: URL {
        Bundle.module.url(forResource: "Golden", withExtension: nil)!.appendingPathComponent("upstream-iptables")
    }

    /// One mismatch, or one expectation checked.
    struct Outcome {
        var key: String
        var failure: String?
        /// False for a problem with the case itself (it does not load, an unknown file), which is no expectation.
        var isExpectation = true
    }

    func testUpstreamExpectationsHold() throws {
        let report = try Self.runAll()
        var seenKnown: Set<String> = []
        for outcome in report.outcomes {
            guard let failure = outcome.failure else { continue }
            if Self.knownDifferences[outcome.key] != nil {
                seenKnown.insert(outcome.key)
                continue
            }
            XCTFail("\(outcome.key): \(failure)")
        }
        for (key, reason) in Self.knownDifferences.sorted(by: { $0.key < $1.key }) where !seenKnown.contains(key) {
            XCTFail("known difference no longer occurs (remove it from knownDifferences): \(key) (\(reason))")
        }
        // The suite must hold what was re-typed: a lost directory or flow line is a failure, not a pass.
        let expectations = report.outcomes.filter(\.isExpectation).count
        XCTAssertEqual(report.tests.count, Self.expectedTests, "upstream tests found: \(report.tests.sorted())")
        XCTAssertEqual(expectations, Self.expectedExpectations, "upstream expectations checked")
        print("upstream-iptables oracle: \(report.tests.count) upstream tests, \(expectations) expectations, "
              + "\(seenKnown.count) known differences")
    }

    /// The comparison can fail: a ruleset that differs from upstream's in one rule is caught, named by chain.
    func testChainComparisonNamesTheChainThatDiffers() {
        let expected = """
            *nat
            :KUBE-SERVICES - [0:0]
            :KUBE-MARK-MASQ - [0:0]
            -A KUBE-SERVICES -j KUBE-MARK-MASQ
            -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
            COMMIT

            """
        let actual = expected.replacingOccurrences(of: "0x4000", with: "0x8000")
        let failures = Self.compareWhole(expected: expected, actual: actual)
        XCTAssertEqual(failures.count, 1)
        XCTAssertTrue(failures.first?.contains("nat/KUBE-MARK-MASQ") == true, "\(failures)")
        XCTAssertEqual(Self.compareWhole(expected: expected, actual: expected), [])
        let extra = expected.replacingOccurrences(of: "COMMIT", with: ":KUBE-EXTRA - [0:0]\nCOMMIT")
        XCTAssertEqual(Self.compareWhole(expected: expected, actual: extra).count, 1)
    }

    // MARK: - Running the cases

    struct Report {
        var tests: Set<String> = []
        var outcomes: [Outcome] = []
    }

    static func runAll() throws -> Report {
        var report = Report()
        let fm = FileManager.default
        let states = try stateDirectories(under: root)
        XCTAssertFalse(states.isEmpty, "no cases under \(root.path)")
        // Steps of one case (directories named step-*) share one compiler and one evolving ClusterState, as
        // upstream's repeated syncProxyRules() calls share one proxier.
        let groups = Dictionary(grouping: states) { dir -> String in
            dir.lastPathComponent.hasPrefix("step-") ? dir.deletingLastPathComponent().path : dir.path
        }
        for key in groups.keys.sorted() {
            let steps = groups[key]!.sorted { $0.lastPathComponent < $1.lastPathComponent }
            let settings = try Self.settings(for: steps[0])
            let compiler = RuleCompiler(settings: settings)
            var state = ClusterState()
            for dir in steps {
                let name = String(dir.path.dropFirst(root.path.count + 1))
                report.tests.insert(String(name.prefix { $0 != "/" }))
                let load = try ManifestSource(path: dir.appendingPathComponent("cluster.yaml").path).load()
                if !load.issues.isEmpty {
                    report.outcomes.append(Outcome(key: "\(name): cluster.yaml",
                                                   failure: "does not load cleanly: \(load.issues.map(\.description))",
                                                   isExpectation: false))
                }
                evolve(&state, to: load)
                let rs = compiler.compile(state)
                let files = try fm.contentsOfDirectory(atPath: dir.path).sorted()
                var checked = 0
                for file in files {
                    let url = dir.appendingPathComponent(file)
                    let text = try String(contentsOf: url, encoding: .utf8)
                    if file == "expected-\(settings.family.flagName).txt" {
                        let failures = compareWhole(expected: text, actual: upstreamSorted(restorePayload(rs)))
                        report.outcomes.append(Outcome(key: "\(name): rules", failure: joined(failures)))
                    } else if file == "partial-\(settings.family.flagName).txt" {
                        let failures = comparePartial(expected: text, actual: upstreamSorted(restorePayload(rs)))
                        report.outcomes.append(Outcome(key: "\(name): partial rules", failure: joined(failures)))
                    } else if file.hasPrefix("chain-"), file.hasSuffix(".txt") {
                        let parts = file.dropFirst("chain-".count).dropLast(".txt".count).split(separator: "-", maxSplits: 1)
                        let failure = compareChain(table: String(parts[0]), chain: String(parts[1]), expected: text, rs)
                        report.outcomes.append(Outcome(key: "\(name): chain \(parts[0])/\(parts[1])", failure: failure))
                    } else if file == "endpoints.txt" {
                        let payload = TextRenderer.render(restorePayload(rs))
                        for (what, failure) in try compareEndpoints(expected: text, payload: payload, file: url) {
                            report.outcomes.append(Outcome(key: "\(name): endpoints \(what)", failure: failure))
                        }
                    } else if file == "flows.txt" {
                        let tracer = PacketTracer(rs)
                        for flow in try parseFlows(text, file: url) {
                            let r = tracer.trace(flow.source, flow.destination, flow.port, proto: flow.proto)
                            let got = r.outputs.joined(separator: ", ")
                            var problems: [String] = []
                            if got != flow.output { problems.append("output \"\(got)\", upstream \"\(flow.output)\"") }
                            if r.masquerade != flow.masq { problems.append("masq \(r.masquerade), upstream \(flow.masq)") }
                            let what = "\(flow.source) -> \(flow.destination):\(flow.port)/\(flow.proto.rawValue)"
                            report.outcomes.append(Outcome(
                                key: "\(name): flow \(flow.name)",
                                failure: problems.isEmpty ? nil : "\(what): " + problems.joined(separator: "; ")))
                        }
                    } else {
                        guard ["cluster.yaml", "settings.yaml", "expected-ipv4.txt", "expected-ipv6.txt",
                               "partial-ipv4.txt", "partial-ipv6.txt"].contains(file) else {
                            report.outcomes.append(Outcome(key: "\(name): \(file)", failure: "unexpected file", isExpectation: false))
                            continue
                        }
                        if file.hasPrefix("expected-") || file.hasPrefix("partial-") {
                            report.outcomes.append(Outcome(key: "\(name): \(file)",
                                                           failure: "expectation for the other family than settings.yaml's",
                                                           isExpectation: false))
                        }
                        continue
                    }
                    checked += 1
                }
                if checked == 0 {
                    report.outcomes.append(Outcome(key: "\(name)", failure: "states no expectation", isExpectation: false))
                }
            }
        }
        return report
    }

    /// Every directory below `root` holding a `cluster.yaml`.
    static func stateDirectories(under root: URL) throws -> [URL] {
        var out: [URL] = []
        let fm = FileManager.default
        for entry in try fm.contentsOfDirectory(atPath: root.path).sorted() where !entry.hasPrefix(".") {
            let dir = root.appendingPathComponent(entry)
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else { continue }
            if fm.fileExists(atPath: dir.appendingPathComponent("cluster.yaml").path) { out.append(dir) }
            out += try stateDirectories(under: dir)
        }
        return out
    }

    /// Moves `state` to the loaded objects by upserts and removals, so the compiler sees a change log as it
    /// would from a watch (its incremental path), not a fresh state.
    static func evolve(_ state: inout ClusterState, to load: ManifestLoad) {
        let services = Dictionary(uniqueKeysWithValues: load.services.map { ($0.name, $0) })
        let slices = Dictionary(uniqueKeysWithValues: load.slices.map { ($0.name, $0) })
        for name in state.services.keys where services[name] == nil { state.removeService(name) }
        for name in state.slices.keys where slices[name] == nil { state.removeSlice(name) }
        for (name, svc) in services.sorted(by: { $0.key < $1.key }) where state.services[name] != svc { state.upsert(svc) }
        for (name, slice) in slices.sorted(by: { $0.key < $1.key }) where state.slices[name] != slice { state.upsert(slice) }
    }

    // MARK: - Settings (NewFakeProxier and the fields tests change)

    /// NewFakeProxier's settings, changed by the nearest `settings.yaml` (this directory or a parent inside the
    /// case). Keys: family (ipv4|ipv6), masqueradeAll, localhostNodePorts, localDetector (cidr|none),
    /// nodePortAddresses (comma-separated CIDRs), nfacct, tcpBeLiberal, randomFully.
    static func settings(for dir: URL) throws -> NodeSettings {
        var values: [String: String] = [:]
        var d = dir
        while d.path.count > root.path.count {
            let file = d.appendingPathComponent("settings.yaml")
            if FileManager.default.fileExists(atPath: file.path) {
                for line in try String(contentsOf: file, encoding: .utf8).split(separator: "\n") {
                    let trimmed = line.trimmingCharacters(in: .whitespaces)
                    guard !trimmed.isEmpty, !trimmed.hasPrefix("#"), let colon = trimmed.firstIndex(of: ":") else { continue }
                    let key = String(trimmed[..<colon])
                    if values[key] == nil {
                        values[key] = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                    }
                }
            }
            d = d.deletingLastPathComponent()
        }
        let known: Set<String> = ["family", "masqueradeAll", "localhostNodePorts", "localDetector", "nodePortAddresses",
                                  "nfacct", "tcpBeLiberal", "randomFully"]
        XCTAssertEqual(Set(values.keys).subtracting(known), [], "unknown settings in \(dir.path)")
        let family: IPFamily = values["family"] == "ipv6" ? .ipv6 : .ipv4
        var s = Fixture.settings(family: family, nfacct: values["nfacct"] != "false")
        s.masqueradeAll = values["masqueradeAll"] == "true"
        s.localhostNodePorts = values["localhostNodePorts"] != "false"
        if values["localDetector"] == "none" { s.localDetector = .none }
        s.conntrackTCPBeLiberal = values["tcpBeLiberal"] == "true"
        s.features.randomFully = values["randomFully"] == "true"
        if let list = values["nodePortAddresses"] {
            s.nodePortAddresses = nodePortAddresses(list.split(separator: ",").map {
                $0.trimmingCharacters(in: .whitespaces)
            }, family: family)
        }
        return s
    }

    /// NewFakeProxier's interfaces: lo and eth0.
    static let fakeInterfaceAddresses = ["127.0.0.1", "::1", "192.168.0.2", "192.168.1.2", "192.168.99.11",
                                         "2001:db8::1", "2001:db8:1::2"].map { IPAddress($0)! }

    /// Upstream's `NewNodePortAddresses(family, cidrs)` + `GetNodeIPs` over the fake interfaces: the CIDRs of
    /// this family (none, or a zero CIDR, means every address), then the interface addresses inside them.
    static func nodePortAddresses(_ cidrs: [String], family: IPFamily) -> NodePortAddresses {
        let mine = cidrs.compactMap { CIDR($0) }.filter { ($0.address.isIPv6) == (family == .ipv6) }
        if mine.isEmpty || mine.contains(where: { $0.prefixLength == 0 }) { return .all }
        return .addresses(fakeInterfaceAddresses.filter { ip in mine.contains { $0.contains(ip) } })
    }

    // MARK: - Flows

    struct Flow {
        var name: String
        var source: String
        var destination: String
        var port: Int
        var proto: TransportProtocol
        var output: String
        var masq: Bool
    }

    /// `name | source | destination | port | protocol | output | masq`, one flow a line; `#` starts a comment.
    static func parseFlows(_ text: String, file: URL) throws -> [Flow] {
        var flows: [Flow] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let cols = trimmed.split(separator: "|", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            guard cols.count == 7, let port = Int(cols[3]), let proto = TransportProtocol(rawValue: cols[4].uppercased()),
                  IPAddress(cols[1]) != nil, IPAddress(cols[2]) != nil, cols[6] == "true" || cols[6] == "false"
            else {
                XCTFail("\(file.path):\(i + 1): not a flow: \(line)")
                continue
            }
            flows.append(Flow(name: cols[0], source: cols[1], destination: cols[2], port: port, proto: proto,
                              output: cols[5], masq: cols[6] == "true"))
        }
        XCTAssertFalse(flows.isEmpty, "\(file.path) holds no flow")
        return flows
    }

    // MARK: - Comparing restore text chain by chain

    /// One table of restore text: declared chains in order, rules per chain in order, deleted chains.
    struct ParsedTable {
        var declared: [String] = []
        var rules: [String: [String]] = [:]
        var deleted: [String] = []
    }

    static func parse(_ text: String) -> [(name: String, table: ParsedTable)] {
        var out: [(name: String, table: ParsedTable)] = []
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("*") {
                out.append((String(line.dropFirst()), ParsedTable()))
            } else if line.hasPrefix(":"), !out.isEmpty {
                let chain = String(line.dropFirst().prefix { $0 != " " })
                out[out.count - 1].table.declared.append(chain)
            } else if line.hasPrefix("-A "), !out.isEmpty {
                let chain = String(line.dropFirst(3).prefix { $0 != " " })
                out[out.count - 1].table.rules[chain, default: []].append(line)
            } else if line.hasPrefix("-X "), !out.isEmpty {
                out[out.count - 1].table.deleted.append(String(line.dropFirst(3)))
            }
        }
        return out
    }

    static func diff(_ expected: [String], _ actual: [String]) -> String {
        expected.map { "    - \($0)" }.joined(separator: "\n") + "\n" + actual.map { "    + \($0)" }.joined(separator: "\n")
    }

    static func joined(_ failures: [String]) -> String? {
        failures.isEmpty ? nil : "\n  " + failures.joined(separator: "\n  ")
    }

    /// Upstream's whole-payload comparison, reported per chain: each table's chains declared on both sides, each
    /// chain's rules equal in order; when they all agree, the whole sorted text must be identical too.
    static func compareWhole(expected: String, actual: String) -> [String] {
        let e = parse(expected), a = parse(actual)
        var failures: [String] = []
        if e.map(\.name) != a.map(\.name) {
            failures.append("tables \(a.map(\.name)), upstream \(e.map(\.name))")
        }
        for (name, et) in e {
            guard let at = a.first(where: { $0.name == name })?.table else { continue }
            let missing = et.declared.filter { !at.declared.contains($0) }
            let extra = at.declared.filter { !et.declared.contains($0) }
            if !missing.isEmpty { failures.append("\(name): chains missing: \(missing.joined(separator: " "))") }
            if !extra.isEmpty { failures.append("\(name): chains upstream does not write: \(extra.joined(separator: " "))") }
            for chain in Set(et.rules.keys).union(at.rules.keys).sorted() {
                let er = et.rules[chain] ?? [], ar = at.rules[chain] ?? []
                if er != ar { failures.append("\(name)/\(chain) differs:\n\(diff(er, ar))") }
            }
            if et.deleted != at.deleted { failures.append("\(name): deleted chains \(at.deleted), upstream \(et.deleted)") }
        }
        let trim: (String) -> String = { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        if failures.isEmpty && trim(expected) != trim(actual) {
            failures.append("every chain agrees but the sorted text differs (chain declaration order?):\n\(actual)")
        }
        return failures
    }

    /// Upstream's partial-sync payload (a sync after a change rewrites only the chains of changed Services):
    /// every chain it declares must hold exactly its rules in ours, and every chain it deletes must be gone.
    static func comparePartial(expected: String, actual: String) -> [String] {
        let e = parse(expected), a = parse(actual)
        var failures: [String] = []
        for (name, et) in e {
            guard let at = a.first(where: { $0.name == name })?.table else {
                failures.append("no \(name) table")
                continue
            }
            // A chain upstream flushes and then deletes is declared too: its absence is what is checked.
            for chain in et.declared where !et.deleted.contains(chain) {
                let er = et.rules[chain] ?? [], ar = at.rules[chain] ?? []
                if !at.declared.contains(chain) { failures.append("\(name)/\(chain) missing") }
                if er != ar { failures.append("\(name)/\(chain) differs:\n\(diff(er, ar))") }
            }
            for chain in et.deleted where at.declared.contains(chain) {
                failures.append("\(name)/\(chain) still exists; upstream deletes it")
            }
        }
        return failures
    }

    /// Upstream's `countEndpointsAndComments` over the payload's `-A KUBE-SEP-* ... -j DNAT` rules. Lines of the
    /// file: `dnat-rules: N`, `with-comment: N`, and `ADDRESS => RULE` (the last such rule naming ADDRESS is RULE;
    /// nothing after `=>` means no rule names it). One outcome per line.
    static func compareEndpoints(expected: String, payload: String, file: URL) throws -> [(String, String?)] {
        let dnat = payload.split(separator: "\n").map(String.init).filter {
            $0.hasPrefix("-A KUBE-SEP-") && $0.contains("-j DNAT")
        }
        var out: [(String, String?)] = []
        for (i, raw) in expected.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if let r = line.range(of: "=>") {
                let address = line[..<r.lowerBound].trimmingCharacters(in: .whitespaces)
                let rule = line[r.upperBound...].trimmingCharacters(in: .whitespaces)
                let got = dnat.last { $0.contains(address) } ?? ""
                out.append(("naming \(address)", got == rule ? nil : "rule \"\(got)\", upstream \"\(rule)\""))
            } else if line.hasPrefix("dnat-rules:"), let n = Int(line.dropFirst("dnat-rules:".count).trimmingCharacters(in: .whitespaces)) {
                out.append(("count", dnat.count == n ? nil : "\(dnat.count) DNAT rules, upstream \(n)"))
            } else if line.hasPrefix("with-comment:"), let n = Int(line.dropFirst("with-comment:".count).trimmingCharacters(in: .whitespaces)) {
                let c = dnat.filter { $0.contains("--comment") }.count
                out.append(("comments", c == n ? nil : "\(c) DNAT rules with a comment, upstream \(n)"))
            } else {
                XCTFail("\(file.path):\(i + 1): not an endpoints expectation: \(line)")
            }
        }
        XCTAssertFalse(out.isEmpty, "\(file.path) holds no expectation")
        return out
    }

    /// Upstream's `assertIPTablesChainEqual`: one chain of the payload holds exactly these rules, in order.
    /// As upstream's, a chain absent from the payload counts as empty (`if ch, _ := dump.GetChain(...); ch != nil`).
    static func compareChain(table: String, chain: String, expected: String, _ rs: Ruleset) -> String? {
        let actual = parse(TextRenderer.render(restorePayload(rs))).first { $0.name == table }?.table.rules[chain] ?? []
        let wanted = expected.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return actual == wanted ? nil : "\(table)/\(chain) differs:\n\(diff(wanted, actual))"
    }
}
