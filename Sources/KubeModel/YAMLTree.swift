import Foundation
import Yams

/// A YAML stream as `JSONValue` trees, one per document, so one decoder serves JSON and YAML.
public enum YAMLTree {
    /// One `---`-separated document: its tree, or why it could not be parsed.
    public struct Document {
        /// 1-based position among the stream's non-empty documents.
        public var index: Int
        /// 1-based line of the document's first line in the whole stream.
        public var line: Int
        public var result: Result<JSONValue, YAMLTree.ParseError>
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
    static func value(_ node: Yams.Node) -> JSONValue {
        switch node {
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: return .null
            case .bool: return node.bool.map { .bool($0) } ?? .string(scalar.string)
            case .int: return node.int.map { .int($0) } ?? .string(scalar.string)
            case .float: return node.float.map { .double($0) } ?? .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .mapping(let mapping):
            // A repeated key keeps its last value on lookup, as the dictionary this used to fill did.
            var members: [JSONObject.Member] = []
            members.reserveCapacity(mapping.count)
            for (key, value) in mapping {
                let k: String
                if case .scalar(let s) = key { k = s.string } else { k = "\(key)" }
                members.append(JSONObject.Member(key: k, value: YAMLTree.value(value)))
            }
            return .object(JSONObject(members: members))
        case .sequence(let sequence):
            return .array(sequence.map { YAMLTree.value($0) })
        case .alias:
            // compose() resolves aliases to their anchored nodes; an unresolved one carries no value.
            return .null
        }
    }
}
