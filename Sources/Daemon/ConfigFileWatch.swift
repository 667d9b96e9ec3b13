import Foundation
import Logging

/// Upstream's behaviour when the `--config` file changes on disk (fsnotify, write or rename: "content of the
/// proxy server's configuration file was updated"): the daemon exits, and its supervisor (systemd, the
/// DaemonSet) starts it again with the new file. Polled: the file is read every `interval` and compared with
/// what was loaded, so a touch that changes nothing is no restart, a ConfigMap's symlink swap is seen like an
/// edit, and a removed file is reported once and not acted on (upstream goes on too).
public struct ConfigFileWatch: Sendable {
    public let path: String
    public let loaded: [UInt8]
    /// How often the file is read.
    public var interval: Duration
    /// Waits `interval`; throws when cancelled (tests inject their own).
    public var sleep: @Sendable (Duration) async throws -> Void

    /// Watches `path`, whose content at load time was `loaded`.
    public init(
        path: String, loaded: [UInt8], interval: Duration = .seconds(1),
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) {
        self.path = path
        self.loaded = loaded
        self.interval = interval
        self.sleep = sleep
    }

    /// The bytes of `path` now (nil when it cannot be read).
    public static func read(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { Array($0) }
    }

    /// Returns the reason once the file's content differs from what was loaded; nil when cancelled.
    public func changed(logger: Logger) async -> String? {
        var reportedMissing = false
        while !Task.isCancelled {
            do { try await self.sleep(self.interval) } catch { return nil }
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
