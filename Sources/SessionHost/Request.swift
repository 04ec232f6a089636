public import FastCGI
public import SessionState
public import HTTPTypes
public import Logging
public import WebConfiguration

/// An HTTP request as the web server passed it on.
///
/// Built from the FastCGI parameters. Header, cookie and query views are computed on access from
/// those parameters (a few dozen pairs), so a handler pays only for what it reads.
public struct Request: Sendable {
    /// `GET`, `POST`, …
    public let method: String
    /// The request URI as the client sent it, query included, not decoded (`REQUEST_URI`).
    public let rawURI: String
    /// The decoded, normalised path: no `.`/`..` segments, no empty segments, never above `/`.
    public internal(set) var path: String
    /// The undecoded query string, without `?`.
    public let queryString: String
    public let body: [UInt8]
    /// This request's number in the worker: the reference its error pages show ("Reference:
    /// request 42") and the `request` field of the access log and of every log line about it.
    public internal(set) var id: UInt64 = 0
    /// The host's logger with this request's `request` id in its metadata: what a handler logs
    /// can be found next to the host's lines about the same request.
    public var logger: Logger {
        var logger = hostLogger
        logger[metadataKey: "request"] = "\(id)"
        return logger
    }
    var hostLogger = Request.detachedLogger
    /// The logger of a request built outside a running host (tests).
    static let detachedLogger = Logger(label: "sessionhost.request")
    /// The client address as the web server saw it (`REMOTE_ADDR`).
    public let remoteAddress: String
    /// Whether the client connected over TLS (nginx's `HTTPS` parameter is `on`).
    public let isSecure: Bool
    public let serverName: String
    public let serverPort: Int?
    /// All CGI parameters, for anything not modelled here.
    public let cgiParams: FastCGIParams
    /// The effective session configuration of this URL (from machine.config down to this
    /// folder's web.config); nil only for a request built outside a running host.
    public internal(set) var configuration: EffectiveConfiguration?
    /// The ASP.NET session, when the handler asked for one and the URL's settings allow it
    /// (`mode` not Off, `pages/@enableSessionState` not false).
    public internal(set) var session: ASPNETSession?
    /// The classic ASP session, when the handler asked for one and `asp/session/@allowSessionState`
    /// is true for the URL's folder.
    public internal(set) var classicSession: ClassicASPSession?
    /// Why `session` / `classicSession` is nil.
    var sessionUnavailable: String? = "The handler did not ask for the ASP.NET session (routes: sessions: .aspNet(.readWrite) or .readOnly)."
    var classicSessionUnavailable: String? = "The handler did not ask for the classic ASP session (routes: sessions: .classic)."
    /// The cookieless segment the URL carried, stripped from `path`.
    var cookieless: CookielessData?
    /// The store the configuration came from (the test worker reports its statistics).
    package internal(set) var configurationStore: ConfigurationStore?

    /// Builds a request from FastCGI parameters; fails when the path is malformed or climbs
    /// above the root.
    public init(_ fastCGI: FastCGIRequest) throws(RequestError) {
        let params = fastCGI.params
        cgiParams = params
        body = fastCGI.body
        method = params["REQUEST_METHOD"] ?? "GET"
        let uri = params["REQUEST_URI"] ?? params["DOCUMENT_URI"] ?? ((params["SCRIPT_NAME"] ?? "") + (params["PATH_INFO"] ?? ""))
        rawURI = uri
        let question = uri.firstIndex(of: "?")
        let rawPath = uri[..<(question ?? uri.endIndex)]
        guard let path = URLPath.normalize(rawPath) else { throw .malformedPath(String(rawPath)) }
        self.path = path
        queryString = params["QUERY_STRING"] ?? question.map { String(uri[uri.index(after: $0)...]) } ?? ""
        remoteAddress = params["REMOTE_ADDR"] ?? ""
        let https = params["HTTPS"]?.lowercased()
        isSecure = (https != nil && https != "" && https != "off") || params["REQUEST_SCHEME"] == "https"
        serverName = params["SERVER_NAME"] ?? ""
        serverPort = params["SERVER_PORT"].flatMap { Int($0) }
    }

