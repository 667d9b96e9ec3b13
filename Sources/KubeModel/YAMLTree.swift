import Foundation
import Yams

/// A YAML stream as trees of the shape JSONSerialization produces (`[String: Any]`, `[Any]`, `String`,
/// `Int`, `Double`, `Bool`, `NSNull`), one per document, so one decoder serves both.
public enum YAMLTree {
    /// One `---`-separated document: its tree, or why it could not be parsed.
    public struct Document {
        /// 1-based position among the stream's non-empty documents.
        public var index: Int
        /// 1-based line of the document's first line in the whole stream.
        public var line: Int
        public var result: Result<Any, YAMLTree.ParseError>
    }

    /// A document that is not valid YAML.
    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        /// 1-based line in the whole stream, when libyaml reported one.
        public var line: Int?
        public var problem: String
        public var description: String {
            line.map { "malformed YAML at line \($0): \(problem)" } ?? "malformed YAML: \(problem)"
        }
    }

    /// Splits the stream at `---` lines and parses each document on its own, so one malformed
    /// document does not hide the others (libyaml cannot resume after an error). Empty documents
    /// (only comments or whitespace) are skipped.
    public static func documents(_ text: String) -> [Document] {
        var documents: [Document] = []
        var index = 0
        for (start, chunk) in split(text) {
            do {
                guard let node = try Yams.compose(yaml: chunk) else { continue }
                index += 1
                documents.append(Document(index: index, line: start, result: .success(value(node))))
            } catch {
                index += 1
                documents.append(Document(index: index, line: start, result: .failure(parseError(error, start))))
            }
        }
        return documents
    }

    /// Chunks of the stream between document separators, with the 1-based line each starts on.
    static func split(_ text: String) -> [(line: Int, text: String)] {
        var chunks: [(Int, String)] = []
        var current: [Substring] = []
        var start = 1
        var lineNumber = 0
        // "\r\n" is one Character in Swift, so it needs naming as a separator of its own.
        for line in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            if line == "---" || line.hasPrefix("--- ") || line.hasPrefix("---\t") || line.hasPrefix("---#") {
                if !current.isEmpty { chunks.append((start, current.joined(separator: "\n"))) }
                // `--- {a: 1}` carries content on the separator line itself.
                let rest = line.dropFirst(3)
                current = rest.trimmingWhitespace().isEmpty || rest.trimmingWhitespace().hasPrefix("#") ? [] : [rest]
                start = current.isEmpty ? lineNumber + 1 : lineNumber
                continue
            }
            current.append(line)
        }
        if !current.isEmpty { chunks.append((start, current.joined(separator: "\n"))) }
        return chunks
    }

    private static func parseError(_ error: Error, _ start: Int) -> ParseError {
        guard let yamlError = error as? YamlError else { return ParseError(line: nil, problem: "\(error)") }
        switch yamlError {
        case .scanner(let context, let problem, let mark, _),
            .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let detail = context.map { "\(problem) (\($0.text))" } ?? problem
            return ParseError(line: start + mark.line - 1, problem: detail)
        default:
            return ParseError(line: nil, problem: "\(yamlError)")
        }
    }

    /// Scalars keep YAML 1.1 core types as Kubernetes' YAML reader resolves them (ints, floats, bools,
    /// null), except timestamps, which stay text: Kubernetes objects carry times as strings.
    static func value(_ node: Node) -> Any {
        switch node {
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: return NSNull()
            case .bool: return node.bool ?? scalar.string
            case .int: return node.int ?? scalar.string
            case .float: return node.float ?? scalar.string
            default: return scalar.string
            }
        case .mapping(let mapping):
            var out: [String: Any] = [:]
            out.reserveCapacity(mapping.count)
            for (key, value) in mapping {
                let k: String
                if case .scalar(let s) = key { k = s.string } else { k = "\(key)" }
                out[k] = YAMLTree.value(value)
            }
            return out
        case .sequence(let sequence):
            return sequence.map { YAMLTree.value($0) }
        case .alias:
            // compose() resolves aliases to their anchored nodes; an unresolved one carries no value.
            return NSNull()
        }
    }
}
