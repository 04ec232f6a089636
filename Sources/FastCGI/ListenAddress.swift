/// Where the worker accepts FastCGI connections.
public enum ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// A unix socket, created with mode 0660 and removed when the server stops.
    case unix(path: String)
    /// An IPv4 TCP address (libfcgi binds IPv4 only). Prefer 127.0.0.1: anyone who can connect
    /// can send requests.
    case tcp(host: String, port: Int)
    /// A listening socket inherited from the parent process (spawn-fcgi and Apache mod_fcgid
    /// hand it over as file descriptor 0).
    case inherited(fd: Int32)

    /// Parses `unix:PATH`, `HOST:PORT` or `fd:N`.
    public init(parsing text: String) throws(ListenAddressError) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else {
                throw ListenAddressError(text: text, reason: "the socket path is empty")
            }
            guard path.utf8.count < 108 else {
                throw ListenAddressError(text: text, reason: "a unix socket path must be shorter than 108 bytes")
            }
            self = .unix(path: path)
        } else if text.hasPrefix("fd:") {
            guard let fd = Int32(text.dropFirst(3)), fd >= 0 else {
                throw ListenAddressError(text: text, reason: "expected fd:N with N a file descriptor number")
            }
            self = .inherited(fd: fd)
        } else if let colon = text.lastIndex(of: ":") {
            let host = String(text[..<colon])
            guard let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
                throw ListenAddressError(text: text, reason: "the port must be a number from 0 to 65535")
            }
            guard !host.isEmpty else {
                throw ListenAddressError(text: text, reason: "name the host (e.g. 127.0.0.1:\(port)); an empty host would listen on every interface")
            }
            self = .tcp(host: host, port: port)
        } else {
            throw ListenAddressError(text: text, reason: "expected unix:PATH, HOST:PORT or fd:N")
        }
    }

    public var description: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .tcp(let host, let port): "\(host):\(port)"
        case .inherited(let fd): "fd:\(fd)"
        }
    }
}

public struct ListenAddressError: Error, CustomStringConvertible {
    public let text: String
    public let reason: String
    public var description: String { "invalid listen address '\(text)': \(reason)" }
}
