/// Handlers by path: exact paths first, then the longest matching prefix.
public struct Routes: Sendable {
    public typealias SyncHandler = @Sendable (Request) throws -> Response
    public typealias AsyncHandler = @Sendable (Request) async throws -> Response

    enum Handler: Sendable {
        /// Runs on the worker thread that serves the request.
        case sync(SyncHandler)
        /// Runs on Swift's concurrency pool; the worker thread waits for it.
        case async(AsyncHandler)
    }

    private var exact: [String: Handler] = [:]
    /// Longest first, so the most specific prefix wins.
    private var prefixes: [(prefix: String, handler: Handler)] = []

    public init() {}

    /// Serves exactly `path` (e.g. `/`, `/about`).
    public mutating func exact(_ path: String, _ handler: @escaping SyncHandler) {
        exact[path] = .sync(handler)
    }

    public mutating func exact(_ path: String, _ handler: @escaping AsyncHandler) {
        exact[path] = .async(handler)
    }

    /// Serves `prefix` and every path below it, segment-wise: `/docs` matches `/docs`,
    /// `/docs/` and `/docs/a`, not `/docsx`. `/` matches everything.
    public mutating func prefix(_ prefix: String, _ handler: @escaping SyncHandler) {
        addPrefix(prefix, .sync(handler))
    }

    public mutating func prefix(_ prefix: String, _ handler: @escaping AsyncHandler) {
        addPrefix(prefix, .async(handler))
    }

    private mutating func addPrefix(_ prefix: String, _ handler: Handler) {
        let trimmed = prefix.count > 1 && prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
        prefixes.removeAll { $0.prefix == trimmed }
        prefixes.append((trimmed, handler))
        prefixes.sort { $0.prefix.count > $1.prefix.count }
    }

    func handler(for path: String) -> Handler? {
        if let handler = exact[path] { return handler }
        for (prefix, handler) in prefixes {
            if prefix == "/" || path == prefix || (path.hasPrefix(prefix) && path.utf8.dropFirst(prefix.utf8.count).first == UInt8(ascii: "/")) {
                return handler
            }
        }
        return nil
    }
}
