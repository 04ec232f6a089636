import Foundation
public import SessionHost
import SQLSessionStore
import WebConfiguration

/// The demo site: a few pages to click through (the request as a handler sees it, a form,
/// cookies, a streamed page, error pages), the shop, and session pages of both domains. `demo`
/// serves it; its tests drive it with SessionHostTesting.
public enum DemoSite {
    /// The session options the site runs with: the shop keeps its sessions in a SQLite file
    /// (`mode="SQLServer"`), so the app links that store.
    public static var sessions: SessionOptions {
        SessionOptions(stores: [SQLSessionStateStore.factory])
    }

    /// Every page of the site.
    public static func routes() -> Routes {
        var routes = Routes()
        addHome(to: &routes)
        Shop.add(to: &routes)
        addSessionPages(to: &routes)
        addHostPages(to: &routes)
        return routes
    }

    static func addHome(to routes: inout Routes) {
        routes.exact("/", sessions: .classic) { request in
            // A visit counter in the classic ASP session (cookie ASPSESSIONID…).
            let visits = try request.classicSession?.update(.visits, default: 0) { $0 += 1 } ?? 0
            return page("SessionHost demo", """
                <p>This page is rendered by a Swift handler running inside SessionHost, behind nginx, over FastCGI.</p>
                <p>Visits in this classic ASP session: <b>\(visits)</b> (session \(request.classicSession.map { String($0.sessionID) } ?? "none"), timeout \(request.classicSession?.timeout ?? 0) minutes).</p>
                <h2>The shop</h2>
                <ul>
                <li><a href="/shop/">/shop/</a>: a nested application; the cart lives in its ASP.NET session (cookie <code>Shop.SessionId</code>, 60 minutes), kept in a SQLite file (<code>mode="SQLServer"</code>), so it survives a restart of the demo</li>
                <li><a href="/shop/catalog/">/shop/catalog/</a>: a read-only folder (<code>pages enableSessionState="ReadOnly"</code>): it shows the cart but cannot change it</li>
                <li><a href="/m/">/m/</a>: the same shop as a cookieless application: the session ID travels in the URL</li>
                <li><a href="/admin/">/admin/</a>: a nested application with a 5-minute session timeout</li>
                <li><a href="/classic/">/classic/</a>: classic ASP pages whose session settings vary per folder</li>
                </ul>
                <p>Every folder has a <code>settings</code> page listing the session settings in effect there and the file and line that set each: <a href="/settings">/settings</a>, <a href="/shop/cart/settings">/shop/cart/settings</a>, <a href="/shop/catalog/settings">/shop/catalog/settings</a>, <a href="/m/settings">/m/settings</a>, <a href="/admin/settings">/admin/settings</a>, <a href="/classic/admin/settings">/classic/admin/settings</a>, <a href="/static/settings">/static/settings</a>.</p>
                <h2>The host</h2>
                <ul>
                <li><a href="/request?greeting=hello+world&amp;n=1">See what the handler receives</a></li>
                <li><a href="/form">Post a form</a></li>
                <li><a href="/cookies">Set and read a cookie</a></li>
                <li><a href="/stream">A streamed page</a></li>
                <li><a href="/async">An async handler</a></li>
                <li><a href="/fail">A handler that throws</a> (you get a generic 500 page; the error goes to the log)</li>
                <li><a href="/missing">A page that does not exist</a></li>
                <li><a href="/sessionhost-status">The worker's status page</a> (<a href="/sessionhost-status?format=prometheus">as Prometheus text</a>): threads, connections, requests, sessions and their stores; <code>scripts/demo</code> runs the worker with <code>--status-path /sessionhost-status</code>, and it answers local clients only</li>
                </ul>
                """)
        }
    }

