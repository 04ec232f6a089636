import Foundation
import SessionHost
import SessionHostCLI
import WebConfiguration

/// A few pages to click through: what the request looked like, a form, cookies, a streamed page
/// and an error page.
@main
struct Demo {
    static func main() async {
        var routes = Routes()
        routes.exact("/") { _ in
            page("SessionHost demo", """
                <p>This page is rendered by a Swift handler running inside SessionHost, behind nginx, over FastCGI.</p>
                <ul>
                <li><a href="/request?greeting=hello+world&amp;n=1">See what the handler receives</a></li>
                <li><a href="/form">Post a form</a></li>
                <li><a href="/cookies">Set and read a cookie</a></li>
                <li><a href="/stream">A streamed page</a></li>
                <li><a href="/async">An async handler</a></li>
                <li><a href="/fail">A handler that throws</a> (you get a generic 500 page; the error goes to the log)</li>
                <li><a href="/missing">A page that does not exist</a></li>
                </ul>
                <p>The session settings of a URL, from conf.d and the web.config files of examples/site:</p>
                <ul>
                <li><a href="/settings/">/</a> (the root application)</li>
                <li><a href="/catalog/item">/catalog/item</a> (enableSessionState="ReadOnly" in catalog/web.config)</li>
                <li><a href="/static/logo.png">/static/logo.png</a> (a &lt;location&gt; override: no ASP.NET session)</li>
                <li><a href="/classic/admin/">/classic/admin/</a> (classic ASP settings unlocked per folder)</li>
                <li><a href="/shop/cart/">/shop/cart/</a> (a nested application with its own sessionState)</li>
                </ul>
                """)
        }
        // The example site's folders: each page shows the effective settings of its own URL.
        for folder in ["/settings", "/catalog", "/static", "/classic", "/shop"] {
            routes.prefix(folder) { request in
                let report = request.configuration.map(ConfigurationReport.text) ?? "no configuration"
                return page("Session settings of \(request.path)", """
                    <p>Each value is followed by the file and line that set it. <code>session-host config show \(escapeHTML(request.path))</code> prints the same.</p>
                    <pre>\(escapeHTML(report))</pre>
                    """)
            }
        }
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
        routes.exact("/form") { request in
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
        routes.exact("/fail") { _ in
            throw DemoError.deliberate
        }
        await SessionHostMain.run(routes: routes, abstract: "The SessionHost demo site.")
    }

    enum DemoError: Error { case deliberate }

    static func page(_ title: String, _ content: String) -> Response {
        .html(header(title) + content + footer)
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
