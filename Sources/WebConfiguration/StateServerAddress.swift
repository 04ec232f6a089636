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
