/// ADO.NET connection-string syntax (`key=value;…`, values optionally quoted with `'` or `"`,
/// a doubled quote inside quotes standing for one).
enum ConnectionStringSyntax {
    /// The options, keys lower-cased and trimmed; the last occurrence of a key wins.
    static func parse(_ text: String) throws(ValueError) -> [String: String] {
        var options: [String: String] = [:]
        let characters = Array(text)
        var index = 0
        func fail() -> ValueError {
            ValueError(message: "Format of the initialization string does not conform to specification starting at index \(index).")
        }
        while index < characters.count {
            let start = index
            while index < characters.count, characters[index] == " " || characters[index] == ";" { index += 1 }
            if index == characters.count { break }
            var key = ""
            while index < characters.count, characters[index] != "=" {
                if characters[index] == ";" { index = start; throw fail() }
                key.append(characters[index])
                index += 1
            }
            guard index < characters.count else { index = start; throw fail() }
            index += 1
            key = key.trimmingBlanks.lowercased()
            guard !key.isEmpty else { index = start; throw fail() }
            while index < characters.count, characters[index] == " " { index += 1 }
            var value = ""
            if index < characters.count, characters[index] == "\"" || characters[index] == "'" {
                let quote = characters[index]
                index += 1
                var closed = false
                while index < characters.count {
                    if characters[index] == quote {
                        if index + 1 < characters.count, characters[index + 1] == quote {
                            value.append(quote)
                            index += 2
                            continue
                        }
                        index += 1
                        closed = true
                        break
                    }
                    value.append(characters[index])
                    index += 1
                }
                guard closed else { index = start; throw fail() }
                while index < characters.count, characters[index] == " " { index += 1 }
                guard index == characters.count || characters[index] == ";" else { index = start; throw fail() }
            } else {
                while index < characters.count, characters[index] != ";" {
                    value.append(characters[index])
                    index += 1
                }
                value = value.trimmingBlanks
            }
            options[key] = value
        }
        return options
    }
}

/// A `stateConnectionString`: `tcpip=host:port` or `tcpip=[IPv6]:port`.
public struct StateServerAddress: Sendable, Hashable {
    public var host: String
    public var port: UInt16

    static let invalidMessage = "The <sessionState> stateConnectionString is invalid. It must have the format tcpip=<server>:<port>, where <server> is a valid IPv4 address, a machine name using only ASCII characters, or a valid IPv6 address enclosed within square brackets, and <port> is an unsigned integer ranging from 0 to 65535 (e.g., tcpip=127.0.0.1:42424, tcpip=localhost:42424, or tcpip=[::1]:42424)."

    /// nil unless `text` has the form System.Web accepts.
    public init?(_ text: String) {
        guard text.hasPrefix("tcpip=") else { return nil }
        let address = text.dropFirst("tcpip=".count)
        let hostPart: Substring
        let portPart: Substring
        if address.hasPrefix("[") {
            guard let close = address.firstIndex(of: "]"), address[address.index(after: close)...].hasPrefix(":") else { return nil }
            hostPart = address[address.index(after: address.startIndex)..<close]
            portPart = address[address.index(close, offsetBy: 2)...]
            guard hostPart.contains(":") else { return nil }
        } else {
            let parts = address.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2 else { return nil }
            hostPart = parts[0]
            portPart = parts[1]
        }
        guard !hostPart.isEmpty, hostPart.allSatisfy(\.isASCII), let port = UInt16(portPart) else { return nil }
        host = String(hostPart)
        self.port = port
    }
}
