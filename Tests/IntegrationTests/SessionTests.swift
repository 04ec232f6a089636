import Foundation
import Glibc
import Testing

/// Both session domains through nginx and the probe app: cookies, IDs, cookieless URLs,
/// per-directory settings, Abandon, `max`, timeouts; expiry and Session_End with the TestWorker's
/// clock. Each test runs its own worker and nginx.
@Suite(.serialized)
struct SessionTests {
    typealias T = SessionTesting

    // MARK: Cookies

    @Test func aspNetCookieNameAndAttributes() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        func cookie(_ path: String, _ name: String = "ASP.NET_SessionId") throws -> String {
            let answer = try Browser(fixture).probe(path + "?set=a&v=1")
            let header = try #require(answer.setCookie(name), "\(path): \(answer.setCookies)")
            #expect(T.cookieValue(header) == answer.aspNet?.id)
            return header
        }
        #expect(try cookie("/probe").wholeMatch(of: /ASP\.NET_SessionId=[a-z0-5]{24}; Path=\/; HttpOnly; SameSite=Lax/) != nil)
        #expect(try cookie("/strict/probe").wholeMatch(of: /ASP\.NET_SessionId=[a-z0-5]{24}; Path=\/; HttpOnly; SameSite=Strict/) != nil)
        // SameSite=None forces Secure (browsers reject it otherwise).
        #expect(try cookie("/samesitenone/probe").wholeMatch(of: /ASP\.NET_SessionId=[a-z0-5]{24}; Path=\/; Secure; HttpOnly; SameSite=None/) != nil)
        #expect(try cookie("/ssl/probe").wholeMatch(of: /ASP\.NET_SessionId=[a-z0-5]{24}; Path=\/; Secure; HttpOnly; SameSite=Lax/) != nil)
        #expect(try cookie("/domain/probe").wholeMatch(of: /ASP\.NET_SessionId=[a-z0-5]{24}; Path=\/; Domain=example\.test; HttpOnly; SameSite=Lax/) != nil)
        #expect(try cookie("/named/probe", "Custom_Sid").wholeMatch(of: /Custom_Sid=[a-z0-5]{24}; Path=\/; HttpOnly; SameSite=Lax/) != nil)
        // The named application reads its own cookie name only.
        let named = Browser(fixture)
        let first = try named.probe("/named/probe?set=a&v=1")
        #expect(first.setCookie("ASP.NET_SessionId") == nil)
        let again = try named.probe("/named/probe?get=a")
        #expect(again.aspNet?.id == first.aspNet?.id)
        #expect(again.get == "1")
        #expect(try Browser(fixture, cookies: ["ASP.NET_SessionId": try #require(first.aspNet?.id)]).probe("/named/probe").aspNet?.isNew == true)
    }

    @Test func aspNetCookieIsNotSecureJustBecauseOfHTTPS() throws {
        // As ASP.NET: only <httpCookies requireSSL> (or SameSite=None) makes it Secure.
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let reply = try FastCGIConnection(path: fixture.socketPath).request("/probe?set=a&v=1", extraParams: [("HTTPS", "on")])
        #expect(reply.status == 200)
        let cookie = try #require(reply.headers("Set-Cookie").first { $0.hasPrefix("ASP.NET_SessionId=") })
        #expect(cookie.wholeMatch(of: /ASP\.NET_SessionId=[a-z0-5]{24}; Path=\/; HttpOnly; SameSite=Lax/) != nil)
    }

    @Test func cookieSameSiteUnspecifiedIsAConfigurationError() throws {
        // sessionState/@cookieSameSite takes None, Lax or Strict only (`SameSiteMode` of `SessionStateSection`, README);
        // "Unspecified" belongs to httpCookies/@sameSite.
        let tree = try SessionTree(applications: ["/unspecified": SessionTree.webConfig(systemWeb: #"<sessionState cookieSameSite="Unspecified" />"#)], folders: [:])
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let reply = try fixture.get("/unspecified/probe?set=a&v=1")
        #expect(reply.status == 500)
        #expect(reply.text.contains("HTTP Error 500.19"))
        #expect(reply.text.contains("cookieSameSite"))
        #expect(try Browser(fixture).probe("/probe?set=a&v=1").setCookie("ASP.NET_SessionId") != nil)
    }

    @Test func aspCookieNameAndAttributes() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let first = try Browser(fixture).probe("/probe?asp-set=a&asp-v=1")
        let header = try #require(first.aspSetCookie, "\(first.setCookies)")
        #expect(header.wholeMatch(of: /ASPSESSIONID[A-Z]{8}=[A-Z]{24}; Path=\/; HttpOnly/) != nil)
        // Only the ASP session was kept: no ASP.NET cookie.
        #expect(first.setCookies.count == 1)
        // The same name on every request of the application, another in another application.
        let name = T.cookieName(header)
        let second = try Browser(fixture).probe("/probe?asp-set=a&asp-v=1")
        #expect(T.cookieName(second.aspSetCookie) == name)
        #expect(T.cookieValue(second.aspSetCookie) != T.cookieValue(header))
        let folder = try Browser(fixture).probe("/asptimeout/probe?asp-set=a&asp-v=1")
        #expect(T.cookieName(folder.aspSetCookie) == name)
        let nested = try Browser(fixture).probe("/nested/probe?asp-set=a&asp-v=1")
        let nestedName = try #require(T.cookieName(nested.aspSetCookie))
        #expect(nestedName.wholeMatch(of: /ASPSESSIONID[A-Z]{8}/) != nil)
        #expect(nestedName != name)
        // Stable across restarts (IIS picks a new suffix per worker process).
        let restarted = try Fixture.sessions(tree)
        defer { restarted.finish() }
        #expect(T.cookieName(try Browser(restarted).probe("/probe?asp-set=a&asp-v=1").aspSetCookie) == name)
    }

    @Test func aspCookieIsSecureOverHTTPSWhenKeepSessionIdSecure() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        func aspCookie(_ uri: String, https: Bool) throws -> String {
            let reply = try FastCGIConnection(path: fixture.socketPath).request(uri, extraParams: https ? [("HTTPS", "on")] : [])
            #expect(reply.status == 200)
            return try #require(reply.headers("Set-Cookie").first { $0.hasPrefix("ASPSESSIONID") })
        }
        #expect(try aspCookie("/probe?asp-set=a&asp-v=1", https: true).wholeMatch(of: /ASPSESSIONID[A-Z]{8}=[A-Z]{24}; Path=\/; Secure; HttpOnly/) != nil)
        #expect(try aspCookie("/probe?asp-set=a&asp-v=1", https: false).wholeMatch(of: /ASPSESSIONID[A-Z]{8}=[A-Z]{24}; Path=\/; HttpOnly/) != nil)
        #expect(try aspCookie("/insecure/probe?asp-set=a&asp-v=1", https: true).wholeMatch(of: /ASPSESSIONID[A-Z]{8}=[A-Z]{24}; Path=\/; HttpOnly/) != nil)
        // Through nginx (plain HTTP): no Secure either.
        let viaNginx = try Browser(fixture).probe("/probe?asp-set=a&asp-v=1")
        #expect(viaNginx.aspSetCookie?.contains("Secure") == false)
    }

    @Test func emptyNewSessionsAreNotKeptInEitherDomain() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        let first = try browser.probe("/probe")
        #expect(first.setCookies.isEmpty)
        #expect(first.aspNet?.isNew == true)
        #expect(first.asp?.isNew == true)
        let second = try browser.probe("/probe")
        #expect(second.setCookies.isEmpty)
        #expect(second.aspNet?.isNew == true)
        #expect(second.asp?.isNew == true)
        #expect(second.aspNet?.id != first.aspNet?.id)
        #expect(second.asp?.number != first.asp?.number)
        // Once something is stored in a domain, its cookie is sent and the session stays.
        let stored = try browser.probe("/probe?set=a&v=1")
        #expect(stored.setCookie("ASP.NET_SessionId") != nil)
        #expect(stored.aspSetCookie == nil)
        let kept = try browser.probe("/probe")
        #expect(kept.aspNet?.id == stored.aspNet?.id)
        #expect(kept.aspNet?.isNew == false)
        #expect(kept.asp?.isNew == true)
        #expect(kept.setCookies.isEmpty)
        let aspStored = try browser.probe("/probe?asp-set=b&asp-v=2")
        #expect(aspStored.aspSetCookie != nil)
        #expect(aspStored.setCookie("ASP.NET_SessionId") == nil)
        let both = try browser.probe("/probe?get=a&asp-get=b")
        #expect(both.setCookies.isEmpty)
        #expect(both.aspNet?.isNew == false)
        #expect(both.asp?.isNew == false)
        #expect(both.asp?.number == aspStored.asp?.number)
        #expect(both.get == "1")
        #expect(both.aspGet == "2")
    }

    // MARK: IDs

    @Test func idFormatsOverManySamples() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let connection = try fixture.connection()
        var aspNetIDs = Set<String>()
        var aspValues = Set<String>()
        let samples = 200
        for _ in 0..<samples {
            let answer = try ProbeAnswer(try connection.send("GET", "/probe?set=a&v=1&asp-set=a&asp-v=1"))
            let id = try #require(answer.aspNet?.id)
            #expect(T.isASPNETID(id), "\(id)")
            #expect(T.cookieValue(answer.setCookie("ASP.NET_SessionId")) == id)
            let aspValue = try #require(T.cookieValue(answer.aspSetCookie))
            #expect(T.isASPID(aspValue), "\(aspValue)")
            let number = try #require(answer.asp?.number)
            #expect(number > 0)
            aspNetIDs.insert(id)
            aspValues.insert(aspValue)
        }
        #expect(aspNetIDs.count == samples)
        #expect(aspValues.count == samples)
    }

    @Test func invalidOversizedAndUnknownIDsGetANewID() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let bad = [
            "garbage",
            String(repeating: "a", count: 23),
            String(repeating: "a", count: 25),
            String(repeating: "a", count: 81),
            String(repeating: "b", count: 4000),
            "abcdefghijklmnopqrstu678",
            "abcdefghijklmnopqrst9999",
            // Well-formed, but no application has a session under it: never adopted.
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "mnbvcxzlkjhgfdsapoiuytre",
        ]
        for value in bad {
            let reply = try fixture.get("/probe?set=a&v=1", headers: [("Cookie", "ASP.NET_SessionId=\(value)")])
            #expect(reply.status == 200, "\(value.prefix(30)): \(reply.status)")
            let answer = try ProbeAnswer(reply)
            let id = try #require(answer.aspNet?.id)
            #expect(id != value.lowercased())
            #expect(T.isASPNETID(id))
            #expect(answer.aspNet?.isNew == true)
            #expect(T.cookieValue(answer.setCookie("ASP.NET_SessionId")) == id)
        }
        // The same for classic ASP cookies.
        let aspName = try #require(T.cookieName(try Browser(fixture).probe("/probe?asp-set=a&asp-v=1").aspSetCookie))
        for value in ["garbage", "ABCDEFGHIJKLMNOPQRSTUVWX", String(repeating: "Q", count: 4000)] {
            let answer = try ProbeAnswer(try fixture.get("/probe?asp-set=a&asp-v=1", headers: [("Cookie", "\(aspName)=\(value)")]))
            #expect(answer.asp?.isNew == true)
            let issued = try #require(T.cookieValue(answer.aspSetCookie))
            #expect(issued != value)
            #expect(T.isASPID(issued))
        }
    }

    @Test func upperCaseIDsAreLowerCased() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let id = try #require(try Browser(fixture).probe("/probe?set=a&v=1").aspNet?.id)
        let answer = try Browser(fixture, cookies: ["ASP.NET_SessionId": id.uppercased()]).probe("/probe?get=a")
        #expect(answer.aspNet?.id == id)
        #expect(answer.aspNet?.isNew == false)
        #expect(answer.get == "1")
        #expect(answer.setCookies.isEmpty)
    }

    @Test func oneIDServesEveryApplicationWithPartitionedData() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        let root = try browser.probe("/probe?set=a&v=root")
        let id = try #require(root.aspNet?.id)
        // The nested application adopts the ID (known in "/"), with a new, empty session.
        let nested = try browser.probe("/nested/probe?get=a&set=b&v=nested")
        #expect(nested.aspNet?.id == id)
        #expect(nested.aspNet?.isNew == true)
        #expect(nested.aspNetBefore?.count == 0)
        #expect(nested.get == nil)
        #expect(nested.setCookies.isEmpty)
        #expect(nested.aspNet?.timeout == 5)
        let nestedAgain = try browser.probe("/nested/probe?get=b")
        #expect(nestedAgain.aspNet?.id == id)
        #expect(nestedAgain.aspNet?.isNew == false)
        #expect(nestedAgain.get == "nested")
        #expect(nestedAgain.aspNet?.keys == ["b": "nested"])
        let rootAgain = try browser.probe("/probe?get=b")
        #expect(rootAgain.aspNet?.id == id)
        #expect(rootAgain.aspNet?.isNew == false)
        #expect(rootAgain.get == nil)
        #expect(rootAgain.aspNet?.keys == ["a": "root"])
        #expect(rootAgain.aspNet?.timeout == 20)
    }

    // MARK: Cookieless

    @Test func cookielessRedirectKeepsTheQueryAndStripsTheSegment() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        let redirect = try browser.get("/cl/probe?set=a&v=1&x=y")
        #expect(redirect.status == 302)
        let location = try #require(redirect.header("location"))
        let match = try #require(location.wholeMatch(of: /\/cl\/\(S\(([a-z0-5]{24})\)\)\/probe\?set=a&v=1&x=y/), "\(location)")
        let id = String(match.output.1)
        #expect(!redirect.headers("set-cookie").contains { $0.hasPrefix("ASP.NET_SessionId") })
        let first = try browser.probe(location)
        #expect(first.path == "/cl/probe")
        #expect(first.aspNet?.id == id)
        #expect(first.aspNet?.isCookieless == true)
        #expect(first.aspNet?.cookieMode == "UseUri")
        #expect(first.aspNet?.isNew == true)
        #expect(first.setCookie("ASP.NET_SessionId") == nil)
        let second = try browser.probe("/cl/(S(\(id)))/probe?get=a")
        #expect(second.aspNet?.id == id)
        #expect(second.aspNet?.isNew == false)
        #expect(second.get == "1")
        #expect(second.path == "/cl/probe")
        #expect(second.setCookies.isEmpty)
        // Deeper paths keep the segment right after the application path.
        let deeper = try browser.get("/cl/a/b/probe")
        #expect(deeper.status == 302)
        #expect(deeper.header("location")?.wholeMatch(of: /\/cl\/\(S\([a-z0-5]{24}\)\)\/a\/b\/probe/) != nil)
        let inFolder = try browser.probe("/cl/(S(\(id)))/a/b/probe?get=a")
        #expect(inFolder.path == "/cl/a/b/probe")
        #expect(inFolder.get == "1")
    }

    @Test func cookielessApplicationPathsIgnoreCase() throws {
        // URLs are case-insensitive in IIS: /CL is the application /cl. The segment goes right
        // after the application path however the client spelled it, and is found there again.
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let redirect = try fixture.get("/CL/probe?set=a&v=1")
        #expect(redirect.status == 302)
        let location = try #require(redirect.header("location"))
        let match = try #require(location.wholeMatch(of: /\/(?i:cl)\/\(S\(([a-z0-5]{24})\)\)\/probe\?set=a&v=1/), "\(location)")
        let id = String(match.output.1)
        let first = try ProbeAnswer(try fixture.get(location))
        #expect(first.path?.lowercased() == "/cl/probe")
        #expect(first.aspNet?.id == id)
        #expect(first.aspNet?.isCookieless == true)
        let mixed = try ProbeAnswer(try fixture.get("/Cl/(S(\(id)))/probe?get=a"))
        #expect(mixed.path?.lowercased() == "/cl/probe")
        #expect(mixed.aspNet?.id == id)
        #expect(mixed.aspNet?.isNew == false)
        #expect(mixed.get == "1")
    }

    @Test func cookielessUnknownIDIsRegeneratedUnlessTurnedOff() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let unknown = "abcdefghijklmnopqrstuvwx"
        let regenerated = try fixture.get("/cl/(S(\(unknown)))/probe?set=a&v=1")
        #expect(regenerated.status == 302)
        let location = try #require(regenerated.header("location"))
        let match = try #require(location.wholeMatch(of: /\/cl\/\(S\(([a-z0-5]{24})\)\)\/probe\?set=a&v=1/), "\(location)")
        #expect(match.output.1 != unknown)
        #expect(try Browser(fixture).probe(location).aspNet?.isNew == true)

        // regenerateExpiredSessionId="false" (ASP.NET's unsafe option): the URL's ID is used.
        let kept = try Browser(fixture).probe("/clkeep/(S(\(unknown)))/probe?set=a&v=1")
        #expect(kept.aspNet?.id == unknown)
        #expect(kept.aspNet?.isNew == true)
        #expect(kept.aspNet?.isCookieless == true)
        let again = try Browser(fixture).probe("/clkeep/(S(\(unknown)))/probe?get=a")
        #expect(again.aspNet?.id == unknown)
        #expect(again.aspNet?.isNew == false)
        #expect(again.get == "1")
        // Without an ID it still redirects to a new one.
        let fresh = try fixture.get("/clkeep/probe")
        #expect(fresh.status == 302)
        #expect(fresh.header("location")?.wholeMatch(of: /\/clkeep\/\(S\([a-z0-5]{24}\)\)\/probe/) != nil)
    }

    @Test func cookielessSegmentInTheWrongPlaceIsNotCookieless() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let id = "abcdefghijklmnopqrstuvwx"
        let reply = try fixture.get("/(S(\(id)))/cl/probe?set=a&v=1")
        #expect(reply.status == 200)
        let answer = try ProbeAnswer(reply)
        #expect(answer.path == "/(S(\(id)))/cl/probe")
        #expect(answer.aspNet?.isCookieless == false)
        #expect(answer.aspNet?.cookieMode == "UseCookies")
        #expect(answer.aspNet?.id != id)
        // A segment after a deeper folder of the application is not one either.
        let deeper = try fixture.get("/cl/a/(S(\(id)))/probe")
        #expect(deeper.status == 302)
        #expect(deeper.header("location")?.hasPrefix("/cl/(S(") == true)
    }

    @Test func autoDetectWhenTheCookieComesBack() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        let probe = try browser.get("/auto/probe?set=a&v=1")
        #expect(probe.status == 302)
        #expect(probe.header("location") == "/auto/probe?set=a&v=1&AspxAutoDetectCookieSupport=1")
        let marker = try #require(probe.headers("set-cookie").first)
        #expect(marker.hasPrefix("AspxAutoDetectCookieSupport=1"))
        #expect(probe.headers("set-cookie").count == 1)
        let withoutQuery = try fixture.get("/auto/probe")
        #expect(withoutQuery.status == 302)
        #expect(withoutQuery.header("location") == "/auto/probe?AspxAutoDetectCookieSupport=1")

        // Outcome 1: the browser sends the cookie back: cookie mode.
        let answer = try browser.probe("/auto/probe?set=a&v=1&AspxAutoDetectCookieSupport=1")
        #expect(answer.aspNet?.isCookieless == false)
        #expect(answer.aspNet?.cookieMode == "AutoDetect")
        let id = try #require(answer.aspNet?.id)
        #expect(T.cookieValue(answer.setCookie("ASP.NET_SessionId")) == id)
        let next = try browser.probe("/auto/probe?get=a")
        #expect(next.aspNet?.id == id)
        #expect(next.get == "1")
        #expect(next.aspNet?.isCookieless == false)
    }

    @Test func autoDetectWhenTheCookieDoesNotComeBack() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let probe = try fixture.get("/auto/probe?set=a&v=1")
        let back = try #require(probe.header("location"))
        // Outcome 2: no Cookie header on the way back: X(1) and the ID go into the URL.
        let redirect = try fixture.get(back)
        #expect(redirect.status == 302)
        let location = try #require(redirect.header("location"))
        let match = try #require(location.wholeMatch(of: /\/auto\/\(X\(1\)S\(([a-z0-5]{24})\)\)\/probe\?set=a&v=1&AspxAutoDetectCookieSupport=1/), "\(location)")
        let id = String(match.output.1)
        let answer = try ProbeAnswer(try fixture.get(location))
        #expect(answer.aspNet?.id == id)
        #expect(answer.aspNet?.isCookieless == true)
        #expect(answer.aspNet?.cookieMode == "AutoDetect")
        #expect(answer.path == "/auto/probe")
        #expect(answer.setCookie("ASP.NET_SessionId") == nil)
        let next = try ProbeAnswer(try fixture.get("/auto/(X(1)S(\(id)))/probe?get=a"))
        #expect(next.aspNet?.id == id)
        #expect(next.aspNet?.isNew == false)
        #expect(next.get == "1")
    }

    @Test func useDeviceProfileByUserAgent() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let phone = Browser(fixture)
        phone.userAgent = "DoCoMo/2.0 P903i(c100;TB;W24H12)"
        let redirect = try phone.get("/device/probe?set=a&v=1")
        #expect(redirect.status == 302)
        let location = try #require(redirect.header("location"))
        #expect(location.wholeMatch(of: /\/device\/\(S\([a-z0-5]{24}\)\)\/probe\?set=a&v=1/) != nil, "\(location)")
        let answer = try phone.probe(location)
        #expect(answer.aspNet?.isCookieless == true)
        #expect(answer.aspNet?.cookieMode == "UseDeviceProfile")

        let desktop = Browser(fixture)
        desktop.userAgent = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"
        let cookie = try desktop.probe("/device/probe?set=a&v=1")
        #expect(cookie.aspNet?.isCookieless == false)
        #expect(cookie.aspNet?.cookieMode == "UseDeviceProfile")
        #expect(cookie.setCookie("ASP.NET_SessionId") != nil)
    }

    // MARK: Per-directory settings

    @Test func timeoutsPerApplicationAndFolder() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let root = try Browser(fixture).probe("/probe")
        #expect(root.aspNet?.timeout == 20)
        #expect(root.asp?.timeout == 20)
        #expect(root.aspNet?.mode == "InProc")
        let nested = try Browser(fixture).probe("/nested/probe")
        #expect(nested.aspNet?.timeout == 5)
        #expect(nested.asp?.timeout == 20)
        let folder = try Browser(fixture).probe("/asptimeout/probe")
        #expect(folder.asp?.timeout == 10)
        #expect(folder.aspNet?.timeout == 20)
        // Below the folder too.
        #expect(try Browser(fixture).probe("/asptimeout/deeper/probe").asp?.timeout == 10)
    }

    @Test func enableSessionStateFalseAndModeOff() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let disabled = try Browser(fixture).probe("/nosession/probe?set=a&v=1&asp-set=a&asp-v=1")
        #expect(disabled.isASPNETNull)
        #expect(disabled.asp != nil)
        #expect(disabled.error("set")?.contains("enableSessionState") == true)
        #expect(disabled.error("asp-set") == nil)
        #expect(disabled.setCookie("ASP.NET_SessionId") == nil)
        #expect(disabled.aspSetCookie != nil)

        let off = try Browser(fixture).probe("/off/probe?set=a&v=1&asp-set=a&asp-v=1")
        #expect(off.isASPNETNull)
        #expect(off.asp != nil)
        #expect(off.error("set") != nil)
        #expect(off.setCookie("ASP.NET_SessionId") == nil)
    }

    @Test func readOnlyFolder() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        try browser.probe("/probe?set=a&v=1")
        let readOnly = try browser.probe("/ro/probe?set=a&v=2&get=a")
        #expect(readOnly.aspNet?.isReadOnly == true)
        #expect(readOnly.error("set") != nil)
        #expect(readOnly.get == "1")
        #expect(readOnly.asp?.isNew == true)
        #expect(try browser.probe("/probe?get=a").get == "1")
        // Elsewhere the same handler is read-write.
        #expect(try browser.probe("/probe").aspNet?.isReadOnly == false)
    }

    @Test func aspAllowSessionStateFalse() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let answer = try Browser(fixture).probe("/aspoff/probe?asp-set=a&asp-v=1&set=a&v=1")
        #expect(answer.isASPNull)
        #expect(answer.aspNet != nil)
        #expect(answer.error("asp-set")?.contains("allowSessionState") == true)
        #expect(answer.aspSetCookie == nil)
        #expect(answer.setCookie("ASP.NET_SessionId") != nil)
    }

    // MARK: Abandon, max, timeouts

    @Test func abandonInOneDomainLeavesTheOther() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        let start = try browser.probe("/probe?set=a&v=1&asp-set=b&asp-v=2")
        let aspNetID = try #require(start.aspNet?.id)
        let aspNumber = try #require(start.asp?.number)

        let abandon = try browser.probe("/probe?abandon=1&get=a")
        // The abandoning request still sees the session.
        #expect(abandon.get == "1")
        #expect(abandon.aspNet?.id == aspNetID)
        #expect(abandon.setCookies.isEmpty)
        let afterAbandon = try browser.probe("/probe?get=a&asp-get=b")
        #expect(afterAbandon.aspNet?.id != aspNetID)
        #expect(afterAbandon.aspNet?.isNew == true)
        #expect(afterAbandon.get == nil)
        #expect(afterAbandon.asp?.number == aspNumber)
        #expect(afterAbandon.asp?.isNew == false)
        #expect(afterAbandon.aspGet == "2")

        let renewed = try browser.probe("/probe?set=a&v=3")
        let newID = try #require(renewed.aspNet?.id)
        let aspAbandon = try browser.probe("/probe?asp-abandon=1&asp-get=b")
        #expect(aspAbandon.aspGet == "2")
        let afterASPAbandon = try browser.probe("/probe?get=a&asp-get=b")
        #expect(afterASPAbandon.asp?.isNew == true)
        #expect(afterASPAbandon.aspGet == nil)
        #expect(afterASPAbandon.aspNet?.id == newID)
        #expect(afterASPAbandon.aspNet?.isNew == false)
        #expect(afterASPAbandon.get == "3")
    }

    @Test func aspMaxSessions() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        // Empty new sessions are not kept and do not count.
        for _ in 0..<3 {
            #expect(try Browser(fixture).probe("/max/probe").asp?.isNew == true)
        }
        let first = Browser(fixture)
        try first.probe("/max/probe?asp-set=a&asp-v=1")
        let second = Browser(fixture)
        try second.probe("/max/probe?asp-set=a&asp-v=2")
        #expect(first.aspCookie != nil)
        #expect(second.aspCookie != nil)
        let third = try fixture.get("/max/probe?asp-set=a&asp-v=3")
        #expect(third.status == 500)
        #expect(third.text.contains("Server Too Busy"))
        #expect(!third.headers("set-cookie").contains { $0.hasPrefix("ASPSESSIONID") })
        // Existing sessions keep working; other applications are not limited.
        #expect(try first.probe("/max/probe?asp-get=a").aspGet == "1")
        #expect(try second.probe("/max/probe?asp-get=a").aspGet == "2")
        #expect(try Browser(fixture).probe("/probe?asp-set=a&asp-v=1").aspSetCookie != nil)
        // Abandoning one frees a place.
        try first.probe("/max/probe?asp-abandon=1")
        #expect(try Browser(fixture).probe("/max/probe?asp-set=a&asp-v=4").aspSetCookie != nil)
        #expect(try fixture.get("/max/probe?asp-set=a&asp-v=5").status == 500)
    }

    @Test func timeoutChangesPersist() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        try browser.probe("/probe?set=a&v=1&asp-set=a&asp-v=1")
        let changed = try browser.probe("/probe?timeout=7")
        #expect(changed.aspNet?.timeout == 7)
        #expect(changed.errors.isEmpty)
        let next = try browser.probe("/probe")
        #expect(next.aspNetBefore?.timeout == 7)
        #expect(next.asp?.timeout == 20)

        let zero = try browser.probe("/probe?timeout=0")
        #expect(zero.error("timeout") == "The argument to SetTimeout must be greater than 0.")
        let tooLong = try browser.probe("/probe?timeout=525601")
        #expect(tooLong.error("timeout") == "For InProc and StateServer modes, the session timeout value cannot be larger than one year.")
        #expect(try browser.probe("/probe").aspNet?.timeout == 7)
        let year = try browser.probe("/probe?timeout=525600")
        #expect(year.errors.isEmpty)
        #expect(try browser.probe("/probe").aspNet?.timeout == 525_600)

        let asp = try browser.probe("/probe?asp-timeout=15")
        #expect(asp.errors.isEmpty)
        #expect(asp.asp?.timeout == 15)
        let aspNext = try browser.probe("/probe")
        #expect(aspNext.aspBefore?.timeout == 15)
        #expect(aspNext.aspNet?.timeout == 525_600)
        #expect(try browser.probe("/probe?asp-timeout=0").error("asp-timeout") != nil)
        #expect(try browser.probe("/probe").asp?.timeout == 15)
    }

    // MARK: Access log

    /// `--access-log`: one line per request at info, with a hash of the session ID (never the
    /// ID), the request id and the duration; early answers (404) have lines too.
    @Test func theAccessLogHasOneLinePerRequest() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree, arguments: ["--access-log"])
        defer { fixture.finish() }
        let browser = Browser(fixture)
        let answer = try browser.probe("/probe?set=a&v=1")
        let id = try #require(answer.aspNet?.id)
        #expect(try fixture.get("/no-such-page").status == 404)
        try fixture.waitUntil("both access lines are logged") { fixture.workerLog.contains("\"GET /no-such-page HTTP/1.1\" 404") }
        let lines = fixture.workerLog.split(separator: "\n").filter { $0.contains("request=") && $0.contains("duration=") }
        let probe = try #require(lines.first { $0.contains("\"GET /probe?set=a&v=1 HTTP/1.1\" 200") }, "\(lines)")
        #expect(probe.contains(" info "), "\(probe)")
        let hash = try #require(probe.firstMatch(of: /session=([0-9a-f]{16})/).map { String($0.1) })
        #expect(probe.firstMatch(of: /127\.0\.0\.1 - - \[[^\]]+\] "GET/) != nil, "\(probe)")
        #expect(probe.firstMatch(of: /request=\d+ duration=\d+\.\d{3}ms/) != nil, "\(probe)")
        #expect(!fixture.workerLog.contains(id), "the raw session ID reached the log")
        // The same session's next request carries the same hash.
        _ = try browser.probe("/probe?get=a")
        try fixture.waitUntil("the second probe's line is logged") { fixture.workerLog.contains("\"GET /probe?get=a HTTP/1.1\" 200") }
        let second = try #require(fixture.workerLog.split(separator: "\n").first { $0.contains("\"GET /probe?get=a HTTP/1.1\"") })
        #expect(second.contains("session=\(hash)"))
        #expect(fixture.workerLog.split(separator: "\n").first { $0.contains("/no-such-page") }?.contains("session=-") == true)
    }

    // MARK: Unsupported modes

    /// A store the app does not link, and settings its store cannot use, are configuration
    /// errors (500.19, logged with file and line); other applications are served.
    @Test func unsupportedModeIsAConfigurationError() throws {
        var applications = SessionTree.standardApplications
        applications["/sql"] = SessionTree.webConfig(systemWeb: #"<sessionState mode="SQLServer" sqlConnectionString="data source=127.0.0.1;Integrated Security=SSPI" timeout="30" />"#)
        applications["/custom"] = SessionTree.webConfig(
            systemWeb: #"<sessionState mode="Custom" customProvider="Mine"><providers><add name="Mine" type="My.Store" /></providers></sessionState>"#)
        let tree = try SessionTree(applications: applications)
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        // Reported by the startup check, which runs while the worker already serves.
        try fixture.waitUntil("the startup check finishes") { fixture.workerLog.contains("configuration check finished") }
        #expect(fixture.workerLog.contains("registers no store under that type name"))
        #expect(fixture.workerLog.contains("www/custom/web.config"))
        #expect(fixture.workerLog.contains("www/sql/web.config"))
        #expect(fixture.workerLog.contains("'integrated security' cannot be used with PostgreSQL"))
        let reply = try fixture.get("/custom/probe?set=a&v=1")
        #expect(reply.status == 500)
        #expect(reply.text.contains("HTTP Error 500.19"))
        #expect(reply.text.contains("My.Store"))
        let sql = try fixture.get("/sql/probe?set=a&v=1")
        #expect(sql.status == 500)
        #expect(sql.text.contains("HTTP Error 500.19"))
        #expect(sql.text.contains("Windows authentication has no PostgreSQL equivalent"))
        #expect(try fixture.get("/sql/probe-none").status == 500)
        let other = try Browser(fixture).probe("/probe?set=a&v=1")
        #expect(other.aspNet?.mode == "InProc")
        #expect(try Browser(fixture).probe("/nested/probe").aspNet?.timeout == 5)
    }

    /// A cookie name or domain a cookie cannot carry is a configuration error (file and line),
    /// not a session that silently never persists.
    @Test func anInvalidSessionCookieNameIsAConfigurationError() throws {
        var applications = SessionTree.standardApplications
        applications["/badcookie"] = SessionTree.webConfig(systemWeb: #"<sessionState cookieName="My Session" />"#)
        applications["/baddomain"] = SessionTree.webConfig(systemWeb: #"<httpCookies domain="a;b" />"#)
        let tree = try SessionTree(applications: applications)
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        try fixture.waitUntil("the startup check finishes") { fixture.workerLog.contains("configuration check finished") }
        #expect(fixture.workerLog.contains("www/badcookie/web.config"))
        #expect(fixture.workerLog.contains("'My Session' is not a valid cookie name"))
        let reply = try fixture.get("/badcookie/probe?set=a&v=1")
        #expect(reply.status == 500)
        #expect(reply.text.contains("HTTP Error 500.19"))
        #expect(reply.text.contains("cookieName"))
        let domain = try fixture.get("/baddomain/probe?set=a&v=1")
        #expect(domain.status == 500)
        #expect(domain.text.contains("is not a valid domain for a cookie"))
        #expect(try Browser(fixture).probe("/probe?set=a&v=1").aspNet?.mode == "InProc")
    }

    /// StateServer settings are checked with file and line before any request: a malformed
    /// connection string, a mode the app links no store for.
    @Test func stateServerSettingsAreChecked() throws {
        var applications = SessionTree.standardApplications
        applications["/badss"] = SessionTree.webConfig(systemWeb: #"<sessionState mode="StateServer" stateConnectionString="127.0.0.1:42424" />"#)
        applications["/goodss"] = SessionTree.webConfig(systemWeb: #"<sessionState mode="StateServer" stateConnectionString="tcpip=127.0.0.1:42424" />"#)
        let tree = try SessionTree(applications: applications)
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        try fixture.waitUntil("the startup check finishes") { fixture.workerLog.contains("configuration check finished") }
        #expect(fixture.workerLog.contains("The <sessionState> stateConnectionString is invalid."))
        #expect(fixture.workerLog.contains("www/badss/web.config"))
        let reply = try fixture.get("/badss/probe?set=a&v=1")
        #expect(reply.status == 500)
        #expect(reply.text.contains("stateConnectionString"))
        // The TestWorker links no StateServer store: the mode itself is the error there.
        let plain = try Fixture.sessions(tree, worker: "TestWorker")
        defer { plain.finish() }
        try plain.waitUntil("the startup check finishes") { plain.workerLog.contains("configuration check finished") }
        #expect(plain.workerLog.contains("The session-state mode 'StateServer' is not available in this app"))
        #expect(plain.workerLog.contains("www/goodss/web.config"))
        #expect(!fixture.workerLog.contains("www/goodss/web.config"))
    }

    // MARK: Expiry (TestWorker, manual clock)
    // Expiry, Session_End and abandon of both domains are tested on SessionHostTesting
    // (SessionHostTests/SessionLifecycleTests); what needs the worker behind nginx stays here.

    /// The TestWorker's `/sessions/…` answers.
    static func json(_ reply: HTTPReply) throws -> Any {
        guard reply.status == 200 else { throw Sockets.Failure("\(reply.status) \(reply.text)") }
        return try JSONSerialization.jsonObject(with: Data(reply.body))
    }

    static func both(_ browser: Browser, _ query: String = "") throws -> [String: String] {
        try json(try browser.get("/sessions/both" + query)) as? [String: String] ?? [:]
    }

    @Test func expiredASPSessionsDoNotCountTowardMaxEvenBeforeTheSweep() throws {
        // Only live sessions count toward `max`: right after the clock moves (usually before
        // the sweep), a new session takes the place of the expired one.
        let tree = try SessionTree(applications: [:], folders: ["": SessionTree.webConfig(asp: #"<session max="1" />"#)])
        let fixture = try Fixture.sessions(tree, worker: "TestWorker")
        defer { fixture.finish() }
        let connection = try fixture.connection()
        var cookie = try #require(Browser(fixture).get("/sessions/both?set=k&v=0").headers("set-cookie").first { $0.hasPrefix("ASPSESSIONID") })
        #expect(try fixture.get("/sessions/both?set=k&v=1").status == 500)
        for round in 1...10 {
            #expect(try connection.send("GET", "/sessions/clock?advance=\(21 * 60)").status == 200)
            let reply = try connection.send("GET", "/sessions/both?set=k&v=\(round)")
            #expect(reply.status == 200, "round \(round): \(reply.status)")
            let next = try #require(reply.headers("set-cookie").first { $0.hasPrefix("ASPSESSIONID") })
            #expect(next != cookie)
            cookie = next
        }
    }
}
