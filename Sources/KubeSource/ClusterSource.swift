import Foundation
import KubeModel
import Logging

/// Where the daemon learns the cluster from. The daemon runs one and never asks which.
public protocol ClusterSource: Sendable {
    /// Feeds `store` until the task is cancelled; failures are retried inside, never thrown.
    func run(into store: ClusterStore) async
    /// Asks for everything to be read again now (SIGHUP). Sources that follow changes anyway ignore it.
    func reload()
}

extension ClusterSource {
    public func reload() {}
}

/// Manifest files (a file or a directory): read at start, again whenever a file's name, size or modification time
/// changes (checked every `recheck`), and at once on `reload()` (SIGHUP).
///
/// A file that cannot be read or parsed keeps the objects it held at its last good read; an invalid object keeps
/// its last good version (the `ClusterStore` rule).
///
/// `kind: Node` objects are read too: the one named `nodeName` is this node's Node (`ClusterStore.setNode`), others
/// are ignored; a read that no longer holds it sets none.
public final class ManifestFileSource: ClusterSource, @unchecked Sendable {
    public let path: String
    public let recheck: Duration
    /// This node's name (hostnameOverride / --hostname-override / hostname); nil: no Node is read.
    public let nodeName: String?
    let logger: Logger
    private let lock = NSLock()
    private var reloadRequested = false
    /// Objects each file held at its last read without document-level errors.
    private var lastGood: [String: [(ResourceKind, ObjectName)]] = [:]
    /// Files whose last good read held this node's Node.
    private var nodeFiles: Set<String> = []

    public init(path: String, recheck: Duration = .seconds(1), nodeName: String? = nil, logger: Logger) {
        self.path = path
        self.recheck = recheck
        self.nodeName = nodeName
        self.logger = logger
    }

    public func reload() {
        self.lock.withLock { self.reloadRequested = true }
    }

    public func run(into store: ClusterStore) async {
        var lastStamp = ""
        let tick = min(self.recheck, .milliseconds(200))
        var waited = Duration.zero
        while !Task.isCancelled {
            let forced = self.lock.withLock {
                defer { self.reloadRequested = false }
                return self.reloadRequested
            }
            if forced || waited >= self.recheck || lastStamp.isEmpty {
                waited = .zero
                let stamp = Self.stamp(self.path)
                if stamp != lastStamp || forced {
                    lastStamp = stamp
                    self.read(into: store, forced: forced)
                }
            }
            try? await Task.sleep(for: tick)
            waited += tick
        }
    }

    /// One read of every file; per file, objects of a file with a document-level error stay as they were.
    func read(into store: ClusterStore, forced: Bool) {
        let files: [String]
        do { files = try ManifestSource.files(at: self.path) } catch {
            self.logger.error("cannot read \(self.path), keeping the last good state: \(error)")
            return
        }
        var load = ManifestLoad()
        var keep: [(ResourceKind, ObjectName)] = []
        var keepNode = false
        var seen: [String: String] = [:]  // "Kind ns/name" -> file
        for file in files {
            let one: ManifestLoad
            if let data = try? Data(contentsOf: URL(fileURLWithPath: file)) {
                one = ManifestSource.decode(data: data, source: file)
            } else {
                one = ManifestLoad(issues: [DecodeIssue(severity: .error, kind: "", object: nil, fieldPath: "",
                                                        message: "cannot read", source: file)])
            }
            let broken = one.errors.contains { $0.object == nil }
            let names = one.services.map { (ResourceKind.service, $0.name) }
                + one.slices.map { ($0.fromEndpoints ? ResourceKind.endpoints : .endpointSlice, $0.fromEndpoints ? $0.service : $0.name) }
            let holdsNode = self.nodeName.map { name in one.nodes.contains { $0.name == name } } ?? false
            if broken {
                // What this file held last time stays; what it still holds now is current.
                keep += self.lastGood[file] ?? []
                if self.nodeFiles.contains(file) && !holdsNode { keepNode = true }
            } else {
                self.lastGood[file] = names
                if holdsNode { self.nodeFiles.insert(file) } else { self.nodeFiles.remove(file) }
            }
            for (kind, name) in names {
                let key = "\(kind) \(name)"
                if let earlier = seen[key], earlier != file {
                    load.issues.append(DecodeIssue(severity: .warning, kind: kind.rawValue, object: name, fieldPath: "",
                                                   message: "defined again; replaces the one from \(earlier)", source: file))
                }
                seen[key] = file
            }
            load.services += one.services
            load.slices += one.slices
            load.nodes += one.nodes
            load.issues += one.issues
        }
        // Object-level errors reach the log through the store's onInvalid; a Node is not a store kind: logged here.
        for issue in load.issues where issue.severity != .error || issue.object == nil || issue.kind == "Node" {
            self.logger.log(level: issue.severity == .error ? .error : .warning, "\(issue)")
        }
        store.replace(load: load, keep: keep)
        var nodeNote = ""
        if let name = self.nodeName {
            let node = load.node(named: name)
            // An invalid version of this node's Node keeps the last good one (the store's rule for every object).
            if node == nil && load.errors.contains(where: { $0.kind == "Node" && $0.object?.name == name }) {
                keepNode = true
            }
            if node != nil || !keepNode { store.setNode(node) }
            nodeNote = node != nil ? ", Node \(name)" : (keepNode ? ", Node \(name) kept from its last good read" : ", no Node \(name)")
        }
        self.logger.info(
            "read \(self.path): \(load.services.count) Services, \(load.slices.count) endpoint slices\(nodeNote)\(forced ? " (SIGHUP)" : "")")
    }

    /// Names, sizes and modification times of the source files: a change in any means re-read.
    static func stamp(_ path: String) -> String {
        let files = (try? ManifestSource.files(at: path)) ?? []
        return files.map { f -> String in
            let a = try? FileManager.default.attributesOfItem(atPath: f)
            let m = (a?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\(f):\(a?[.size] ?? 0):\(m)"
        }.joined(separator: "|")
    }
}

/// The apiserver: list then watch (or poll) Services, EndpointSlices (or Endpoints) and the own Node.
public struct APIServerClusterSource: ClusterSource {
    public let credentials: ClusterCredentials
    public let options: SourceOptions
    let logger: Logger

    public init(credentials: ClusterCredentials, options: SourceOptions, logger: Logger) {
        self.credentials = credentials
        self.options = options
        self.logger = logger
    }

    public func run(into store: ClusterStore) async {
        var options = self.options
        if let observer = store.requestObserver {
            let earlier = options.onRequest
            options.onRequest = { resource, verb, code in
                earlier?(resource, verb, code)
                observer(resource, verb, code)
            }
        }
        let source = APIServerSource<DecodeResult>(credentials: self.credentials, options: options,
                                                   logger: self.logger) { kind, json in
            ObjectDecoder.decode(json, defaultKind: kind.rawValue)
        }
        let log = self.logger
        do {
            try await source.run { event in
                // Warnings (dropped list entries) are logged here; rejected objects by the store's onInvalid.
                switch event {
                case .replaceAll(_, let results):
                    for r in results { for i in r.issues where i.severity != .error { log.warning("\(i)") } }
                case .upsert(_, let r):
                    for i in r.issues where i.severity != .error { log.warning("\(i)") }
                default: break
                }
                store.apply(event)
            }
        } catch {
            self.logger.critical("apiserver source stopped: \(error)")
        }
    }
}
