import Foundation
import KubeModel
import Logging

/// What a set of manifest files holds: accepted Services and slices (v1 Endpoints already converted,
/// `fromEndpoints: true`), Nodes, and every issue, each prefixed with its file and document.
public struct ManifestLoad: Sendable {
    public var services: [Service] = []
    /// EndpointSlices and converted Endpoints, in file order.
    public var slices: [EndpointSlice] = []
    /// Every Node the files hold; the one named by the node name is this node (`node(named:)`).
    public var nodes: [Node] = []
    public var issues: [DecodeIssue] = []

    public init(services: [Service] = [], slices: [EndpointSlice] = [], nodes: [Node] = [], issues: [DecodeIssue] = []) {
        self.services = services
        self.slices = slices
        self.nodes = nodes
        self.issues = issues
    }

    /// This node's Node: the one whose name is the node name (hostnameOverride / --hostname-override / hostname);
    /// Nodes of other names are ignored, as upstream's informer never sees them.
    public func node(named name: String) -> Node? {
        nodes.last { $0.name == name }
    }

    /// The issues that rejected a whole object or document.
    public var errors: [DecodeIssue] { issues.filter { $0.severity == .error } }

    /// Logs each issue as one line: errors at `error`, dropped entries at `warning`.
    public func log(to logger: Logger) {
        for issue in issues {
            logger.log(level: issue.severity == .error ? .error : .warning, "\(issue.description)")
        }
    }

    /// The loaded objects as a cluster snapshot. A Service's Endpoints are used only when no
    /// EndpointSlice names it, as `ClusterState` arranges. No Node: see `clusterState(nodeName:)`.
    public var clusterState: ClusterState { ClusterState(services: services, slices: slices) }

    /// The snapshot as the node named `nodeName` sees it: with its own Node, when the files hold it.
    public func clusterState(nodeName: String) -> ClusterState {
        var state = clusterState
        if let node = node(named: nodeName) { state.setNode(node) }
        return state
    }
}

/// A manifest path that cannot be read at all (as opposed to a file with bad content, which is an issue).
public enum ManifestError: Error, Hashable, Sendable, CustomStringConvertible {
    case unreadable(path: String, reason: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): "\(path): \(reason)"
        }
    }
}

/// Reads Services, EndpointSlices, Endpoints and Nodes from `.yaml`, `.yml` and `.json` files: a file, or a
/// directory and its immediate subdirectories, in sorted path order. Files may hold several YAML
/// documents and `kind: List` (what `kubectl get svc,endpointslices,endpoints -A -o yaml` prints).
///
/// A bad object or a malformed document is reported and skipped; everything else still loads.
/// When the same object appears twice, the later one wins, with a warning.
public struct ManifestSource: Sendable {
    public var paths: [String]

    public init(paths: [String]) { self.paths = paths }

    public init(path: String) { self.init(paths: [path]) }

    /// File extensions read from directories; a file named explicitly is read whatever its name.
    public static let extensions: Set<String> = ["yaml", "yml", "json"]

    /// Loads every file under `paths`. Throws only when a path itself cannot be read.
    public func load() throws -> ManifestLoad {
        var builder = Builder()
        for path in paths {
            for file in try Self.files(at: path) {
                let data: Data
                do {
                    data = try Data(contentsOf: URL(fileURLWithPath: file))
                } catch {
                    builder.fileIssue(file, "cannot read: \(error.localizedDescription)")
                    continue
                }
                builder.add(data: data, source: file)
            }
        }
        return builder.load
    }

    /// Decodes one file's contents; `source` names it in issues. JSON is chosen by a `.json` name.
    public static func decode(data: Data, source: String) -> ManifestLoad {
        var builder = Builder()
        builder.add(data: data, source: source)
        return builder.load
    }

