import Glibc

/// Writes a request's response (CGI headers, then body) to the web server.
///
/// Writes are gathered into FCGI_STDOUT records of up to 16 KiB. When the web server has closed
/// the connection (the client went away), a write fails; the writer then ignores the rest, so a
/// handler can finish without checking every call, and the thread moves on to the next request.
public struct FastCGIResponseWriter {
    private let output: ConnectionOutput

    /// Whether a write failed because the web server closed the connection.
    public var clientGone: Bool { output.failed }
    /// Bytes accepted so far (headers included).
    public var bytesWritten: Int { output.bytesWritten }

    init(output: ConnectionOutput) {
        self.output = output
    }

    /// Writes `bytes`; returns false once the client is gone.
    @discardableResult
    public mutating func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        output.write(bytes)
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
        output.flush()
    }

    /// Breaks the connection without ending the response properly, so the web server reports
    /// an incomplete response instead of passing on a truncated body as if it were whole. For a
    /// failure after the headers went out, when no error page can be sent any more.
    public mutating func abortConnection() {
        shutdown(output.fd, Int32(SHUT_RDWR))
        output.abandon()
    }
}
