public import HTTPTypes
public import SessionState

/// Handlers by path: exact paths first, then the longest matching prefix. Each handler says what
/// it needs of the two session domains (nothing, unless told) and, optionally, which HTTP
/// methods it serves; groups give the routes in them a common path, session needs and methods.
///
/// ```swift
/// routes.group("/shop", sessions: .aspNet(.readOnly)) { shop in
///     shop.prefix("/cart", sessions: .aspNet(.readWrite)) { request in … }
///     shop.exact("/order", methods: [.post]) { request in … }
/// }
/// ```
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
        /// The methods served; nil: all of them.
        var methods: Set<HTTPRequest.Method>?

        func serves(_ method: String) -> Bool {
            guard let methods else { return true }
            // A GET handler answers HEAD too (the web server drops the body).
            return methods.contains { $0.rawValue == method || (method == "HEAD" && $0 == .get) }
        }
    }

    /// What a path and method lead to.
    enum Match {
        case route(Route)
        /// The path is served, but not with this method: 405 with these in `Allow`.
        case methodNotAllowed(allowed: [String])
        case notFound
    }

    /// The handlers of one path (or prefix, or name), by method; the last added that serves a
    /// method wins.
    struct Entry: Sendable {
        var routes: [Route] = []

        mutating func add(_ route: Route) {
            if route.methods == nil {
                routes.removeAll()
            } else {
                routes.removeAll { $0.methods == route.methods }
            }
            routes.append(route)
        }

        func match(_ method: String) -> Match {
            if let route = routes.last(where: { $0.serves(method) }) { return .route(route) }
            var allowed = Set(routes.flatMap { $0.methods ?? [] }.map(\.rawValue))
            if allowed.contains("GET") { allowed.insert("HEAD") }
            return .methodNotAllowed(allowed: allowed.sorted())
        }
    }

    /// The routes of a prefix (or of a name under a folder).
    struct PrefixEntry: Sendable {
        var prefix: String
        var entry: Entry
    }

    private var exact: [String: Entry] = [:]
    /// By last path segment, as IIS maps handlers by file name; each under a folder (a group's
    /// path, or `/`), longest first.
    private var named: [String: [PrefixEntry]] = [:]
    /// Longest first, so the most specific prefix wins.
    private var prefixes: [PrefixEntry] = []
    /// Inside `group`: the group's path, session needs and methods.
    private var base = ""
    private var groupSessions: SessionRequirements = []
    private var groupMethods: Set<HTTPRequest.Method>?

    public init() {}

    /// Serves exactly `path` (e.g. `/`, `/about`), below the group's path in a group.
    public mutating func exact(_ path: String, methods: Set<HTTPRequest.Method>? = nil, sessions: SessionRequirements = [], _ handler: @escaping SyncHandler) {
        exact[joined(path), default: Entry()].add(route(.sync(handler), methods, sessions))
    }

    public mutating func exact(_ path: String, methods: Set<HTTPRequest.Method>? = nil, sessions: SessionRequirements = [], _ handler: @escaping AsyncHandler) {
        exact[joined(path), default: Entry()].add(route(.async(handler), methods, sessions))
    }

    /// Serves every path whose last segment is `name`, in any folder: `probe` matches `/probe`,
    /// `/a/b/probe`; in a group, in any folder below the group's path. Exact paths take
    /// precedence; these take precedence over prefixes.
    public mutating func named(_ name: String, methods: Set<HTTPRequest.Method>? = nil, sessions: SessionRequirements = [], _ handler: @escaping SyncHandler) {
        addNamed(name, route(.sync(handler), methods, sessions))
    }

    public mutating func named(_ name: String, methods: Set<HTTPRequest.Method>? = nil, sessions: SessionRequirements = [], _ handler: @escaping AsyncHandler) {
        addNamed(name, route(.async(handler), methods, sessions))
    }

    private mutating func addNamed(_ name: String, _ route: Route) {
        let folder = base.isEmpty ? "/" : base
        var entries = named[name] ?? []
        if let index = entries.firstIndex(where: { $0.prefix == folder }) {
            entries[index].entry.add(route)
        } else {
            var entry = Entry()
            entry.add(route)
            entries.append(PrefixEntry(prefix: folder, entry: entry))
            entries.sort { $0.prefix.count > $1.prefix.count }
        }
        named[name] = entries
    }

    /// `path` below the group's path, with exactly one `/` between them (a missing leading `/`
    /// is added).
    private func joined(_ path: String) -> String {
        let relative = path.hasPrefix("/") ? path : "/" + path
        if base.isEmpty { return relative }
        return relative == "/" ? base + "/" : base + relative
    }

    /// Serves `prefix` and every path below it, segment-wise: `/docs` matches `/docs`,
    /// `/docs/` and `/docs/a`, not `/docsx`. `/` matches everything.
    public mutating func prefix(_ prefix: String, methods: Set<HTTPRequest.Method>? = nil, sessions: SessionRequirements = [], _ handler: @escaping SyncHandler) {
        addPrefix(joined(prefix), route(.sync(handler), methods, sessions))
    }

    public mutating func prefix(_ prefix: String, methods: Set<HTTPRequest.Method>? = nil, sessions: SessionRequirements = [], _ handler: @escaping AsyncHandler) {
        addPrefix(joined(prefix), route(.async(handler), methods, sessions))
    }

    /// Routes below `path` (exact and prefix paths are relative to it). The group's session
    /// needs apply to every route in it, and a route adds its own (read-write over the group's
    /// read-only, say); the group's methods apply to the routes that name none.
    public mutating func group(_ path: String, methods: Set<HTTPRequest.Method>? = nil, sessions: SessionRequirements = [], _ body: (inout Routes) -> Void) {
        let saved = (base, groupSessions, groupMethods)
        let folder = joined(path)
        base = folder.hasSuffix("/") ? String(folder.dropLast()) : folder
        groupSessions = [groupSessions, sessions]
        groupMethods = methods ?? groupMethods
        body(&self)
        (base, groupSessions, groupMethods) = saved
    }

    private func route(_ handler: Handler, _ methods: Set<HTTPRequest.Method>?, _ sessions: SessionRequirements) -> Route {
        Route(handler: handler, sessions: [groupSessions, sessions], methods: methods ?? groupMethods)
    }

    private mutating func addPrefix(_ prefix: String, _ route: Route) {
        let trimmed = prefix.count > 1 && prefix.hasSuffix("/") ? String(prefix.dropLast()) : (prefix.isEmpty ? "/" : prefix)
        if let index = prefixes.firstIndex(where: { $0.prefix == trimmed }) {
            prefixes[index].entry.add(route)
            return
        }
        var entry = Entry()
        entry.add(route)
        prefixes.append(PrefixEntry(prefix: trimmed, entry: entry))
        prefixes.sort { $0.prefix.count > $1.prefix.count }
    }

    /// The handler for `path` and `method`: the most specific path decides, then its methods.
    func match(_ path: String, method: String) -> Match {
        entry(for: path).map { $0.match(method) } ?? .notFound
    }

    /// The route for `path` served with any method (tests).
    func route(for path: String, method: String = "GET") -> Route? {
        if case .route(let route) = match(path, method: method) { return route }
        return nil
    }

    private func entry(for path: String) -> Entry? {
        if let entry = exact[path] { return entry }
        if !named.isEmpty, let slash = path.lastIndex(of: "/"), let entries = named[String(path[path.index(after: slash)...])],
           let entry = entries.first(where: { Self.isBelow(path, $0.prefix) }) {
            return entry.entry
        }
        return prefixes.first { Self.isBelow(path, $0.prefix) }?.entry
    }

    /// Whether `path` is `prefix` or below it, by whole segments (`/` contains everything).
    private static func isBelow(_ path: String, _ prefix: String) -> Bool {
        prefix == "/" || path == prefix || (path.hasPrefix(prefix) && path.utf8.dropFirst(prefix.utf8.count).first == UInt8(ascii: "/"))
    }
}

