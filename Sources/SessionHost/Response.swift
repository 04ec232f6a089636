public import HTTPTypes

/// What a handler answers.
public struct Response: Sendable {
    public var status: HTTPResponse.Status
    public var headers: HTTPFields
    public var cookies: [Cookie]
    public var body: Body

    public init(status: HTTPResponse.Status = .ok, headers: HTTPFields = [:], cookies: [Cookie] = [], body: Body = .empty) {
        self.status = status
        self.headers = headers
        self.cookies = cookies
        self.body = body
    }

    /// An HTML page (`text/html; charset=utf-8`).
    public static func html(_ html: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: htmlHeaders, body: .string(html))
    }

    /// Plain text (`text/plain; charset=utf-8`).
    public static func text(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: textHeaders, body: .string(text))
    }

    // Built once and shared (copy on write): a literal would build the fields' storage anew for
    // every response.
    private static let htmlHeaders: HTTPFields = [.contentType: "text/html; charset=utf-8"]
    private static let textHeaders: HTTPFields = [.contentType: "text/plain; charset=utf-8"]

    /// A redirect to `location` (path-absolute or absolute URL).
    public static func redirect(to location: String, status: HTTPResponse.Status = .found) -> Response {
        Response(status: status, headers: [.location: location])
    }

    public mutating func setCookie(_ cookie: Cookie) {
        cookies.append(cookie)
    }

    /// A response body: bytes known up front (sent with `Content-Length`) or written piece by
    /// piece by a closure (sent chunked by nginx).
    public struct Body: Sendable {
        enum Storage: Sendable {
            case bytes([UInt8])
            case stream(@Sendable (inout any ResponseBodyWriter) throws -> Void)
        }

        let storage: Storage

        public static var empty: Body { Body(storage: .bytes([])) }

        public static func bytes(_ bytes: [UInt8]) -> Body { Body(storage: .bytes(bytes)) }

        public static func string(_ text: String) -> Body { Body(storage: .bytes(Array(text.utf8))) }

        /// A body produced by `write` after the headers went out. It runs on the worker thread
        /// that serves the request; a write throws `ClientGone` once the client has left, which
        /// ends the response quietly. Any other error aborts the connection, so the client sees
        /// a truncated response rather than a complete-looking one.
        public static func stream(_ write: @escaping @Sendable (inout any ResponseBodyWriter) throws -> Void) -> Body {
            Body(storage: .stream(write))
        }
    }
}

extension Response {
    /// The whole body (SessionHostTesting): a streamed one is run into memory; an error it
    /// throws after the head, which would cut the connection, comes back beside the bytes so far.
    package func collectedBody() -> CollectedBody {
        switch body.storage {
        case .bytes(let bytes):
            return CollectedBody(bytes: bytes)
        case .stream(let produce):
            var collector: any ResponseBodyWriter = CollectingBodyWriter()
            var failure: String?
            do { try produce(&collector) } catch { failure = String(describing: error) }
            return CollectedBody(bytes: (collector as? CollectingBodyWriter)?.bytes ?? [], failure: failure)
        }
    }
}

/// A body as `collectedBody()` ran it.
package struct CollectedBody: Sendable {
    package var bytes: [UInt8]
    /// What a streamed body threw, if it did.
    package var failure: String?
}

/// A streamed body's bytes, kept in memory.
private struct CollectingBodyWriter: ResponseBodyWriter {
    var bytes: [UInt8] = []

    mutating func write(_ bytes: [UInt8]) throws(ClientGone) { self.bytes += bytes }
    mutating func write(_ text: String) throws(ClientGone) { bytes += text.utf8 }
    mutating func flush() throws(ClientGone) {}
}

/// Where a streamed body goes.
public protocol ResponseBodyWriter {
    mutating func write(_ bytes: [UInt8]) throws(ClientGone)
    mutating func write(_ text: String) throws(ClientGone)
    /// Sends what is buffered now instead of when the buffer fills.
    mutating func flush() throws(ClientGone)
}

/// The client closed the connection; nothing more can be sent.
public struct ClientGone: Error, Hashable {}
