/// Prometheus's text exposition format (version 0.0.4), as the status page's
/// `?format=prometheus` writes it: `# HELP` and `# TYPE` once per metric, then one line per
/// label set. Written directly: the host reads its numbers at scrape time from counters it keeps
/// anyway, so one snapshot feeds the JSON page and this text and they always agree (README,
/// Status page and metrics).
struct PrometheusText {
    enum Kind: String {
        case counter
        case gauge
    }

    /// One line of a metric: its labels and value.
    struct Sample {
        var labels: [String: String]
        var value: Double

        init(_ labels: [String: String], _ value: Double) {
            self.labels = labels
            self.value = value
        }
    }

    private(set) var text = ""

    /// One metric (`sessionhost_` + `name`) and its samples, one per label set.
    mutating func metric(_ name: String, _ kind: Kind, help: String, _ samples: [Sample]) {
        text += "# HELP sessionhost_\(name) \(Self.escapeHelp(help))\n# TYPE sessionhost_\(name) \(kind.rawValue)\n"
        for sample in samples {
            text += "sessionhost_\(name)"
            if !sample.labels.isEmpty {
                text += "{" + sample.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\(Self.escapeLabel($0.value))\"" }.joined(separator: ",") + "}"
            }
            text += " \(Self.format(sample.value))\n"
        }
    }

    /// A metric without labels.
    mutating func metric(_ name: String, _ kind: Kind, help: String, _ value: Double) {
        metric(name, kind, help: help, [Sample([:], value)])
    }

    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    /// Label values escape backslash, double quote and line feed.
    static func escapeLabel(_ value: String) -> String {
        value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n")
    }

    /// Help text escapes backslash and line feed.
    static func escapeHelp(_ value: String) -> String {
        value.replacing("\\", with: "\\\\").replacing("\n", with: "\\n")
    }
}
