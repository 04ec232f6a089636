import Foundation

/// A parsed attribute value.
enum ConfigValue: Sendable, Hashable {
    case bool(Bool)
    case string(String)
    case integer(Int64)
    /// Minutes; nil is `Infinite`.
    case minutes(Int64?)
    /// Seconds; nil is `Infinite`.
    case seconds(Int64?)
    /// An IIS `timeSpan` (hh:mm:ss), in seconds.
    case timeSpan(Int64)
    /// The canonical name of an enumeration case.
    case enumeration(String)
}

/// Why a value does not parse or validate; the caller adds the file, line and attribute.
struct ValueError: Error {
    var message: String
}

/// How one attribute's text becomes a value, with the texts .NET and IIS give when it does not.
struct ValueParser: Sendable {
    let parse: @Sendable (_ text: String, _ attribute: String) throws(ValueError) -> ConfigValue

    static let string = ValueParser { text, _ in .string(text) }

    /// .NET's BooleanConverter: `true`/`false` in any case, surrounding blanks allowed.
    static let boolean = ValueParser { text, attribute throws(ValueError) in
        switch text.trimmingBlanks.lowercased() {
        case "true": return .bool(true)
        case "false": return .bool(false)
        default: throw cannotParse(attribute, "\(text) is not a valid value for Boolean.")
        }
    }

    /// System.Configuration's GenericEnumConverter: exact, case-sensitive names only.
    static func enumeration(_ names: [String]) -> ValueParser {
        ValueParser { text, attribute throws(ValueError) in
            guard names.contains(text) else {
                throw cannotParse(attribute, "The enumeration value must be one of the following: \(names.joined(separator: ", ")).")
            }
            return .enumeration(text)
        }
    }

    /// An enumeration with its own parser in System.Web (`cookieless`, `enableSessionState`):
    /// `aliases` maps accepted spellings to the canonical name.
    static func webEnumeration(_ accepted: [String], aliases: [String: String] = [:]) -> ValueParser {
        ValueParser { text, attribute throws(ValueError) in
            guard accepted.contains(text) else {
                throw ValueError(message: "The '\(attribute)' attribute must be one of the following values: \(accepted.joined(separator: ", ")).")
            }
            return .enumeration(aliases[text] ?? text)
        }
    }

    /// TimeSpanMinutesOrInfiniteConverter with a TimeSpanValidator(minimum…TimeSpan.MaxValue).
    static func minutesOrInfinite(minimum: Int64) -> ValueParser {
        ValueParser { text, attribute throws(ValueError) in
            if text == "Infinite" { return .minutes(nil) }
            guard let minutes = Int64(text.trimmingBlanks), minutes.multipliedReportingOverflow(by: ticksPerMinute).overflow == false else {
                // TimeSpanMinutesConverter calls long.Parse unguarded: .NET's FormatException text.
                throw cannotParse(attribute, "Input string was not in a correct format.")
            }
            guard minutes >= minimum else {
                throw notValid(attribute, "The value must be inside the range \(formatTimeSpan(seconds: minimum * 60))-\(maximumTimeSpan).")
            }
            return .minutes(minutes)
        }
    }

    /// TimeSpanSecondsOrInfiniteConverter; `positive` adds PositiveTimeSpanValidator.
    static func secondsOrInfinite(positive: Bool = false, allowsInfinite: Bool = true) -> ValueParser {
        ValueParser { text, attribute throws(ValueError) in
            if allowsInfinite, text == "Infinite" { return .seconds(nil) }
            guard let seconds = Int64(text.trimmingBlanks), seconds.multipliedReportingOverflow(by: ticksPerSecond).overflow == false else {
                throw cannotParse(attribute, "The expected format is an integer value in seconds.")
            }
            if positive, seconds <= 0 {
                throw notValid(attribute, "The time span value must be positive.")
            }
            return .seconds(seconds)
        }
    }

    /// An IIS `uint`; `-1` (how WMI and the reference page show "unlimited") means 4294967295.
    static let unsignedInteger = ValueParser { text, attribute throws(ValueError) in
        let trimmed = text.trimmingBlanks
        if trimmed == "-1" { return .integer(Int64(UInt32.max)) }
        guard let value = UInt32(trimmed) else {
            throw cannotParse(attribute, "The value must be an integer from 0 to 4294967295 (or -1 for unlimited).")
        }
        return .integer(Int64(value))
    }

    /// An IIS `timeSpan` written `hh:mm:ss` or `d.hh:mm:ss`, within `range` seconds, whole
    /// multiples of `granularity` seconds (IIS schema `timeSpanRange min,max,granularity`).
    static func timeSpan(range: ClosedRange<Int64>, granularity: Int64) -> ValueParser {
        ValueParser { text, attribute throws(ValueError) in
            guard let seconds = parseTimeSpan(text.trimmingBlanks) else {
                throw cannotParse(attribute, "The expected format is hh:mm:ss (or d.hh:mm:ss).")
            }
            guard range.contains(seconds) else {
                throw notValid(attribute, "The value must be inside the range \(formatTimeSpan(seconds: range.lowerBound))-\(formatTimeSpan(seconds: range.upperBound)).")
            }
            guard seconds % granularity == 0 else {
                throw notValid(attribute, "The value must be a whole number of minutes.")
            }
            return .timeSpan(seconds)
        }
    }

    static func cannotParse(_ attribute: String, _ reason: String) -> ValueError {
        ValueError(message: "The value of the property '\(attribute)' cannot be parsed. The error is: \(reason)")
    }

    static func notValid(_ attribute: String, _ reason: String) -> ValueError {
        ValueError(message: "The value for the property '\(attribute)' is not valid. The error is: \(reason)")
    }

    private static let ticksPerSecond: Int64 = 10_000_000
    private static let ticksPerMinute: Int64 = 60 * ticksPerSecond
    /// TimeSpan.MaxValue as .NET prints it.
    static let maximumTimeSpan = "10675199.02:48:05.4775807"
}

/// `[d.]hh:mm:ss` in seconds; nil when malformed.
func parseTimeSpan(_ text: String) -> Int64? {
    var days: Int64 = 0
    var clock = Substring(text)
    if let dot = text.firstIndex(of: "."), let colon = text.firstIndex(of: ":"), dot < colon {
        guard let parsed = Int64(text[..<dot]), parsed >= 0 else { return nil }
        days = parsed
        clock = text[text.index(after: dot)...]
    }
    let parts = clock.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCIIDigit) }),
          let hours = Int64(parts[0]), let minutes = Int64(parts[1]), let seconds = Int64(parts[2]),
          hours < 24 || days == 0, minutes < 60, seconds < 60, days < 100_000, hours < 100_000
    else { return nil }
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
}

/// Seconds as .NET formats a TimeSpan: `[d.]hh:mm:ss`.
func formatTimeSpan(seconds: Int64) -> String {
    let days = seconds / 86_400
    let rest = seconds % 86_400
    let clock = String(format: "%02lld:%02lld:%02lld", rest / 3600, rest % 3600 / 60, rest % 60)
    return days > 0 ? "\(days).\(clock)" : clock
}

extension String {
    /// Without leading and trailing spaces, tabs and line breaks (what .NET's parsers allow).
    var trimmingBlanks: String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !blank($0) }), let last = lastIndex(where: { !blank($0) }) else { return "" }
        return String(self[first...last])
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
