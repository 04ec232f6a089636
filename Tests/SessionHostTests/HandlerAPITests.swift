import Foundation
import Logging
@testable import SessionHost
import SessionHostTesting
import Testing

/// The handler-facing API: groups, methods and 405, session needs as a set, typed keys, errors
/// that pick their status, the request's id and logger.
final class HandlerAPITests {
    let folder: URL

    init() throws {
        // No configuration files: the built-in defaults (InProc, 20 minutes, cookies).
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("handler-api-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: folder)
    }

    func client(_ routes: Routes) -> TestClient {
        TestClient(routes: routes, configDirectory: folder.path)
    }

    @Test func groupsJoinPathsAndCombineSessionNeeds() async throws {
        var routes = Routes()
        routes.group("/shop", sessions: .aspNet(.readOnly)) { shop in
            shop.prefix("/") { _ in .text("list") }
            shop.prefix("/cart", sessions: .aspNet(.readWrite)) { _ in .text("cart") }
            shop.group("/admin/", sessions: .classic) { admin in
                admin.exact("/report") { _ in .text("report") }
            }
        }
        routes.exact("/plain") { _ in .text("plain") }
        // The issue's own spelling, with `$0`.
        routes.group("/m", sessions: .aspNet(.readOnly)) { $0.prefix("/cart", sessions: .aspNet(.readWrite)) { _ in .text("m cart") } }
        #expect(routes.route(for: "/m/cart")?.sessions == .aspNet(.readWrite))
        #expect(routes.route(for: "/shop")?.sessions == .aspNet(.readOnly))
        #expect(routes.route(for: "/shop/anything")?.sessions == .aspNet(.readOnly))
        #expect(routes.route(for: "/shop/cart/x")?.sessions == .aspNet(.readWrite))
        #expect(routes.route(for: "/shop/admin/report")?.sessions == [.aspNet(.readOnly), .classic])
        #expect(routes.route(for: "/plain")?.sessions == [])
        #expect(routes.route(for: "/shopx") == nil)
        let client = client(routes)
        #expect(await client.get("/shop/cart/").text == "cart")
        #expect(await client.get("/shop/admin/report").text == "report")
    }

    @Test func sessionNeedsAreASet() async {
        let both: SessionRequirements = [.aspNet(.readWrite), .classic]
        #expect(both.aspNet == .readWrite && both.classic)
        #expect([.aspNet(.readOnly), .aspNet(.readWrite)] as SessionRequirements == .aspNet(.readWrite))
        #expect(([] as SessionRequirements).isEmpty)
        #expect(SessionRequirements.classic == SessionRequirements(classic: true))
    }

    @Test func aMethodNotServedIs405WithAllow() async {
        var routes = Routes()
        routes.exact("/form", methods: [.get]) { _ in .text("form") }
        routes.exact("/form", methods: [.post]) { request in .text("posted \(request.bodyText)") }
        routes.group("/api", methods: [.put]) { api in
            api.prefix("/items") { _ in .text("put") }
            api.exact("/ping", methods: [.get]) { _ in .text("pong") }
        }
        let client = client(routes)
        #expect(await client.get("/form").text == "form")
        #expect(await client.execute(.head, "/form").status == .ok)
        #expect(await client.execute(.post, "/form", body: Array("a=1".utf8)).text == "posted a=1")
        let refused = await client.execute(.delete, "/form")
        #expect(refused.status == .methodNotAllowed)
        #expect(refused.headers[.allow] == "GET, HEAD, POST")
        #expect(refused.text.contains("does not accept DELETE requests"))
        #expect(await client.execute(.put, "/api/items/1").text == "put")
        #expect(await client.get("/api/items/1").headers[.allow] == "PUT")
        #expect(await client.get("/api/ping").text == "pong")
        #expect(await client.get("/nothing").status == .notFound)
    }

    struct Gone: HTTPResponseError {
        var status: HTTPResponse.Status { .gone }
        var message: String? { "This offer has ended." }
    }

    struct Secret: Error { var password = "hunter2" }

    @Test func errorsPickTheirStatus() async {
        var routes = Routes()
        routes.exact("/missing") { _ in throw HTTPError(.notFound, message: "No such <thing>.") }
        routes.exact("/limited") { _ in throw HTTPError(.tooManyRequests, headers: [.retryAfter: "30"]) }
        routes.exact("/gone") { _ in throw Gone() }
        routes.exact("/broken") { _ in throw HTTPError(.serviceUnavailable) }
        routes.exact("/secret") { _ in throw Secret() }
        routes.exact("/session") { request in .text(try request.requireSession().sessionID) }
        let client = client(routes)
        let missing = await client.get("/missing")
        #expect(missing.status == .notFound)
        #expect(missing.text.contains("No such &lt;thing&gt;."))
        #expect(!missing.text.contains("Reference"))
        let limited = await client.get("/limited")
        #expect(limited.status == .tooManyRequests)
        #expect(limited.headers[.retryAfter] == "30")
        #expect(await client.get("/gone").status == .gone)
        #expect(await client.get("/gone").text.contains("This offer has ended."))
        // A server error keeps its status and has a reference, as a generic failure.
        let broken = await client.get("/broken")
        #expect(broken.status == .serviceUnavailable)
        #expect(broken.text.contains("Reference: request"))
        // Anything else: a generic 500, nothing of the error on the page.
        let secret = await client.get("/secret")
        #expect(secret.status == .internalServerError)
        #expect(!secret.text.contains("hunter2"))
        // A session the handler did not ask for: 500 (a mistake of the app, logged with the reason).
        #expect(await client.get("/session").status == .internalServerError)
    }

    @Test func theRequestIDIsTheReferenceOfItsErrorPage() async throws {
        var routes = Routes()
        routes.exact("/id") { request in
            guard case .string(let logged)? = request.logger[metadataKey: "request"] else { throw HTTPError(.internalServerError) }
            return .text("\(request.id) \(logged)")
        }
        routes.exact("/fail") { request in throw HTTPError(.internalServerError, message: "id \(request.id)") }
        // A handler that keeps metadata (the client's default logger drops everything).
        var logger = Logger(label: "handler-api") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .critical
        let client = TestClient(routes: routes, configDirectory: folder.path, logger: logger)
        let first = await client.get("/id").text.split(separator: " ")
        #expect(first.count == 2 && first[0] == first[1])
        let failed = await client.get("/fail").text
        let id = try #require(failed.firstMatch(of: /id (\d+)/)?.1)
        #expect(failed.contains("Reference: request \(id)."))
    }

    @Test func typedItemsAreTheNamedItemsUnderneath() async throws {
        var routes = Routes()
        routes.exact("/visit", sessions: .aspNet(.readWrite)) { request in
            let session = try request.requireSession()
            let visits = try session.update(.visits, default: 0) { $0 += 1 }
            try session.set(.lastPath, request.path)
            try session.set(.basket, Basket(items: ["tea"] + (session[.basket]?.items ?? [])))
            // ASP.NET's names ignore case; an Int is stored as ASP.NET's Int32.
            guard case .int(visits)? = session["VISITS"], session.string("lastpath") == "/visit" else { throw HTTPError(.internalServerError) }
            return .text("\(visits) \(session[.basket]?.items.count ?? 0)")
        }
        routes.exact("/read", sessions: .aspNet(.readOnly)) { request in
            let session = try request.requireSession()
            do throws(SessionError) {
                try session.update(.visits, default: 0) { $0 += 1 }
            } catch {
                return .text("refused \(session[.visits] ?? -1) \(session[.wrongType] == nil)")
            }
            return .text("changed")
        }
        routes.exact("/forget", sessions: .aspNet(.readWrite)) { request in
            try request.requireSession().remove(.visits)
            return .text("ok")
        }
        let client = client(routes)
        #expect(await client.get("/visit").text == "1 1")
        #expect(await client.get("/visit").text == "2 2")
        #expect(await client.get("/read").text == "refused 2 true")
        await client.get("/forget")
        #expect(await client.get("/visit").text == "1 3")
    }

    @Test func groupPathsJoinWithOneSlashAndNamesStayInTheirGroup() async throws {
        var routes = Routes()
        routes.group("shop/") { shop in
            shop.exact("cart") { _ in .text("cart") }
            shop.named("help") { _ in .text("shop help") }
        }
        routes.named("help") { _ in .text("help") }
        #expect(routes.route(for: "/shop/cart") != nil)
        #expect(routes.route(for: "/shopcart") == nil)
        let client = client(routes)
        #expect(await client.get("/shop/a/help").text == "shop help")
        #expect(await client.get("/other/help").text == "help")
        #expect(await client.get("/shophelp/help").text == "help")
    }

    @Test func theClientActsLikeABrowser() async throws {
        var routes = Routes()
        routes.exact("/login") { _ in
            var response = Response.redirect(to: "account/", status: .seeOther)
            response.setCookie(try Cookie(name: "secure", value: "s", secure: true))
            response.setCookie(try Cookie(name: "folder", value: "f", path: nil))
            response.setCookie(try Cookie(name: "short", value: "x", maxAge: 60))
            return response
        }
        routes.prefix("/account") { request in .text(request.cgiParams["HTTP_COOKIE"] ?? "none") }
        routes.exact("/cookies") { request in .text(request.cgiParams["HTTP_COOKIE"] ?? "none") }
        routes.exact("/slow") { _ async throws in
            try await Task.sleep(for: .milliseconds(10))
            return .text("awaited")
        }
        let client = client(routes)
        let login = await client.get("/login")
        // A relative Location is taken from the request's folder.
        let account = await client.follow(login)
        #expect(account.requestTarget == "/account/")
        // Not over HTTP: the Secure cookie; the path-less cookie belongs to /login's folder (/).
        #expect(account.text == "folder=f; short=x" || account.text == "short=x; folder=f")
        client.isSecure = true
        #expect(await client.get("/cookies").text.contains("secure=s"))
        client.advance(by: .seconds(61))
        #expect(!(await client.get("/cookies").text.contains("short=x")))
        #expect(await client.execute(.head, "/cookies").body.isEmpty)
        // Async handlers run while the request's thread waits, as in the worker.
        let configDirectory = folder.path
        let served = routes
        async let first = TestClient(routes: served, configDirectory: configDirectory).get("/slow")
        async let second = TestClient(routes: served, configDirectory: configDirectory).get("/slow")
        #expect(await [first.text, second.text] == ["awaited", "awaited"])
    }
}

struct Basket: Codable, Sendable {
    var items: [String]
}

extension SessionItem where Value == Int {
    static var visits: SessionItem<Int> { "Visits" }
}

extension SessionItem where Value == String {
    static var lastPath: SessionItem<String> { "LastPath" }
    /// Names the Int item: read as a String it is nil, not a crash.
    static var wrongType: SessionItem<String> { "visits" }
}

extension SessionItem where Value == Basket {
    static var basket: SessionItem<Basket> { "basket" }
}
