import Foundation
import Logging

/// kube-proxy's `oom.ApplyOOMScoreAdj(0, oomScoreAdj)`: the process's own OOM score, written to
/// `/proc/self/oom_score_adj` in the modes that change the node (the daemon, `--once`, `--init-only`).
/// As upstream, a failure (no CAP_SYS_RESOURCE to lower it) is logged and the run goes on.
enum OOMScore {
    static func apply(_ value: Int, path: String = "/proc/self/oom_score_adj", logger: Logger) {
        let current = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(
            in: .whitespacesAndNewlines)
        if current == String(value) {
            logger.info("oom_score_adj is \(value) already")
            return
        }
        do {
            try String(value).write(toFile: path, atomically: false, encoding: .utf8)
            logger.info("set oom_score_adj = \(value)")
        } catch {
            logger.warning("could not set oom_score_adj = \(value): \(error.localizedDescription)")
        }
    }
}
