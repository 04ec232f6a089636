/// Prometheus's text exposition format (version 0.0.4), as the status pages' `?format=prometheus`
/// write it: `# HELP` and `# TYPE` once per metric, then one line per label set. Written
/// directly: the worker and the state server read their numbers at scrape time from counters
/// they keep anyway, so one snapshot feeds the JSON page and this text and they always agree
/// (README, Status page and metrics).
package struct PrometheusText {
    /// The prefix of every metric name (`sessionhost_`, `sessionhost_state_server_`).
    package let prefix: String

    package init(prefix: String) {
        self.prefix = prefix
    }

    package enum Kind: String {
        case counter
        case gauge
    }

    /// One line of a metric: its labels and value.
    package struct Sample {
        var labels: [String: String]
        var value: Double

        package init(_ labels: [String: String], _ value: Double) {
            self.labels = labels
            self.value = value
        }
    }

    package private(set) var text = ""

    /// One metric (`prefix` + `name`) and its samples, one per label set.
    package mutating func metric(_ name: String, _ kind: Kind, help: String, _ samples: [Sample]) {
        text += "# HELP \(prefix)\(name) \(Self.escapeHelp(help))\n# TYPE \(prefix)\(name) \(kind.rawValue)\n"
        for sample in samples {
            text += "\(prefix)\(name)"
            if !sample.labels.isEmpty {
                text += "{" + sample.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\(Self.escapeLabel($0.value))\"" }.joined(separator: ",") + "}"
            }
            text += " \(Self.format(sample.value))\n"
        }
    }

    /// A metric without labels.
    package mutating func metric(_ name: String, _ kind: Kind, help: String, _ value: Double) {
        metric(name, kind, help: help, [Sample([:], value)])
    }

    /// Integers without a fraction; others as Swift prints them (`4.17e-05`), which Prometheus
    /// reads (Go's `ParseFloat`).
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
