public import SessionHost

/// What the host answered a `TestClient` request with, as a browser would receive it.
public struct TestResponse: Sendable {
    public var status: HTTPResponse.Status
    /// The response headers, `Set-Cookie` lines included (one per cookie).
    public var headers: HTTPFields
    /// The cookies the response set (or removed: `maxAge` 0).
    public var cookies: [Cookie]
    /// The body; a streamed body is collected whole.
    public var body: [UInt8]
    /// What a streamed body threw after the head went out (nginx's client would have seen the
    /// connection cut), or nil.
    public var bodyFailure: String?
    /// The path and query this answers (where a relative `Location` starts from).
    public var requestTarget = "/"
    /// The redirects `execute` followed on the way here (their locations, oldest first).
    public var redirects: [String] = []

    init(_ response: Response) {
        status = response.status
        cookies = response.cookies
        var fields = response.headers
        for cookie in response.cookies { fields.append(HTTPField(name: .setCookie, value: cookie.headerValue)) }
        headers = fields
        let collected = response.collectedBody()
        body = collected.bytes
        bodyFailure = collected.failure
    }

    /// The body as UTF-8 text.
    public var text: String { String(decoding: body, as: UTF8.self) }

    /// Where a redirect points (`Location`).
    public var location: String? { headers[.location] }

    /// The value `Set-Cookie` gave cookie `name` in this response.
    public func cookie(named name: String) -> Cookie? {
        cookies.last { $0.name == name }
    }
}