/// What a handler needs of the session domains, written as a set:
/// `sessions: [.aspNet(.readWrite), .classic]`, `sessions: .aspNet(.readOnly)`, or `[]` for none.
/// ASP.NET's `pages/@enableSessionState` of the URL's folder can lower it (`false`: none,
/// `ReadOnly`: read-only). Combining needs keeps the most of each domain.
public struct SessionRequirements: Sendable, Hashable, ExpressibleByArrayLiteral {
    /// The ASP.NET session (`request.session`).
    public var aspNet: SessionAccess
    /// The classic ASP session (`request.classicSession`); its requests are always serialized.
    public var classic: Bool

    public init(aspNet: SessionAccess = .none, classic: Bool = false) {
        self.aspNet = aspNet
        self.classic = classic
    }

    /// All of `elements`' needs.
    public init(arrayLiteral elements: SessionRequirements...) {
        self.init(aspNet: .none, classic: false)
        for element in elements { formUnion(element) }
    }

    /// The ASP.NET session with `access`.
    public static func aspNet(_ access: SessionAccess) -> SessionRequirements { SessionRequirements(aspNet: access) }
    /// The classic ASP session.
    public static let classic = SessionRequirements(classic: true)

    /// Adds `other`'s needs: the more of ASP.NET access, and classic ASP if either needs it.
    public mutating func formUnion(_ other: SessionRequirements) {
        aspNet = max(aspNet, other.aspNet)
        classic = classic || other.classic
    }

    /// Whether no session is needed.
    public var isEmpty: Bool { aspNet == .none && !classic }
}
