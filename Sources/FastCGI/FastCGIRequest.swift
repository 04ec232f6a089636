/// One request as the web server sent it: its CGI parameters and its whole body.
///
/// Everything is copied out of libfcgi's buffers, so the value outlives the FastCGI request.
public struct FastCGIRequest: Sendable {
    /// The CGI parameters in the order the web server sent them (`REQUEST_METHOD`,
    /// `REQUEST_URI`, `HTTP_COOKIE`, …).
    public var params: FastCGIParams
    /// The request body (FCGI_STDIN), read in full and within the configured limit.
    public var body: [UInt8]

    public init(params: FastCGIParams, body: [UInt8] = []) {
        self.params = params
        self.body = body
    }
}

/// CGI parameters: a few dozen pairs, so a linear scan beats hashing.
public struct FastCGIParams: Sendable, Sequence {
    private var pairs: [(name: String, value: String)]

    public init(_ pairs: [(name: String, value: String)] = []) {
        self.pairs = pairs
    }

    /// The first value sent under `name`.
    public subscript(name: String) -> String? {
        for pair in pairs where pair.name == name { return pair.value }
        return nil
    }

    public mutating func append(name: String, value: String) {
        pairs.append((name, value))
    }

    public var count: Int { pairs.count }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        pairs.makeIterator()
    }
}
