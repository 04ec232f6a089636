public import SessionState
/// Handlers by path: exact paths first, then the longest matching prefix. Each handler says what
/// it needs of the two session domains (nothing, unless told).
public struct Routes: Sendable {
    public typealias SyncHandler = @Sendable (Request) throws -> Response
    public typealias AsyncHandler = @Sendable (Request) async throws -> Response

    enum Handler: Sendable {
        /// Runs on the worker thread that serves the request.
        case sync(SyncHandler)
        /// Runs on Swift's concurrency pool; the worker thread waits for it.
        case async(AsyncHandler)
    }

    struct Route: Sendable {
        var handler: Handler
        var sessions: SessionRequirements
    }

    private var exact: [String: Route] = [:]
    /// By last path segment, as IIS maps handlers by file name.
    private var named: [String: Route] = [:]
    /// Longest first, so the most specific prefix wins.
    private var prefixes: [(prefix: String, route: Route)] = []

    public init() {}

    /// Serves exactly `path` (e.g. `/`, `/about`).
    public mutating func exact(_ path: String, sessions: SessionRequirements = .none, _ handler: @escaping SyncHandler) {
        exact[path] = Route(handler: .sync(handler), sessions: sessions)
    }

    public mutating func exact(_ path: String, sessions: SessionRequirements = .none, _ handler: @escaping AsyncHandler) {
        exact[path] = Route(handler: .async(handler), sessions: sessions)
    }

    /// Serves every path whose last segment is `name`, in any folder: `probe` matches `/probe`,
    /// `/a/b/probe`. Exact paths take precedence; these take precedence over prefixes.
    public mutating func named(_ name: String, sessions: SessionRequirements = .none, _ handler: @escaping SyncHandler) {
        named[name] = Route(handler: .sync(handler), sessions: sessions)
    }

    public mutating func named(_ name: String, sessions: SessionRequirements = .none, _ handler: @escaping AsyncHandler) {
        named[name] = Route(handler: .async(handler), sessions: sessions)
    }

    /// Serves `prefix` and every path below it, segment-wise: `/docs` matches `/docs`,
    /// `/docs/` and `/docs/a`, not `/docsx`. `/` matches everything.
    public mutating func prefix(_ prefix: String, sessions: SessionRequirements = .none, _ handler: @escaping SyncHandler) {
        addPrefix(prefix, Route(handler: .sync(handler), sessions: sessions))
    }

    public mutating func prefix(_ prefix: String, sessions: SessionRequirements = .none, _ handler: @escaping AsyncHandler) {
        addPrefix(prefix, Route(handler: .async(handler), sessions: sessions))
    }

    private mutating func addPrefix(_ prefix: String, _ route: Route) {
        let trimmed = prefix.count > 1 && prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
        prefixes.removeAll { $0.prefix == trimmed }
        prefixes.append((trimmed, route))
        prefixes.sort { $0.prefix.count > $1.prefix.count }
    }

    func route(for path: String) -> Route? {
        if let route = exact[path] { return route }
        if !named.isEmpty, let slash = path.lastIndex(of: "/"), let route = named[String(path[path.index(after: slash)...])] { return route }
        for (prefix, route) in prefixes {
            if prefix == "/" || path == prefix || (path.hasPrefix(prefix) && path.utf8.dropFirst(prefix.utf8.count).first == UInt8(ascii: "/")) {
                return route
            }
        }
        return nil
    }
}

/// What a handler needs of the session domains. ASP.NET's `pages/@enableSessionState` of the
/// URL's folder can lower it (`false`: none, `ReadOnly`: read-only).
public struct SessionRequirements: Sendable, Hashable {
    /// The ASP.NET session (`request.session`).
    public var aspNet: SessionAccess
    /// The classic ASP session (`request.aspSession`); its requests are always serialized.
    public var classicASP: Bool

    public init(aspNet: SessionAccess = .none, classicASP: Bool = false) {
        self.aspNet = aspNet
        self.classicASP = classicASP
    }

    public static let none = SessionRequirements()
    /// The ASP.NET session with `access`.
    public static func aspNet(_ access: SessionAccess) -> SessionRequirements { SessionRequirements(aspNet: access) }
    /// The classic ASP session only.
    public static let classicASP = SessionRequirements(classicASP: true)
}
