import CFastCGI
import Glibc

/// Writes a request's response (CGI headers, then body) to the web server.
///
/// Writes are buffered by libfcgi into records of up to 8 KiB. When the web server has closed
/// the connection (the client went away), a write fails; the writer then ignores the rest, so a
/// handler can finish without checking every call, and the thread moves on to the next request.
public struct FastCGIResponseWriter {
    private let stream: UnsafeMutablePointer<FCGX_Stream>
    private let connection: Int32
    /// Whether a write failed because the web server closed the connection.
    public private(set) var clientGone = false
    /// Bytes accepted so far (headers included).
    public private(set) var bytesWritten = 0

    init(stream: UnsafeMutablePointer<FCGX_Stream>, connection: Int32) {
        self.stream = stream
        self.connection = connection
    }

    /// Writes `bytes`; returns false once the client is gone.
    @discardableResult
    public mutating func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !clientGone else { return false }
        var offset = 0
        while offset < bytes.count {
            let chunk = min(bytes.count - offset, 1 << 20)
            let written = FCGX_PutStr(bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: CChar.self), Int32(chunk), stream)
            guard written == Int32(chunk) else {
                clientGone = true
                return false
            }
            offset += chunk
        }
        bytesWritten += bytes.count
        return true
    }

    @discardableResult
    public mutating func write(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { write($0) }
    }

    @discardableResult
    public mutating func write(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    /// Sends what is buffered now (useful between chunks of a slow, streamed body).
    @discardableResult
    public mutating func flush() -> Bool {
        guard !clientGone else { return false }
        if FCGX_FFlush(stream) != 0 { clientGone = true }
        return !clientGone
    }

    /// Breaks the connection without ending the response properly, so the web server reports
    /// an incomplete response instead of passing on a truncated body as if it were whole. For a
    /// failure after the headers went out, when no error page can be sent any more.
    public mutating func abortConnection() {
        shutdown(connection, Int32(SHUT_RDWR))
        clientGone = true
    }
}
