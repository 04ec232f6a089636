import Dispatch
import FastCGI
import Foundation
public import Logging
public import SessionHost
public import WebConfiguration

/// An app's routes served in process, without sockets, nginx or threads of its own: each
/// request goes through the host's own path (URL limits, the web.config of its folder, routing,
/// both session domains, the handler, the error pages) as nginx would pass it, and the client
/// keeps cookies like a browser. The sessions' clock is a `ManualSessionClock` the test moves.
///
/// ```swift
/// let client = TestClient(routes: routes, configDirectory: "conf.d")
/// let added = client.get("/shop/cart/?add=tea")          // 303, and a session cookie
/// #expect(client.follow(added).text.contains("Green tea"))
/// client.advance(by: .seconds(3660))                        // the session has expired
/// ```
///
/// Not thread-safe: one test drives one client (sessions, locks and stores are the real ones,
/// so two clients on one `routes` may run side by side).
public final class TestClient {
    /// The sessions' clock: expiry and lock ages move only with `advance(by:)`.
    public let clock: ManualSessionClock
    /// Whether `execute` follows redirects (up to 10); otherwise it returns them, cookieless
    /// session redirects included, and `follow(_:)` takes the next step.
    public var followsRedirects: Bool
    /// Requests look as if they came over HTTPS (`HTTPS=on`: `Secure` cookies).
    public var isSecure = false
    /// `REMOTE_ADDR` of the requests: a loopback address, as most tests want.
    public var remoteAddress = "127.0.0.1"
    /// The host name of the requests (`Host`, `SERVER_NAME`).
    public var serverName = "localhost"
    /// The configuration folder the client serves with.
    public let configDirectory: String
    private let host: HostServer
    private var jar: [CookieKey: StoredCookie] = [:]

    /// A cookie the client holds.
    public struct StoredCookie: Sendable, Hashable {
        public var value: String
        public var path: String
        /// On the session clock; nil: until the client is gone (a browser session).
        public var expires: Duration?
        /// Sent only over HTTPS (`isSecure`).
        public var secure: Bool
    }

    /// Cookies are told apart by name and path (RFC 6265 §5.3).
    private struct CookieKey: Hashable {
        var name: String
        var path: String
    }

    /// Serves `routes` with the configuration in `configDirectory` (machine.config,
    /// applicationHost.config, the sites' web.config files), as `serve --config-dir` would.
    /// `sessions`' clock is replaced by the client's manual one.
    public init(
        routes: Routes, configDirectory: String, site: SiteSelector = .default, sessions: SessionOptions = SessionOptions(),
        followsRedirects: Bool = false, logger: Logger = Logger(label: "sessionhost.testing") { _ in SwiftLogNoOpLogHandler() }
    ) {
        let clock = ManualSessionClock()
        var options = sessions
        options.clock = clock
        self.clock = clock
        self.followsRedirects = followsRedirects
        self.configDirectory = configDirectory
        // Never started: the socket address is not used.
        let configuration = HostConfiguration(server: FastCGIServerConfiguration(listen: .unix(path: "/nonexistent/sessionhost-testing.sock")),
                                              configDirectory: configDirectory, site: site)
        host = HostServer(configuration: configuration, routes: routes, sessions: options, logger: logger)
    }

    /// The cookies the client holds now, by name (of two with one name, the one with the
    /// longer path).
    public var cookies: [String: String] {
        var values: [String: StoredCookie] = [:]
        for (key, cookie) in jar where !isExpired(cookie) {
            if let kept = values[key.name], kept.path.count >= cookie.path.count { continue }
            values[key.name] = cookie
        }
        return values.mapValues(\.value)
    }

    /// The cookie `name` the client holds (of two with one name, the one with the longer path).
    public func cookie(named name: String) -> StoredCookie? {
        jar.filter { $0.key.name == name && !isExpired($0.value) }.max { $0.key.path.count < $1.key.path.count }?.value
    }

    /// Forgets every cookie (a new browser).
    public func clearCookies() {
        jar.removeAll()
    }

    /// Moves the sessions' clock on and ends what expired (Session_End runs), as the host's
    /// maintenance does every `expiryCheckInterval`.
    public func advance(by duration: Duration) {
        clock.advance(by: duration)
        host.removeExpiredSessions()
    }

    @discardableResult
    public func get(_ uri: String, headers: HTTPFields = [:]) async -> TestResponse {
        await execute(.get, uri, headers: headers)
    }

    /// A form post (`application/x-www-form-urlencoded`).
    @discardableResult
    public func post(_ uri: String, form: KeyValuePairs<String, String>, headers: HTTPFields = [:]) async -> TestResponse {
        var fields = headers
        fields[.contentType] = "application/x-www-form-urlencoded"
        let body = form.map { "\(Self.formEscape($0.key))=\(Self.formEscape($0.value))" }.joined(separator: "&")
        return await execute(.post, uri, headers: fields, body: Array(body.utf8))
    }

    /// Sends one request (`uri` is a path with an optional query, or an absolute URL) with the
    /// client's cookies, stores the cookies of the answer, and follows redirects if told to.
    @discardableResult
    public func execute(_ method: HTTPRequest.Method, _ uri: String, headers: HTTPFields = [:], body: [UInt8] = []) async -> TestResponse {
        var target = Self.pathAndQuery(of: uri)
        var response = await send(method, target, headers: headers, body: body)
        guard followsRedirects else { return response }
        var steps: [String] = []
        while steps.count < 10, response.status.kind == .redirection, let location = response.location {
            steps.append(location)
            target = Self.resolve(location, against: target)
            let keepsMethod = response.status.code == 307 || response.status.code == 308
            response = await send(keepsMethod ? method : .get, target, headers: keepsMethod ? headers : [:], body: keepsMethod ? body : [])
        }
        response.redirects = steps
        return response
    }

