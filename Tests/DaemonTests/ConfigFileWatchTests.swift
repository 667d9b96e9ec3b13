import Foundation
import Logging
import XCTest

@testable import Daemon

/// The `--config` file watch: an edit ends the daemon, as kube-proxy's fsnotify watch does. The sleeper runs a
/// script of file changes, one step per poll; no wall time.
final class ConfigFileWatchTests: XCTestCase {
    private var dir: URL!
    private var file: String { dir.appendingPathComponent("config.yaml").path }

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("cfw-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try "mode: iptables\n".write(toFile: file, atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// A sleeper that runs `steps[i]` at its i-th call and throws (cancellation) after the last.
    final class Script: @unchecked Sendable {
        let lock = NSLock()
        var steps: [() throws -> Void]
        var polls = 0
        init(_ steps: [() throws -> Void]) { self.steps = steps }
        func sleep(_ d: Duration) throws {
            try lock.withLock {
                XCTAssertEqual(d, .seconds(1))
                guard polls < steps.count else { throw CancellationError() }
                let step = steps[polls]
                polls += 1
                try step()
            }
        }
    }

    private func watch(_ script: Script) -> ConfigFileWatch {
        ConfigFileWatch(path: file, loaded: ConfigFileWatch.read(file)!, sleep: { try script.sleep($0) })
    }

    func testAnEditIsReportedAtTheNextPoll() async throws {
        let path = file
        let script = Script([
            {},
            { try "mode: iptables\nclusterCIDR: 10.0.0.0/8\n".write(toFile: path, atomically: false, encoding: .utf8) },
            {},
        ])
        let reason = await watch(script).changed(logger: Logger(label: "t"))
        XCTAssertEqual(reason, "the content of the configuration file \(path) was updated")
        XCTAssertEqual(script.polls, 2)
    }

    func testAReplacementByRenameIsAnEditToo() async throws {
        let path = file
        let other = dir.appendingPathComponent("new.yaml").path
        let script = Script([
            {
                try "mode: iptables\nbindAddress: 10.0.0.1\n".write(toFile: other, atomically: false, encoding: .utf8)
                _ = rename(other, path)
            }
        ])
        let reason = await watch(script).changed(logger: Logger(label: "t"))
        XCTAssertNotNil(reason)
    }

    func testSameContentRemovalAndReturnAreNoReason() async throws {
        let path = file
        let script = Script([
            { try "mode: iptables\n".write(toFile: path, atomically: true, encoding: .utf8) },  // rewritten, same bytes
            { try FileManager.default.removeItem(atPath: path) },  // gone: reported, not acted on
            {},
            { try "mode: iptables\n".write(toFile: path, atomically: true, encoding: .utf8) },  // back, unchanged
        ])
        let reason = await watch(script).changed(logger: Logger(label: "t"))
        XCTAssertNil(reason)
        XCTAssertEqual(script.polls, 4)
    }
}
