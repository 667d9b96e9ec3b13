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

/// Upstream's behaviour when the `--config` file changes on disk (fsnotify, write or rename: "content of the
/// proxy server's configuration file was updated"): the daemon exits, and its supervisor (systemd, the
/// DaemonSet) starts it again with the new file. Polled: the file is read every `interval` and compared with
/// what was loaded, so a touch that changes nothing is no restart, a ConfigMap's symlink swap is seen like an
/// edit, and a removed file is reported once and not acted on (upstream goes on too).
struct ConfigFileWatch: Sendable {
    let path: String
    let loaded: [UInt8]
    var interval: Duration = .seconds(1)

    /// The bytes of `path` now (nil when it cannot be read).
    static func read(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { Array($0) }
    }

    /// Returns the reason once the file's content differs from what was loaded; nil when cancelled.
    func changed(logger: Logger) async -> String? {
        var reportedMissing = false
        while !Task.isCancelled {
            do { try await Task.sleep(for: self.interval) } catch { return nil }
            guard let now = Self.read(self.path) else {
                if !reportedMissing {
                    logger.warning(
                        "configuration file \(self.path) cannot be read; running on with the configuration loaded at start"
                    )
                    reportedMissing = true
                }
                continue
            }
            reportedMissing = false
            if now != self.loaded {
                return "the content of the configuration file \(self.path) was updated"
            }
        }
        return nil
    }
}