    /// GETs where `response` redirects to (a relative `Location` is taken from `response`'s
    /// own path).
    @discardableResult
    public func follow(_ response: TestResponse) async -> TestResponse {
        guard let location = response.location else { return response }
        return await execute(.get, Self.resolve(location, against: response.requestTarget))
    }

    private func send(_ method: HTTPRequest.Method, _ uri: String, headers: HTTPFields, body: [UInt8]) async -> TestResponse {
        let question = uri.firstIndex(of: "?")
        let path = String(uri[..<(question ?? uri.endIndex)])
        var params = FastCGIParams([
            (name: "REQUEST_METHOD", value: method.rawValue), (name: "REQUEST_URI", value: uri),
            (name: "DOCUMENT_URI", value: path), (name: "SCRIPT_NAME", value: path),
            (name: "QUERY_STRING", value: question.map { String(uri[uri.index(after: $0)...]) } ?? ""),
            (name: "SERVER_PROTOCOL", value: "HTTP/1.1"), (name: "SERVER_NAME", value: serverName),
            (name: "SERVER_PORT", value: isSecure ? "443" : "80"), (name: "REMOTE_ADDR", value: remoteAddress),
            (name: "REQUEST_SCHEME", value: isSecure ? "https" : "http"), (name: "HTTP_HOST", value: serverName),
        ])
        if isSecure { params.append(name: "HTTPS", value: "on") }
        if !body.isEmpty || method == .post { params.append(name: "CONTENT_LENGTH", value: String(body.count)) }
        for field in headers {
            let name = field.name.canonicalName.uppercased().replacing("-", with: "_")
            params.append(name: name == "CONTENT_TYPE" || name == "CONTENT_LENGTH" ? name : "HTTP_" + name, value: field.value)
        }
        if let cookie = cookieHeader(for: path) { params.append(name: "HTTP_COOKIE", value: cookie) }
        let request = FastCGIRequest(params: params, body: body)
        let host = host
        var response = await withCheckedContinuation { (continuation: CheckedContinuation<TestResponse, Never>) in
            // A worker thread's stand-in: blocking here never holds a thread of the concurrency pool.
            DispatchQueue.global().async {
                continuation.resume(returning: TestResponse(host.response(to: request)))
            }
        }
        // The web server sends no body with a HEAD answer.
        if method == .head { response.body = [] }
        response.requestTarget = uri
        store(response.cookies, requestPath: path)
        return response
    }

    /// `Cookie:` for `path`: the cookies whose path is `path` or a folder above it (RFC 6265
    /// §5.1.4), longer paths first; `Secure` ones only over HTTPS.
    private func cookieHeader(for path: String) -> String? {
        let sent = jar.filter { key, cookie in
            guard !isExpired(cookie), !cookie.secure || isSecure else { return false }
            let folder = key.path
            return path == folder || (path.hasPrefix(folder) && (folder.hasSuffix("/") || path.dropFirst(folder.count).first == "/"))
        }.sorted { $0.key.path.count > $1.key.path.count }
        return sent.isEmpty ? nil : sent.map { "\($0.key.name)=\($0.value.value)" }.joined(separator: "; ")
    }

    private func store(_ cookies: [Cookie], requestPath: String) {
        for cookie in cookies {
            let key = CookieKey(name: cookie.name, path: cookie.path ?? Self.defaultPath(requestPath))
            // Max-Age wins over Expires (RFC 6265 §5.3); both are measured on the session clock.
            let lifetime: Duration? = cookie.maxAge.map { .seconds($0) } ?? cookie.expires.map { .milliseconds(Int64($0.timeIntervalSinceNow * 1000)) }
            if let lifetime, lifetime <= .zero {
                jar[key] = nil
            } else {
                jar[key] = StoredCookie(value: cookie.value, path: key.path, expires: lifetime.map { clock.now + $0 }, secure: cookie.secure)
            }
        }
    }

    /// A cookie's path when it names none: the request path's folder (RFC 6265 §5.1.4).
    static func defaultPath(_ path: String) -> String {
        guard path.hasPrefix("/"), let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// Where `location` points from `target` (a path and query): absolute URLs and paths as
    /// they are, relative ones from `target`'s folder.
    static func resolve(_ location: String, against target: String) -> String {
        let location = pathAndQuery(of: location)
        if location.hasPrefix("/") { return location }
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? "/"
        let folder = path.lastIndex(of: "/").map { String(path[...$0]) } ?? "/"
        return folder + location
    }

    private func isExpired(_ cookie: StoredCookie) -> Bool {
        cookie.expires.map { $0 <= clock.now } ?? false
    }

    /// The path and query of `uri` (an absolute URL's scheme and host dropped).
    static func pathAndQuery(of uri: String) -> String {
        guard let scheme = uri.range(of: "://") else { return uri }
        let rest = uri[scheme.upperBound...]
        return rest.firstIndex(of: "/").map { String(rest[$0...]) } ?? "/"
    }

    static func formEscape(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._*")
        return (text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text).replacing("%20", with: "+")
    }
}