    static func addSessionPages(to routes: inout Routes) {
        // Any folder's settings page: the effective settings of that folder.
        routes.named("settings") { request in
            let report = request.configuration.map(ConfigurationReport.text) ?? "no configuration"
            return page("Session settings of \(request.path)", """
                <p>Each value is followed by the file and line that set it. <code>session-host config show \(escapeHTML(request.path))</code> prints the same.</p>
                <pre>\(escapeHTML(report))</pre>
                """)
        }
        routes.prefix("/admin", sessions: .aspNet(.readWrite)) { request in
            let session = try request.requireSession()
            let views = try session.update(.views, default: 0) { $0 += 1 }
            return page("Admin", """
                <p>/admin is a nested application with <code>&lt;sessionState timeout="5" cookieName="Admin.SessionId"&gt;</code>:
                its ASP.NET session is separate from the shop's and ends after \(session.timeout) minutes without a request.</p>
                <p>Session <code>\(session.sessionID)</code>\(session.isNewSession ? " (new)" : ""), page views: <b>\(views)</b>.</p>
                \(settingsBox(request))
                """)
        }
        routes.prefix("/classic", sessions: .classic) { request in
            let asp: ClassicASPSession
            do throws(SessionUnavailable) { asp = try request.requireClassicSession() } catch {
                return page("Classic ASP", "<p>No classic ASP session here: \(escapeHTML(error.reason))</p>")
            }
            let views = try asp.update(.classicViews, default: 0) { $0 += 1 }
            return page("Classic ASP: \(request.path)", """
                <p>The classic ASP session of this application (cookie <code>ASPSESSIONID…</code>, separate from the ASP.NET session).
                Its settings come from the <code>&lt;asp&gt;&lt;session&gt;</code> element, unlocked for /classic in applicationHost.config:
                timeout <b>\(asp.timeout)</b> minutes here (45 in /classic, 10 in /classic/admin).</p>
                <p>Session.SessionID \(asp.sessionID)\(asp.isNewSession ? " (new)" : ""), classic pages viewed: <b>\(views)</b>.</p>
                <p><a href="/classic/">/classic/</a> · <a href="/classic/admin/">/classic/admin/</a></p>
                \(settingsBox(request))
                """)
        }
        routes.prefix("/static") { request in
            page("Static", "<p>enableSessionState=\"false\" here (a &lt;location&gt; in the root web.config): handlers get no ASP.NET session.</p>\(settingsBox(request))")
        }
    }

