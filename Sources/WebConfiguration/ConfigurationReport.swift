import Foundation

/// `session-host config show` output: the effective values of a URL as text (with where each
/// was set) or as JSON (values only).
public enum ConfigurationReport {
    /// One JSON object: `{"asp": {…}, "sessionState": {…}, "enableSessionState": …}`, keys
    /// as the configuration attributes are named.
    public static func json(_ settings: EffectiveConfiguration) -> String {
        JSON.object(entries(settings).map { section in
            (section.jsonKey, section.jsonKey == "enableSessionState"
                ? section.values[0].value
                : .object(section.values.map { ($0.name, $0.value) }))
        }).rendered(indent: "")
    }

    /// The values by section, each with the file and line that set it, as `appcmd list config`.
    public static func text(_ settings: EffectiveConfiguration) -> String {
        var lines = [
            "site \"\(settings.site.name)\" (id \(settings.site.id)), URL \(settings.path)",
            "application \(settings.application.path) (\(settings.application.physicalPath))",
        ]
        for section in entries(settings) {
            lines.append("")
            lines.append(section.title)
            let width = section.values.map(\.name.count).max() ?? 0
            for entry in section.values {
                let name = entry.name.padding(toLength: width, withPad: " ", startingAt: 0)
                if case .array(let items) = entry.value {
                    lines.append("  \(name)  \(items.isEmpty ? "(none)" : "")")
                    for (item, provider) in zip(items, settings.sessionState.providers) {
                        let source = settings.sources["system.web/sessionState/providers/\(provider.name)"]
                        lines.append("    \(item.rendered(indent: nil))  [\(source.map(\.description) ?? "default")]")
                    }
                    continue
                }
                lines.append("  \(name)  \(entry.value.rendered(indent: nil))  [\(entry.source.map(\.description) ?? "default")]")
            }
        }
        return lines.joined(separator: "\n")
    }

    private struct Entry {
        var name: String
        var value: JSON
        var source: SourceLocation?
    }

    private struct Section {
        var title: String
        var jsonKey: String
        var values: [Entry]
    }

    private static func entries(_ settings: EffectiveConfiguration) -> [Section] {
        func entry(_ section: String, _ name: String, _ value: JSON) -> Entry {
            Entry(name: name, value: value, source: settings.sources["\(section)/\(name)"])
        }
        func time(_ value: ConfiguredTime, unit: Int64) -> JSON {
            switch value {
            case .seconds(let seconds): .integer(seconds / unit)
            case .infinite: .string("Infinite")
            }
        }
        let asp = settings.asp
        let aspSection = "system.webServer/asp/session"
        let session = settings.sessionState
        let sessionSection = "system.web/sessionState"
        let seconds = asp.timeoutSeconds
        let aspTimeout = String(format: "%02lld:%02lld:%02lld", seconds / 3600, seconds % 3600 / 60, seconds % 60)
        return [
            Section(title: aspSection, jsonKey: "asp", values: [
                entry(aspSection, "allowSessionState", .bool(asp.allowSessionState)),
                entry(aspSection, "keepSessionIdSecure", .bool(asp.keepSessionIdSecure)),
                entry(aspSection, "max", .integer(Int64(asp.max))),
                entry(aspSection, "timeout", .string(aspTimeout)),
            ]),
            Section(title: sessionSection, jsonKey: "sessionState", values: [
                entry(sessionSection, "mode", .string(session.mode.rawValue)),
                entry(sessionSection, "timeout", time(session.timeout, unit: 60)),
                entry(sessionSection, "cookieName", .string(session.cookieName)),
                entry(sessionSection, "cookieless", .string(session.cookieless.rawValue)),
                entry(sessionSection, "cookieSameSite", .string(session.cookieSameSite.rawValue)),
                entry(sessionSection, "regenerateExpiredSessionId", .bool(session.regenerateExpiredSessionId)),
                entry(sessionSection, "sqlConnectionString", .string(ConnectionStringRedaction.redacted(session.sqlConnectionString))),
                entry(sessionSection, "sqlCommandTimeout", time(session.sqlCommandTimeout, unit: 1)),
                entry(sessionSection, "sqlConnectionRetryInterval", time(session.sqlConnectionRetryInterval, unit: 1)),
                entry(sessionSection, "allowCustomSqlDatabase", .bool(session.allowCustomSqlDatabase)),
                entry(sessionSection, "useHostingIdentity", .bool(session.useHostingIdentity)),
                entry(sessionSection, "stateConnectionString", .string(ConnectionStringRedaction.redacted(session.stateConnectionString))),
                entry(sessionSection, "stateNetworkTimeout", time(session.stateNetworkTimeout, unit: 1)),
                entry(sessionSection, "customProvider", .string(session.customProvider)),
                entry(sessionSection, "partitionResolverType", .string(session.partitionResolverType)),
                entry(sessionSection, "sessionIDManagerType", .string(session.sessionIDManagerType)),
                entry(sessionSection, "compressionEnabled", .bool(session.compressionEnabled)),
                Entry(name: "providers", value: .array(session.providers.map { provider in
                    .object([
                        ("name", .string(provider.name)),
                        ("type", .string(provider.type)),
                        ("parameters", .object(provider.parameters.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })),
                    ])
                }), source: nil),
            ]),
            Section(title: "system.web/pages", jsonKey: "enableSessionState", values: [
                entry("system.web/pages", "enableSessionState", .string(settings.enableSessionState.rawValue)),
            ]),
        ]
    }
}

/// Just enough JSON for the report, with keys in the order given.
enum JSON {
    case bool(Bool)
    case integer(Int64)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    /// Pretty-printed when `indent` is non-nil, else on one line.
    func rendered(indent: String?) -> String {
        let inner = indent.map { $0 + "  " }
        let separator = indent == nil ? ", " : ",\n"
        let open = { (bracket: String) in indent == nil ? bracket : bracket + "\n" }
        let close = { (bracket: String) in indent.map { "\n" + $0 + bracket } ?? bracket }
        switch self {
        case .bool(let value): return value ? "true" : "false"
        case .integer(let value): return String(value)
        case .string(let value): return Self.quoted(value)
        case .array(let items):
            if items.isEmpty { return "[]" }
            return open("[") + items.map { (inner ?? "") + $0.rendered(indent: inner) }.joined(separator: separator) + close("]")
        case .object(let members):
            if members.isEmpty { return "{}" }
            return open("{") + members.map { (inner ?? "") + Self.quoted($0.0) + ": " + $0.1.rendered(indent: inner) }.joined(separator: separator) + close("}")
        }
    }

    private static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20: result += String(format: "\\u%04x", scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}

/// Connection strings as reports show them (`config show`, a folder's settings page): a
/// password (`Password=`/`Pwd=` of ADO.NET and libpq keywords, or a URI's `user:password@`)
/// becomes `********`.
enum ConnectionStringRedaction {
    static func redacted(_ text: String) -> String {
        var result = text.replacing(/(?i)(\b(?:password|pwd)\s*=\s*)('(?:[^']|'')*'|"(?:[^"]|"")*"|[^;\s]*)/) { match in
            match.output.1 + "********"
        }
        result = result.replacing(/(?i)(\b[a-z][a-z0-9+.-]*:\/\/[^:@\/\s]*:)([^@\/\s]*)@/) { match in
            match.output.1 + "********@"
        }
        return result
    }
}
