import Crypto
import Foundation

/// One access-log line (`--access-log`), close to nginx's `combined` format, then what nginx
/// cannot know:
///
/// `127.0.0.1 - - [30/Nov/2026:19:50:01 +0000] "GET /shop/ HTTP/1.1" 200 2188 "-" "curl/7.88.1" session=3f9a0c1d77b2e4a1 request=17 duration=1.234ms`
///
/// The byte count is the response as the worker wrote it (head and body). `session` is the first
/// 16 hex digits of the SHA-256 of the request's ASP.NET session ID (`-` without one): the same
/// session gets the same value in every line and every worker, and the line never carries the
/// ID itself, which would open the session to anyone who reads the log. Quotes, backslashes and
/// bytes outside printable ASCII in the request line and headers are written as `\xHH`, as nginx
/// does.
struct AccessLogLine: CustomStringConvertible {
    var remoteAddress: String
    var method: String
    var uri: String
    var protocolName: String
    var status: Int
    var bytes: Int
    var referer: String
    var userAgent: String
    var sessionHash: String
    var request: UInt64
    var milliseconds: Double
    var time: time_t

    /// `param`: the request's FastCGI parameter of a name.
    init(_ param: (String) -> String?, status: Int, bytes: Int, sessionID: String?, request: UInt64, milliseconds: Double, time: time_t = Glibc.time(nil)) {
        remoteAddress = param("REMOTE_ADDR") ?? "-"
        method = param("REQUEST_METHOD") ?? "-"
        uri = param("REQUEST_URI") ?? "-"
        protocolName = param("SERVER_PROTOCOL") ?? "HTTP/1.1"
        self.status = status
        self.bytes = bytes
        referer = param("HTTP_REFERER") ?? "-"
        userAgent = param("HTTP_USER_AGENT") ?? "-"
        sessionHash = sessionID.map(Self.hash) ?? "-"
        self.request = request
        self.milliseconds = milliseconds
        self.time = time
    }

    /// The first 16 hex digits of the SHA-256 of `id`.
    static func hash(_ id: String) -> String {
        SHA256.hash(data: Data(id.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    var description: String {
        let request = "\(Self.escaped(method)) \(Self.escaped(uri)) \(Self.escaped(protocolName))"
        return "\(Self.escaped(remoteAddress)) - - [\(Self.localTime(time))] \"\(request)\" \(status) \(bytes) \"\(Self.escaped(referer))\" \"\(Self.escaped(userAgent))\" "
            + "session=\(sessionHash) request=\(self.request) duration=\(String(format: "%.3f", milliseconds))ms"
    }

    /// nginx's `$time_local`: `30/Nov/2026:19:50:01 +0000`.
    static func localTime(_ time: time_t) -> String {
        var seconds = time
        var parts = tm()
        localtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%d/%b/%Y:%H:%M:%S %z", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Printable ASCII as it is; `"`, `\` and every other byte as `\xHH`.
    static func escaped(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 < 0x20 || $0 > 0x7E || $0 == 0x22 || $0 == 0x5C }) else { return text }
        var out = ""
        for byte in text.utf8 {
            if byte < 0x20 || byte > 0x7E || byte == 0x22 || byte == 0x5C {
                out += String(format: "\\x%02X", byte)
            } else {
                out.unicodeScalars.append(UnicodeScalar(byte))
            }
        }
        return out
    }
}