    static func addHostPages(to routes: inout Routes) {
        routes.exact("/request") { request in
            let headers = request.headers.map { "<tr><td>\(escapeHTML($0.name.canonicalName))</td><td>\(escapeHTML($0.value))</td></tr>" }
            let query = request.queryItems.map { "<tr><td>\(escapeHTML($0.name))</td><td>\(escapeHTML($0.value))</td></tr>" }
            return page("The request", """
                <table>
                <tr><td>method</td><td>\(escapeHTML(request.method))</td></tr>
                <tr><td>path</td><td>\(escapeHTML(request.path))</td></tr>
                <tr><td>raw URI</td><td>\(escapeHTML(request.rawURI))</td></tr>
                <tr><td>remote address</td><td>\(escapeHTML(request.remoteAddress))</td></tr>
                <tr><td>secure (HTTPS)</td><td>\(request.isSecure)</td></tr>
                <tr><td>server</td><td>\(escapeHTML(request.serverName)):\(request.serverPort.map(String.init) ?? "")</td></tr>
                </table>
                <h2>Query</h2><table>\(query.joined())</table>
                <h2>Headers</h2><table>\(headers.joined())</table>
                """)
        }
        // GET shows the form, POST echoes it; any other method gets 405 with `Allow: GET, HEAD, POST`.
        routes.exact("/form", methods: [.get, .post]) { request in
            let fields = request.method == "POST" ? request.formItems : []
            let echoed = fields.map { "<li>\(escapeHTML($0.name)) = \(escapeHTML($0.value))</li>" }.joined()
            return page("A form", """
                <form method="post" action="/form">
                <label>Name <input name="name"></label>
                <label>Message <input name="message"></label>
                <button>Send</button>
                </form>
                \(fields.isEmpty ? "" : "<h2>You sent</h2><ul>\(echoed)</ul>")
                """)
        }
        routes.exact("/cookies") { request in
            var response = page("Cookies", """
                <p>This page sets <code>demo-visits</code> (HttpOnly, SameSite=Lax). Reload to see it count.</p>
                <ul>\(request.cookies.sorted { $0.key < $1.key }.map { "<li>\(escapeHTML($0.key)) = \(escapeHTML($0.value))</li>" }.joined())</ul>
                """)
            let visits = (request.cookies["demo-visits"].flatMap { Int($0) } ?? 0) + 1
            response.setCookie(try Cookie(name: "demo-visits", value: String(visits), maxAge: 3600, secure: request.isSecure))
            return response
        }
        routes.exact("/stream") { _ in
            var response = Response.html("")
            response.body = .stream { writer in
                try writer.write(header("A streamed page"))
                for line in 1...200 {
                    try writer.write("<p>Line \(line) of 200, written as it was produced.</p>\n")
                }
                try writer.write(footer)
            }
            return response
        }
        routes.exact("/async") { request async throws in
            try await Task.sleep(for: .milliseconds(50))
            return page("An async handler", "<p>This handler awaited for 50 ms on Swift's concurrency pool; the worker thread waited for it.</p>")
        }
        routes.exact("/fail") { request in
            // Logged with the request's id, which the 500 page shows as its reference.
            request.logger.notice("the /fail page throws on purpose")
            throw DemoError.deliberate
        }
    }

    enum DemoError: Error { case deliberate }

    static func page(_ title: String, _ content: String) -> Response {
        .html(header(title) + content + footer)
    }

    /// The session settings in effect for the request's folder, in brief.
    static func settingsBox(_ request: Request) -> String {
        guard let settings = request.configuration else { return "" }
        let state = settings.sessionState
        let timeout = state.timeout.duration.map { "\($0.components.seconds / 60) min" } ?? "Infinite"
        return """
            <table>
            <tr><td>application</td><td>\(escapeHTML(settings.application.path))</td></tr>
            <tr><td>ASP.NET session</td><td>mode \(state.mode.rawValue), timeout \(timeout), cookie \(escapeHTML(state.cookieName)), \(state.cookieless.rawValue), enableSessionState \(settings.enableSessionState.rawValue)</td></tr>
            <tr><td>classic ASP session</td><td>allowSessionState \(settings.asp.allowSessionState), timeout \(settings.asp.timeoutSeconds / 60) min, max \(settings.asp.max == UInt32.max ? "unlimited" : String(settings.asp.max))</td></tr>
            </table>
            <p><a href="\(escapeHTML(request.sessionURL(folder(of: request.path) + "settings")))">All settings of this folder</a></p>
            """
    }

    static func folder(of path: String) -> String {
        path.hasSuffix("/") ? path : String(path[...path.lastIndex(of: "/")!])
    }

    static func header(_ title: String) -> String {
        """
        <!doctype html>
        <html><head><meta charset="utf-8"><title>\(escapeHTML(title))</title>
        <style>body{font-family:sans-serif;max-width:48em;margin:2em auto}td{padding:2px 8px;border-bottom:1px solid #ddd}</style>
        </head><body><p><a href="/">SessionHost demo</a></p><h1>\(escapeHTML(title))</h1>

        """
    }

    static let footer = "</body></html>\n"
}

extension SessionItem where Value == Int {
    /// Visits of the home page, in the classic ASP session.
    static var visits: SessionItem<Int> { "visits" }
    /// Page views of /admin, in its ASP.NET session.
    static var views: SessionItem<Int> { "views" }
    /// Page views of /classic, in the classic ASP session.
    static var classicViews: SessionItem<Int> { "classic-views" }
}
