import DemoSite
import Foundation
import SessionHost
import SessionHostTesting
import SQLSessionStore
import Testing

/// The demo site's shop through SessionHostTesting: the host's whole request path in process,
/// with the repository's configuration (conf.d and examples/site), the shop's sessions in a
/// SQLite file of the test's own.
final class DemoShopTests {
    let folder: URL
    let client: TestClient

    init() throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("demo-shop-\(UUID().uuidString)")
        // The configuration as in the repository (its physical paths are relative to conf.d),
        // but the shop's SQLite file in the test's folder.
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("examples"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: repository.appendingPathComponent("conf.d"), to: folder.appendingPathComponent("conf.d"))
        try FileManager.default.copyItem(at: repository.appendingPathComponent("examples/site"), to: folder.appendingPathComponent("examples/site"))
        let database = folder.appendingPathComponent("shop-sessions.db").path
        let shopConfig = folder.appendingPathComponent("examples/site/shop/web.config")
        let text = try String(contentsOf: shopConfig, encoding: .utf8).replacing("sqlite:.run/demo-data/shop-sessions.db", with: "sqlite:\(database)")
        try text.write(to: shopConfig, atomically: true, encoding: .utf8)
        _ = try SQLSchemaInstaller.install(.sqlite(path: database, fullSync: false))
        client = TestClient(routes: DemoSite.routes(), configDirectory: folder.appendingPathComponent("conf.d").path, sessions: DemoSite.sessions)
    }

    deinit {
        try? FileManager.default.removeItem(at: folder)
    }

    @Test func theCartKeepsItsItemsOverSeveralRequests() async throws {
        let list = await client.get("/shop/")
        #expect(list.status == .ok)
        #expect(list.text.contains("Cart: 0 items"))
        // A new session that stores nothing is not kept: no cookie yet.
        #expect(client.cookies["Shop.SessionId"] == nil)

        let added = await client.get("/shop/cart/?add=tea")
        #expect(added.status == .seeOther)
        #expect(added.location == "/shop/cart/")
        let id = try #require(client.cookies["Shop.SessionId"])
        #expect(added.cookie(named: "Shop.SessionId")?.httpOnly == true)

        await client.get("/shop/cart/?add=tea")
        await client.get("/shop/cart/?add=pot")
        let cart = await client.get("/shop/cart/")
        #expect(cart.text.contains("<td>Green tea, 100 g</td><td>2</td><td>€9.00</td>"))
        #expect(cart.text.contains("<td>Cast-iron teapot</td><td>1</td>"))
        #expect(cart.text.contains("Total €34.00"))
        #expect(await client.get("/shop/").text.contains("Cart: 3 items"))
        // The same session all along.
        #expect(client.cookies["Shop.SessionId"] == id)

        // Removing, then checking out: Session.Abandon ends the session.
        await client.get("/shop/cart/?remove=pot")
        let done = await client.get("/shop/cart/?checkout=1")
        #expect(done.text.contains("Order of 2 items, €9.00, placed"))
        #expect(await client.get("/shop/").text.contains("Cart: 0 items"))
    }

    @Test func anotherBrowserHasItsOwnCart() async {
        await client.get("/shop/cart/?add=mug")
        let other = TestClient(routes: DemoSite.routes(), configDirectory: client.configDirectory, sessions: DemoSite.sessions)
        #expect(await other.get("/shop/").text.contains("Cart: 0 items"))
        #expect(await client.get("/shop/").text.contains("Cart: 1 items"))
    }

    @Test func theReadOnlyFolderShowsTheCartButCannotChangeIt() async {
        await client.get("/shop/cart/?add=mug")
        let catalog = await client.get("/shop/catalog/?add=1")
        #expect(catalog.status == .ok)
        #expect(catalog.text.contains("read-only"))
        #expect(catalog.text.contains("<b>Refused:</b> The session is read-only in this request"))
        #expect(catalog.text.contains("Your cart: 1 items"))
        #expect(await client.get("/shop/").text.contains("Cart: 1 items"))
    }

    @Test func anUnknownProductIsA404AndChangesNothing() async {
        await client.get("/shop/cart/?add=tea")
        let missing = await client.get("/shop/cart/?add=caviar")
        #expect(missing.status == .notFound)
        #expect(missing.text.contains("There is no product &#39;caviar&#39;."))
        #expect(await client.get("/shop/").text.contains("Cart: 1 items"))
    }

    @Test func theCookielessShopKeepsTheIDInTheURL() async throws {
        let first = await client.get("/m/")
        #expect(first.status == .found)
        let location = try #require(first.location)
        let segment = try #require(location.firstMatch(of: /^\/m\/(\(S\([a-z0-5]{24}\)\))\/$/)?.1)
        #expect(client.cookies.isEmpty)

        let added = await client.get("/m/\(segment)/cart/?add=mug")
        #expect(added.status == .seeOther)
        #expect(added.location == "/m/\(segment)/cart/")
        let cart = await client.follow(added)
        #expect(cart.text.contains("<td>Stoneware mug</td><td>1</td>"))
        // Links keep the segment.
        #expect(cart.text.contains("href=\"/m/\(segment)/cart/?remove=mug\""))
        // Followed automatically, a redirect chain ends on the page.
        client.followsRedirects = true
        let page = await client.get("/m/\(segment)/cart/?add=tea")
        #expect(page.redirects == ["/m/\(segment)/cart/"])
        #expect(page.text.contains("Your cart") && page.text.contains("<td>Green tea, 100 g</td><td>1</td>"))
    }

    @Test func anInProcSessionExpiresWithTheManualClock() async throws {
        // /m keeps its sessions in process, 20 minutes; the manual clock moves them on.
        let segment = try #require(await client.get("/m/").location?.firstMatch(of: /^\/m\/(\(S\([a-z0-5]{24}\)\))\/$/)?.1)
        await client.get("/m/\(segment)/cart/?add=pot")
        client.advance(by: .seconds(19 * 60))
        #expect(await client.get("/m/\(segment)/").text.contains("Cart: 1 items"))
        client.advance(by: .seconds(21 * 60))
        // Expired: regenerateExpiredSessionId gives the URL a new ID, with an empty cart.
        let expired = await client.get("/m/\(segment)/")
        #expect(expired.status == .found)
        #expect(expired.location?.contains(String(segment)) == false)
        #expect(await client.follow(expired).text.contains("Cart: 0 items"))
    }

    @Test func theAdminSessionEndsAfterFiveMinutes() async {
        #expect(await client.get("/admin/").text.contains("page views: <b>1</b>"))
        #expect(await client.get("/admin/").text.contains("page views: <b>2</b>"))
        client.advance(by: .seconds(6 * 60))
        #expect(await client.get("/admin/").text.contains("page views: <b>1</b>"))
    }

    @Test func theFormAcceptsGetAndPostOnly() async {
        #expect(await client.get("/form").status == .ok)
        let posted = await client.post("/form", form: ["name": "Ada", "message": "a & b"])
        #expect(posted.text.contains("<li>message = a &amp; b</li>"))
        let deleted = await client.execute(.delete, "/form")
        #expect(deleted.status == .methodNotAllowed)
        #expect(deleted.headers[.allow] == "GET, HEAD, POST")
    }

    @Test func aFailingHandlerIsAGeneric500WithAReference() async {
        let failed = await client.get("/fail")
        #expect(failed.status == .internalServerError)
        #expect(failed.text.contains("Reference: request"))
        #expect(!failed.text.contains("deliberate"))
    }
}