    /// The manifest files a path stands for, sorted: the path itself when it is a file; for a
    /// directory its `.yaml`/`.yml`/`.json` files and those of its immediate subdirectories. Names
    /// starting with `.` are skipped (a mounted ConfigMap's `..data` links would double every file).
    public static func files(at path: String) throws -> [String] {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ManifestError.unreadable(path: path, reason: "no such file or directory")
        }
        guard isDirectory.boolValue else { return [path] }
        var files: [String] = []
        func entries(_ dir: String) throws -> [String] {
            do {
                return try fm.contentsOfDirectory(atPath: dir).filter { !$0.hasPrefix(".") }.sorted()
            } catch {
                throw ManifestError.unreadable(path: dir, reason: error.localizedDescription)
            }
        }
        let join = { (dir: String, name: String) in dir.hasSuffix("/") ? dir + name : dir + "/" + name }
        for name in try entries(path) {
            let full = join(path, name)
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: full, isDirectory: &isDir) else { continue }
            if isDir.boolValue {
                for inner in try entries(full) {
                    let innerFull = join(full, inner)
                    var innerIsDir: ObjCBool = false
                    if fm.fileExists(atPath: innerFull, isDirectory: &innerIsDir), !innerIsDir.boolValue,
                        isManifest(inner)
                    {
                        files.append(innerFull)
                    }
                }
            } else if isManifest(name) {
                files.append(full)
            }
        }
        return files.sorted()
    }

    private static func isManifest(_ name: String) -> Bool {
        guard let dot = name.lastIndex(of: ".") else { return false }
        return extensions.contains(name[name.index(after: dot)...].lowercased())
    }

    /// Accumulates objects across files, replacing repeated objects and remembering where each came from.
    struct Builder {
        var load = ManifestLoad()
        /// Kind and name to (position in services or slices, source).
        private var seen: [Placed: (index: Int, source: String)] = [:]

        private struct Placed: Hashable {
            var kind: String
            var name: ObjectName
        }

        mutating func fileIssue(_ source: String, _ message: String) {
            load.issues.append(
                DecodeIssue(severity: .error, kind: "", object: nil, fieldPath: "", message: message, source: source))
        }

        mutating func add(data: Data, source: String) {
            if source.lowercased().hasSuffix(".json") {
                addJSON(data, source: source)
                return
            }
            guard let text = String(data: data, encoding: .utf8) else {
                fileIssue(source, "not UTF-8 text")
                return
            }
            let documents = YAMLTree.documents(text)
            for document in documents {
                let origin = documents.count > 1 ? "\(source) (document \(document.index))" : source
                switch document.result {
                case .success(let tree): add(tree: tree, source: origin)
                case .failure(let error): fileIssue(origin, error.description)
                }
            }
        }

        /// A JSON file. A `List`'s items are decoded as they are parsed, so a 10k-Service list is never held as one
        /// tree (less memory, and memory that stays warm: the decode of each item reuses the last one's).
        /// Results are the same as parsing the whole file and decoding it as one document; a syntax error anywhere
        /// rejects the whole file, as before.
        mutating func addJSON(_ data: Data, source: String) {
            var early: [(item: JSONValue, index: Int)] = []  // items that came before the list's `kind`
            // Decoded values only (small); added once the whole file parsed, so a syntax error still rejects it all.
            var results: [DecodeResult] = []
            let parsed: (tree: JSONValue, streamed: Bool)
            do {
                parsed = try JSONTree.parse(data) { item, index, top in
                    if let kind = top["kind"]?.stringValue, kind.hasSuffix("List") {
                        results.append(ObjectDecoder.decodeListItem(
                            item, index: index, listKind: kind, listAPIVersion: top["apiVersion"]?.stringValue))
                    } else {
                        early.append((item, index))
                    }
                }
            } catch {
                fileIssue(source, "malformed JSON: \(error)")
                return
            }
            for result in results { add(result: result, source: source) }
            results = []
            guard parsed.streamed, case .object(var top) = parsed.tree else {
                add(tree: parsed.tree, source: source)
                return
            }
            if let kind = top["kind"]?.stringValue, kind.hasSuffix("List") {
                for (item, index) in early {
                    add(result: ObjectDecoder.decodeListItem(
                        item, index: index, listKind: kind, listAPIVersion: top["apiVersion"]?.stringValue), source: source)
                }
            } else {
                // Not a list after all: an object that happens to have `items`; decode it whole.
                top["items"] = .array(early.map(\.item))
                add(tree: .object(top), source: source)
            }
        }

        mutating func add(tree: JSONValue, source: String) {
            for result in ObjectDecoder.decodeDocument(tree) { add(result: result, source: source) }
        }

        mutating func add(result: DecodeResult, source: String) {
            do {
                load.issues += result.issues.map {
                    var issue = $0
                    issue.source = source
                    return issue
                }
                switch result.object {
                case .service(let service):
                    place(service, kind: "Service", name: service.name, source: source, in: \.services)
                case .endpointSlice(let slice):
                    place(slice, kind: "EndpointSlice", name: slice.name, source: source, in: \.slices)
                case .endpoints(let slice):
                    place(slice, kind: "Endpoints", name: slice.name, source: source, in: \.slices)
                case .node(let node):
                    place(node, kind: "Node", name: ObjectName(namespace: "", name: node.name), source: source, in: \.nodes)
                case .ignored, .rejected:
                    break
                }
            }
        }

        private mutating func place<T>(
            _ value: T, kind: String, name: ObjectName, source: String, in list: WritableKeyPath<ManifestLoad, [T]>
        ) {
            let key = Placed(kind: kind, name: name)
            if let earlier = seen[key] {
                load[keyPath: list][earlier.index] = value
                load.issues.append(
                    DecodeIssue(
                        severity: .warning, kind: kind, object: name, fieldPath: "",
                        message: "defined again; replaces the one from \(earlier.source)", source: source))
                seen[key] = (earlier.index, source)
                return
            }
            seen[key] = (load[keyPath: list].count, source)
            load[keyPath: list].append(value)
        }
    }
}
