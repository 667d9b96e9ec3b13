import Foundation
import KubeModel
import Logging
import XCTest

@testable import KubeSource

/// SIGHUP at unit level: the daemon's reload() reaches the manifest source, which reads its files at once, even an
/// edit its periodic recheck cannot see (same name, size and modification time).
final class ManifestReloadTests: XCTestCase {
    func service(_ ip: String) -> String {
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns}\nspec: {clusterIP: \(ip), ports: [{port: 80}]}\n"
    }

    /// Polls (every 10 ms, at most 10 s) until the condition holds: a condition, not a clock.
    func eventually(_ what: String, _ condition: () -> Bool) {
        for _ in 0..<1000 where !condition() { usleep(10_000) }
        XCTAssertTrue(condition(), what)
    }

    func testReloadReadsAnEditTheRecheckCannotSee() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("knat-reload-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("web.yaml").path
        try service("10.96.0.1").write(toFile: file, atomically: false, encoding: .utf8)
        let source = ManifestFileSource(path: dir.path, recheck: .seconds(3600), logger: Logger(label: "test"))
        let store = ClusterStore()
        let task = Task { await source.run(into: store) }
        defer { task.cancel() }
        let web = ObjectName(namespace: "ns", name: "web")
        func ip() -> IPAddress? { store.peek().services[web]?.clusterIPs.first }
        eventually("the first read") { ip() == IPAddress("10.96.0.1") }

        // The same size and modification time: the recheck's stamp cannot tell.
        let before = ManifestFileSource.stamp(dir.path)
        var st = stat()
        XCTAssertEqual(stat(file, &st), 0)
        try service("10.96.0.2").write(toFile: file, atomically: false, encoding: .utf8)
        var times = [st.st_atim, st.st_mtim]  // the old times, to the nanosecond (touch -r)
        XCTAssertEqual(utimensat(AT_FDCWD, file, &times, 0), 0)
        XCTAssertEqual(ManifestFileSource.stamp(dir.path), before, "the fixture: name, size and mtime unchanged")
        XCTAssertEqual(ip(), IPAddress("10.96.0.1"))

        source.reload()
        eventually("reload() reads the edit") { ip() == IPAddress("10.96.0.2") }
    }
}
