import Foundation

/// A small parser of the Prometheus text exposition format (0.0.4), enough to check a scrape:
/// `# TYPE` / `# HELP` lines and samples `name{label="value",...} number`.
struct PrometheusText {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    enum ParseError: Error { case badLine(String) }

    var types: [String: String] = [:]
    var help: [String: String] = [:]
    var samples: [Sample] = []

    static func parse(_ text: String) throws -> PrometheusText {
        var out = PrometheusText()
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ", maxSplits: 1)
                guard parts.count == 2 else { throw ParseError.badLine(String(line)) }
                out.types[String(parts[0])] = String(parts[1])
            } else if line.hasPrefix("# HELP ") {
                let parts = line.dropFirst(7).split(separator: " ", maxSplits: 1)
                out.help[String(parts[0])] = parts.count == 2 ? String(parts[1]) : ""
            } else if line.hasPrefix("#") {
                continue
            } else {
                out.samples.append(try self.parseSample(Substring(line)))
            }
        }
        return out
    }

    private static func parseSample(_ line: Substring) throws -> Sample {
        var rest = line[...]
        let nameEnd = rest.firstIndex(where: { $0 == "{" || $0 == " " }) ?? rest.endIndex
        let name = String(rest[..<nameEnd])
        rest = rest[nameEnd...]
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                guard let eq = rest.firstIndex(of: "="), rest[rest.index(after: eq)] == "\"" else {
                    throw ParseError.badLine(String(line))
                }
                let key = String(rest[..<eq])
                rest = rest[rest.index(eq, offsetBy: 2)...]
                var value = ""
                while let c = rest.first, c != "\"" {
                    if c == "\\" {
                        rest = rest.dropFirst()
                        switch rest.first {
                        case "n": value.append("\n")
                        case let e?: value.append(e)
                        case nil: throw ParseError.badLine(String(line))
                        }
                    } else {
                        value.append(c)
                    }
                    rest = rest.dropFirst()
                }
                guard rest.first == "\"" else { throw ParseError.badLine(String(line)) }
                rest = rest.dropFirst()
                labels[key] = value
                if rest.first == "," { rest = rest.dropFirst() }
            }
            rest = rest.dropFirst()
        }
        let valueText = rest.trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init) ?? ""
        let value: Double?
        switch valueText {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default: value = Double(valueText)
        }
        guard let value else { throw ParseError.badLine(String(line)) }
        return Sample(name: name, labels: labels, value: value)
    }

    /// The value of the one sample with exactly these labels, nil when absent.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        self.samples.first(where: { $0.name == name && $0.labels == labels })?.value
    }

    /// Every sample of `name`.
    func series(_ name: String) -> [Sample] {
        self.samples.filter { $0.name == name }
    }
}
