import Foundation
import Testing

/// Session_Start hooks, a failing handler's session changes, and links that carry the cookieless
/// segment: TestWorker routes through nginx.
@Suite(.serialized)
struct SessionHooksTests {
    @Test func sessionStartHooksRunForNewSessionsAndKeepThem() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree, worker: "TestWorker", environment: ["TEST_SESSION_START_HOOKS": "1"])
        defer { fixture.finish() }
        let browser = Browser(fixture)
        // A read-only request that stores nothing: the hooks ran and wrote, and the sessions
        // are kept (their cookies sent), as with a Session_Start handler in ASP.NET.
        let first = try SessionTests.json(try browser.get("/sessions/keys")) as? [String: String] ?? [:]
        #expect(first["aspnetStarted"] == "Session_Start")
        #expect(first["aspStarted"] == "Session_OnStart")
        #expect(browser.cookies["ASP.NET_SessionId"] != nil)
        #expect(browser.aspCookie != nil)
        let aspNetID = browser.cookies["ASP.NET_SessionId"]
        let second = try SessionTests.json(try browser.get("/sessions/keys")) as? [String: String] ?? [:]
        #expect(second["aspnet"] == "startedBy")
        #expect(second["asp"] == "startedBy")
        #expect(browser.cookies["ASP.NET_SessionId"] == aspNetID)
    }

    @Test func aFailingHandlerLosesItsChangesAndReleasesTheLock() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree, worker: "TestWorker")
        defer { fixture.finish() }
        let browser = Browser(fixture)
        let start = try SessionTests.both(browser, "?set=k&v=kept")
        #expect(start["aspnetNew"] == "true")
        let failed = try browser.get("/sessions/fail?set=k&v=lost")
        #expect(failed.status == 500)
        #expect(failed.headers("set-cookie").isEmpty)
        #expect(fixture.workerLog.contains("handler failed after a session change"))
        // The lock was released (a held one would make this wait for the 110 s execution
        // timeout), and the failed request's change is gone.
        let after = try SessionTests.both(browser, "?get=k")
        #expect(after["aspnet"] == start["aspnet"])
        #expect(after["aspnetValue"] == "kept")
        // A new session whose handler fails is not kept either.
        let fresh = Browser(fixture)
        #expect(try fresh.get("/sessions/fail?set=k&v=x").status == 500)
        #expect(fresh.cookies.isEmpty)
    }

    @Test func linksCarryTheCookielessSegment() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree, worker: "TestWorker")
        defer { fixture.finish() }
        let redirect = try fixture.get("/cl/session-link?to=/cl/page")
        #expect(redirect.status == 302)
        let location = try #require(redirect.header("location"))
        let id = try #require(location.firstMatch(of: /\/cl\/\(S\(([a-z0-5]{24})\)\)\/session-link/)?.1)
        for (target, expected) in [
            ("/cl/page", "/cl/(S(\(id)))/page"),
            ("/cl/a/b?x=1", "/cl/(S(\(id)))/a/b?x=1"),
            ("/cl", "/cl/(S(\(id)))/"),
            ("/other/page", "/other/page"),
            ("/clx/page", "/clx/page"),
            ("relative/page", "relative/page"),
            ("//host/cl/page", "//host/cl/page"),
        ] {
            let reply = try fixture.get("/cl/(S(\(id)))/session-link?to=" + (target.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? target))
            #expect(reply.status == 200)
            #expect(reply.text == expected, "link to \(target)")
        }
        // In cookie mode links are left alone.
        #expect(try fixture.get("/session-link?to=/page").text == "/page")
    }
}