    /// The value of request header `name` (case-insensitive), as passed in `HTTP_*` parameters.
    public func header(_ name: String) -> String? {
        let cgiName = name.uppercased().replacing("-", with: "_")
        if let value = cgiParams["HTTP_" + cgiName] { return value }
        // Apache passes these two only under their CGI names.
        guard cgiName == "CONTENT_TYPE" || cgiName == "CONTENT_LENGTH", let value = cgiParams[cgiName], !value.isEmpty else { return nil }
        return value
    }

    /// All request headers. Web servers pass each as `HTTP_NAME` with dashes turned into
    /// underscores, so names come back lower-case with dashes.
    public var headers: HTTPFields {
        var fields = HTTPFields()
        for (name, value) in cgiParams where name.hasPrefix("HTTP_") {
            if let fieldName = HTTPField.Name(name.dropFirst(5).lowercased().replacing("_", with: "-")) {
                fields.append(HTTPField(name: fieldName, value: value))
            }
        }
        for (name, field) in [("CONTENT_TYPE", HTTPField.Name.contentType), ("CONTENT_LENGTH", .contentLength)] where fields[field] == nil {
            if let value = cgiParams[name], !value.isEmpty { fields.append(HTTPField(name: field, value: value)) }
        }
        return fields
    }

    /// The request's cookies by name (malformed pairs are skipped).
    public var cookies: [String: String] {
        cgiParams["HTTP_COOKIE"].map { Cookie.parse(header: $0) } ?? [:]
    }

    /// The value of cookie `name`, by the same rules as `cookies` but without building the
    /// dictionary (the session IDs are read on every request).
    public func cookie(named name: String) -> String? {
        cgiParams["HTTP_COOKIE"].flatMap { Cookie.value(named: name, header: $0) }
    }

    /// The decoded query items, in order.
    public var queryItems: [QueryItem] {
        URLPath.queryItems(Substring(queryString))
    }

    /// The first value of query parameter `name`.
    public func query(_ name: String) -> String? {
        queryItems.first { $0.name == name }?.value
    }

    /// The ASP.NET session, or an error saying why there is none.
    public func requireSession() throws(SessionUnavailable) -> ASPNETSession {
        guard let session else { throw SessionUnavailable(reason: sessionUnavailable ?? "No ASP.NET session.") }
        return session
    }

    /// The classic ASP session, or an error saying why there is none (e.g. `allowSessionState`
    /// is false for this folder).
    public func requireClassicSession() throws(SessionUnavailable) -> ClassicASPSession {
        guard let classicSession else { throw SessionUnavailable(reason: classicSessionUnavailable ?? "No classic ASP session.") }
        return classicSession
    }

    /// `path` with this request's cookieless segment inserted after the application path
    /// (ASP.NET's `ApplyAppPathModifier`), so a link keeps the session in cookieless mode.
    /// Paths outside the application, relative paths and absolute URLs come back unchanged.
    public func sessionURL(_ path: String) -> String {
        guard let cookieless, !cookieless.values.isEmpty, path.hasPrefix("/"), !path.hasPrefix("//"),
              let application = configuration?.application.path
        else { return path }
        let base = application == "/" ? "" : application
        guard base.isEmpty || path == base || path.hasPrefix(base + "/") || path.hasPrefix(base + "?") else { return path }
        let rest = path.dropFirst(base.count)
        return base + "/" + cookieless.segment + (rest.isEmpty ? "/" : rest)
    }

    /// The body as UTF-8 text.
    public var bodyText: String { String(decoding: body, as: UTF8.self) }

    /// The fields of an `application/x-www-form-urlencoded` body.
    public var formItems: [QueryItem] {
        URLPath.queryItems(Substring(bodyText))
    }
}

public enum RequestError: Error, Hashable, CustomStringConvertible {
    case malformedPath(String)

    public var description: String {
        switch self {
        case .malformedPath(let path): "malformed request path '\(path)'"
        }
    }
}

/// A session was asked for that this request does not have.
public struct SessionUnavailable: Error, Hashable, CustomStringConvertible {
    public var reason: String

    public var description: String { reason }
}
