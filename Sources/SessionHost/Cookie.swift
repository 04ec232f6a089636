public import Foundation

/// A cookie to set on the response (`Set-Cookie`), with every attribute of RFC 6265bis.
public struct Cookie: Sendable, Hashable {
    public enum SameSite: String, Sendable, Hashable {
        case strict = "Strict"
        case lax = "Lax"
        case none = "None"
    }

    public let name: String
    public let value: String
    public var path: String?
    public var domain: String?
    public var expires: Date?
    public var maxAge: Int?
    public var secure: Bool
    public var httpOnly: Bool
    public var sameSite: SameSite?

    /// Names must be RFC 6265 tokens and values cookie-octets, so nothing can break out of the
    /// header. `HttpOnly` is on unless asked otherwise.
    public init(
        name: String, value: String, path: String? = "/", domain: String? = nil, expires: Date? = nil,
        maxAge: Int? = nil, secure: Bool = false, httpOnly: Bool = true, sameSite: SameSite? = .lax
    ) throws(CookieError) {
        guard !name.isEmpty, name.utf8.allSatisfy(Self.isTokenByte) else { throw .invalidName(name) }
        guard value.utf8.allSatisfy(Self.isCookieOctet) else { throw .invalidValue(name: name) }
        for attribute in [path, domain] {
            if let attribute, !attribute.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ";") }) {
                throw .invalidAttribute(name: name)
            }
        }
        self.name = name
        self.value = value
        self.path = path
        self.domain = domain
        self.expires = expires
        self.maxAge = maxAge
        self.secure = secure
        self.httpOnly = httpOnly
        self.sameSite = sameSite
    }

    /// A cookie that makes the browser delete `name` (empty value, expired).
    public static func removal(of name: String, path: String? = "/", domain: String? = nil) throws(CookieError) -> Cookie {
        try Cookie(name: name, value: "", path: path, domain: domain, expires: Date(timeIntervalSince1970: 0), maxAge: 0)
    }

    /// The value of a `Set-Cookie` header.
    public var headerValue: String {
        var text = "\(name)=\(value)"
        if let path { text += "; Path=\(path)" }
        if let domain { text += "; Domain=\(domain)" }
        if let expires { text += "; Expires=\(Self.httpDate(expires))" }
        if let maxAge { text += "; Max-Age=\(maxAge)" }
        // Browsers reject SameSite=None without Secure.
        if secure || sameSite == SameSite.none { text += "; Secure" }
        if httpOnly { text += "; HttpOnly" }
        if let sameSite { text += "; SameSite=\(sameSite.rawValue)" }
        return text
    }

    /// Parses a request's `Cookie` header. Malformed pairs are skipped; for a repeated name the
    /// first pair wins (browsers send the most specific path first).
    public static func parse(header: String) -> [String: String] {
        var cookies: [String: String] = [:]
        for pair in header.split(separator: ";") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else { continue }
            let name = parts[0].trimmingCharacters(in: .whitespaces)
            var value = Substring(parts[1].trimmingCharacters(in: .whitespaces))
            if value.count >= 2, value.first == "\"", value.last == "\"" { value = value.dropFirst().dropLast() }
            guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte), value.utf8.allSatisfy(isCookieOctet),
                  cookies[name] == nil
            else { continue }
            cookies[name] = String(value)
        }
        return cookies
    }

    /// The first well-formed pair named `name` in a `Cookie` header (what `parse` would give).
    static func value(named name: String, header: String) -> String? {
        guard header.utf8.count >= name.utf8.count else { return nil }
        for pair in header.utf8.split(separator: UInt8(ascii: ";")) {
            guard let equals = pair.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let key = pair[..<equals].trimmingSpaces
            guard key.elementsEqual(name.utf8) else {
                // A malformed pair of another name is skipped, like `parse` does.
                continue
            }
            var value = pair[pair.index(after: equals)...].trimmingSpaces
            if value.count >= 2, value.first == UInt8(ascii: "\""), value.last == UInt8(ascii: "\"") { value = value.dropFirst().dropLast() }
            guard !key.isEmpty, key.allSatisfy(isTokenByte), value.allSatisfy(isCookieOctet) else { continue }
            return String(decoding: value, as: UTF8.self)
        }
        return nil
    }

    static func isTokenByte(_ byte: UInt8) -> Bool {
        guard byte > 0x20, byte < 0x7F else { return false }
        return !"()<>@,;:\\\"/[]?={}".utf8.contains(byte)
    }

    static func isCookieOctet(_ byte: UInt8) -> Bool {
        byte == 0x21 || (0x23...0x2B).contains(byte) || (0x2D...0x3A).contains(byte)
            || (0x3C...0x5B).contains(byte) || (0x5D...0x7E).contains(byte)
    }

    private static func httpDate(_ date: Date) -> String {
        date.formatted(Date.VerbatimFormatStyle(
            format: "\(weekday: .abbreviated), \(day: .twoDigits) \(month: .abbreviated) \(year: .defaultDigits) \(hour: .twoDigits(clock: .twentyFourHour, hourCycle: .zeroBased)):\(minute: .twoDigits):\(second: .twoDigits) GMT",
            locale: Locale(identifier: "en_US_POSIX"), timeZone: TimeZone(identifier: "GMT")!, calendar: Calendar(identifier: .gregorian)))
    }
}

public enum CookieError: Error, Hashable, CustomStringConvertible {
    case invalidName(String)
    case invalidValue(name: String)
    case invalidAttribute(name: String)

    public var description: String {
        switch self {
        case .invalidName(let name): "invalid cookie name '\(name)': it must be a non-empty token"
        case .invalidValue(let name): "invalid value for cookie '\(name)': only cookie-octets are allowed (no spaces, quotes, commas, semicolons or backslashes)"
        case .invalidAttribute(let name): "invalid Path or Domain for cookie '\(name)'"
        }
    }
}

extension Substring.UTF8View.SubSequence {
    /// Without leading and trailing spaces and tabs.
    fileprivate var trimmingSpaces: Substring.UTF8View.SubSequence {
        var trimmed = self
        while let first = trimmed.first, first == 0x20 || first == 0x09 { trimmed = trimmed.dropFirst() }
        while let last = trimmed.last, last == 0x20 || last == 0x09 { trimmed = trimmed.dropLast() }
        return trimmed
    }
}
