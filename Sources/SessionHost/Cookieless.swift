import SessionState
import WebConfiguration

/// The cookieless-data segment of a URL (`/app/(S(id)X(1))/rest`, as ASP.NET's `SessionIDManager` and `HttpCookieMode.UseUri` write it): one path segment
/// right after the application path holding `<letter>(value)` groups. ASP.NET's tokens: `S` the
/// session ID, `X` the AutoDetect marker, `A` and `F` other features (kept as they are).
struct CookielessData: Hashable, Sendable {
    /// In the order they appear.
    var values: [(token: Character, value: String)]

    init(values: [(token: Character, value: String)] = []) {
        self.values = values
    }

    static func == (lhs: CookielessData, rhs: CookielessData) -> Bool {
        lhs.values.elementsEqual(rhs.values) { $0.token == $1.token && $0.value == $1.value }
    }

    func hash(into hasher: inout Hasher) {
        for (token, value) in values {
            hasher.combine(token)
            hasher.combine(value)
        }
    }

    subscript(token: Character) -> String? {
        get { values.first { $0.token == token }?.value }
        set {
            values.removeAll { $0.token == token }
            if let newValue { values.append((token, newValue)) }
        }
    }

    /// The segment text, `(S(id)X(1))`; empty when there are no values.
    var segment: String {
        values.isEmpty ? "" : "(" + values.map { "\($0.token)(\($0.value))" }.joined() + ")"
    }

    /// Parses one path segment (ASP.NET's `IsValidHeader`): at least 3 characters, only
    /// `<A-Z>(value)` groups, values without `/`, `(` or `)`. Nil when it is not one.
    init?(segment: Substring) {
        guard segment.count >= 5, segment.first == "(", segment.last == ")" else { return nil }
        var values: [(Character, String)] = []
        var rest = segment.dropFirst().dropLast()
        while let token = rest.first {
            guard token.isASCII, token.isUppercase, rest.dropFirst().first == "(" else { return nil }
            rest = rest.dropFirst(2)
            guard let close = rest.firstIndex(of: ")") else { return nil }
            let value = rest[..<close]
            guard !value.contains("("), !value.contains("/") else { return nil }
            values.append((token, String(value)))
            rest = rest[rest.index(after: close)...]
        }
        guard !values.isEmpty else { return nil }
        self.values = values
    }

    /// Finds the first cookieless segment of a normalised path. Returns the path without it and
    /// the path before it (the application path it must follow).
    static func extract(from path: String) -> (data: CookielessData, stripped: String, before: String)? {
        guard path.utf8.contains(UInt8(ascii: "(")) else { return nil }
        for segment in path.split(separator: "/") {
            guard let data = CookielessData(segment: segment) else { continue }
            let before = String(path[..<segment.startIndex].dropLast())
            let after = path[segment.endIndex...]
            return (data, before + (after.isEmpty ? "/" : after), before.isEmpty ? "/" : before)
        }
        return nil
    }

    /// `path` (normalised, decoded) with the segment inserted right after `applicationPath`,
    /// percent-encoded for a `Location` header. The application path matches ignoring case (as in
    /// IIS); the client's spelling of it is kept.
    func insert(into path: String, applicationPath: String) -> String {
        let base = applicationPath == "/" ? "" : applicationPath
        let prefix = path.prefix(base.count)
        let inApplication = prefix.lowercased() == base.lowercased()
        let rest = inApplication ? String(path.dropFirst(base.count)) : path
        return URLPath.percentEncodePath((inApplication ? String(prefix) : base) + "/" + segment + (rest.isEmpty ? "/" : rest))
    }
}

/// Browsers that take no cookies, for `cookieless="UseDeviceProfile"`. ASP.NET reads browser
/// capability files; SessionHost keeps this short table of user-agent fragments of devices
/// known to lack cookie support (early WAP and i-mode phones). Every other client is assumed to
/// take cookies.
enum DeviceProfile {
    static let cookielessUserAgents = ["DoCoMo/", "UP.Browser/", "J-PHONE/", "KDDI-", "Vodafone/", "SoftBank/"]

    static func supportsCookies(userAgent: String?) -> Bool {
        guard let userAgent else { return true }
        return !cookielessUserAgents.contains { userAgent.contains($0) }
    }
}

/// Where a request's ASP.NET session ID travels (`HttpCookieMode`: UseCookies, UseUri,
/// AutoDetect, UseDeviceProfile), as `SessionIDManager` decides it.
struct IDTransport {
    /// The ID travels in the URL's cookieless segment (else in the cookie).
    var usesURL: Bool
    /// AutoDetect found the client refuses cookies: the new URL carries `X(1)`.
    var markDetected = false

    enum Decision {
        case decided(IDTransport)
        /// AutoDetect does not know yet: answer with this redirect, which sets a test cookie and
        /// comes back with `AspxAutoDetectCookieSupport=1`.
        case probe(Response)
    }

    static func decide(_ mode: CookieMode, request: Request) -> Decision {
        switch mode {
        case .useCookies: return .decided(IDTransport(usesURL: false))
        case .useUri: return .decided(IDTransport(usesURL: true))
        case .useDeviceProfile: return .decided(IDTransport(usesURL: !DeviceProfile.supportsCookies(userAgent: request.header("User-Agent"))))
        case .autoDetect:
            if !DeviceProfile.supportsCookies(userAgent: request.header("User-Agent")) || request.cookieless?["X"] == "1" {
                return .decided(IDTransport(usesURL: true))
            }
            if !(request.cgiParams["HTTP_COOKIE"] ?? "").isEmpty { return .decided(IDTransport(usesURL: false)) }
            if request.query("AspxAutoDetectCookieSupport") == "1" { return .decided(IDTransport(usesURL: true, markDetected: true)) }
            // Probe: does the client send a cookie back?
            var response = Response.redirect(to: request.rawURI + (request.rawURI.contains("?") ? "&" : "?") + "AspxAutoDetectCookieSupport=1")
            response.setCookie(autoDetectCookie)
            return .probe(response)
        }
    }

    /// ASP.NET's AutoDetect test cookie: a constant name and value, so building it cannot fail.
    private static let autoDetectCookie: Cookie = {
        do { return try Cookie(name: "AspxAutoDetectCookieSupport", value: "1", sameSite: nil) } catch {
            preconditionFailure("the AutoDetect cookie is invalid: \(error)")
        }
    }()

    /// The ID the request carries this way, if it is a well-formed one.
    func incomingID(_ request: Request, cookieName: String, manager: SessionIDManager = .builtIn) -> String? {
        (usesURL ? request.cookieless?["S"] : request.cookie(named: cookieName)).flatMap(manager.incomingID)
    }

    /// The redirect that puts `newID` into the URL, as `SessionIDManager` does for cookieless
    /// sessions (the query is kept).
    func redirect(_ request: Request, newID: String, applicationPath: String) -> Response {
        var data = request.cookieless ?? CookielessData()
        if markDetected { data["X"] = "1" }
        data["S"] = newID
        let location = data.insert(into: request.path, applicationPath: applicationPath) + (request.queryString.isEmpty ? "" : "?" + request.queryString)
        return Response.redirect(to: location)
    }
}
