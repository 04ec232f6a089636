public import HTTPTypes

/// An error that picks the response a handler's request gets: throw one (or a type of yours
/// conforming to this) and the client sees `status` with `message` on the host's error page.
/// Every other error a handler throws is a generic 500 page with a reference to the log.
///
/// ```swift
/// guard let product = catalog[id] else { throw HTTPError(.notFound, message: "No such product.") }
/// ```
///
/// As with any thrown error, the request's session changes are discarded (README, Handlers).
public protocol HTTPResponseError: Error {
    /// The response's status.
    var status: HTTPResponse.Status { get }
    /// The text of the error page, sent to the client: nothing internal. Default: a sentence
    /// for the status.
    var message: String? { get }
    /// Extra response headers (`Allow`, `Retry-After`, `WWW-Authenticate`, …). Default: none.
    var headers: HTTPFields { get }
}

extension HTTPResponseError {
    public var message: String? { nil }
    public var headers: HTTPFields { [:] }
}

/// A status, and optionally a message and headers, thrown by a handler.
public struct HTTPError: HTTPResponseError, Hashable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String?
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, message: String? = nil, headers: HTTPFields = [:]) {
        self.status = status
        self.message = message
        self.headers = headers
    }

    public var description: String {
        "\(status.code) \(status.reasonPhrase)" + (message.map { ": \($0)" } ?? "")
    }
}
