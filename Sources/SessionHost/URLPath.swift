/// Percent-decoding and normalisation of request paths and query strings.
enum URLPath {
    /// The decoded, normalised path of `rawPath`: `.` and empty segments dropped, `..` resolved.
    /// Returns nil for a path that is malformed (bad percent escape, NUL, invalid UTF-8, not
    /// starting with `/`) or whose `..` segments climb above the root.
    /// A trailing slash is kept: `/app/` names a directory, `/app` a resource.
    static func normalize(_ rawPath: Substring) -> String? {
        // Most paths have no escape and no empty, `.` or `..` segment (a `/` never followed by
        // `/` or `.`): one pass over the bytes and they are used as they are.
        var previous: UInt8 = 0
        var plain = rawPath.first == "/"
        for byte in rawPath.utf8 where plain {
            if byte == UInt8(ascii: "%") || byte == 0 || (previous == UInt8(ascii: "/") && (byte == UInt8(ascii: "/") || byte == UInt8(ascii: "."))) {
                plain = false
            }
            previous = byte
        }
        if plain { return String(rawPath) }
        guard rawPath.first == "/", let decoded = percentDecode(rawPath, plusIsSpace: false),
              !decoded.utf8.contains(0)
        else { return nil }
        // Most paths have no empty, `.` or `..` segment: a `/` never followed by `/` or `.`.
        if !zip(decoded.utf8, decoded.utf8.dropFirst()).contains(where: { $0 == UInt8(ascii: "/") && ($1 == UInt8(ascii: "/") || $1 == UInt8(ascii: ".")) }) {
            return decoded
        }
        var segments: [Substring] = []
        for segment in decoded.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..":
                guard segments.popLast() != nil else { return nil }
            default: segments.append(segment)
            }
        }
        let trailingSlash = decoded.hasSuffix("/") || decoded.hasSuffix("/.") || decoded.hasSuffix("/..")
        if segments.isEmpty { return "/" }
        return "/" + segments.joined(separator: "/") + (trailingSlash ? "/" : "")
    }

    /// A decoded path made safe for a `Location` header: bytes outside RFC 3986's path characters
    /// are percent-encoded (`%` itself included).
    static func percentEncodePath(_ path: String) -> String {
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/".utf8)
        var encoded = ""
        for byte in path.utf8 {
            if allowed.contains(byte) {
                encoded.unicodeScalars.append(UnicodeScalar(byte))
            } else {
                encoded += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return encoded
    }

    /// `name=value` pairs of a query string, decoded (`+` is a space), in order.
    static func queryItems(_ query: Substring) -> [QueryItem] {
        query.split(separator: "&", omittingEmptySubsequences: true).compactMap { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = percentDecode(parts[0], plusIsSpace: true) else { return nil }
            let value = parts.count > 1 ? percentDecode(parts[1], plusIsSpace: true) : ""
            guard let value else { return nil }
            return QueryItem(name: name, value: value)
        }
    }

    /// Decodes `%XX` escapes; nil for a malformed escape or bytes that are not UTF-8.
    static func percentDecode(_ text: Substring, plusIsSpace: Bool) -> String? {
        let utf8 = text.utf8
        guard utf8.contains(where: { $0 == UInt8(ascii: "%") || (plusIsSpace && $0 == UInt8(ascii: "+")) }) else {
            return String(text)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count)
        var index = utf8.startIndex
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "%") {
                let high = utf8.index(after: index)
                guard high != utf8.endIndex else { return nil }
                let low = utf8.index(after: high)
                guard low != utf8.endIndex, let h = hexValue(utf8[high]), let l = hexValue(utf8[low]) else { return nil }
                bytes.append(h << 4 | l)
                index = utf8.index(after: low)
            } else {
                bytes.append(plusIsSpace && byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
                index = utf8.index(after: index)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// One `name=value` pair of a query string.
public struct QueryItem: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
