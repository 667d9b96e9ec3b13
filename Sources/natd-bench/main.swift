import Foundation
import KubeModel
import ProxyConfig
import RuleCompiler
import Ruleset
import SyntheticCluster

/// In-process compile measurements for `make bench`: full compile, render, and incremental compile.
/// Usage: natd-bench compile SERVICES [RUNS]
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

let args = CommandLine.arguments
guard args.count >= 3, args[1] == "compile", let n = Int(args[2]) else {
    FileHandle.standardError.write("usage: natd-bench compile SERVICES [RUNS]\n".data(using: .utf8)!)
    exit(2)
}
let runs = args.count > 3 ? Int(args[3])! : 5
let cluster = SyntheticCluster(services: n)
let settings = NodeSettings(family: .ipv4, nodeName: "node-1", nodeIPs: [IPAddress("192.168.0.2")!],
                            localDetector: .cidr(CIDR("10.128.0.0/9")!))
var state = cluster.state
var full: [Double] = [], render: [Double] = [], incr: [Double] = []
var rules = 0
var bytes = 0
for run in 0...runs {  // run 0 is the warm-up
    let compiler = RuleCompiler(settings: settings)
    let t0 = now()
    let rs = compiler.compile(state)
    let t1 = now()
    let text = TextRenderer.renderBytes(rs)
    let t2 = now()
    // One endpoint of one Service changes.
    var slice = cluster.slices[run % cluster.slices.count]
    slice.endpoints[0].addresses = [IPAddress(bytes: [10, 127, UInt8(run), 1])!]
    slice.resourceVersion = "\(run + 2)"
    state.upsert(slice)
    let t3 = now()
    _ = compiler.compile(state)
    let t4 = now()
    precondition(compiler.lastStats.fragmentsCompiled == 1, "incremental compile re-derived \(compiler.lastStats.fragmentsCompiled) Services")
    if run > 0 {
        full.append(t1 - t0)
        render.append(t2 - t1)
        incr.append(t4 - t3)
    }
    rules = rs.tables.reduce(0) { $0 + $1.ruleCount }
    bytes = text.count
}
print(String(format: "{\"services\":%d,\"rules\":%d,\"text_bytes\":%d,\"full_compile_ms\":%.2f,\"render_ms\":%.2f,\"incremental_compile_ms\":%.3f}",
             n, rules, bytes, median(full) * 1000, median(render) * 1000, median(incr) * 1000))
