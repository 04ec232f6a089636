import Foundation
import SessionHost
import Testing

struct CookieTests {
    @Test func parsesARequestCookieHeader() {
        #expect(Cookie.parse(header: "a=1; b=\"quoted\"; a=second; bad name=x; c=; =d; e=spa ce") == ["a": "1", "b": "quoted", "c": ""])
    }

    @Test func rendersEveryAttribute() throws {
        let cookie = try Cookie(name: "id", value: "xyz", path: "/app", domain: "example.org", expires: Date(timeIntervalSince1970: 0),
                                maxAge: 30, secure: true, httpOnly: true, sameSite: .strict)
        #expect(cookie.headerValue == "id=xyz; Path=/app; Domain=example.org; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=30; Secure; HttpOnly; SameSite=Strict")
    }

    @Test func defaultsAreHttpOnlyLaxAndRootPath() throws {
        #expect(try Cookie(name: "a", value: "b").headerValue == "a=b; Path=/; HttpOnly; SameSite=Lax")
    }

    @Test func sameSiteNoneForcesSecure() throws {
        #expect(try Cookie(name: "a", value: "b", httpOnly: false, sameSite: SameSite.none).headerValue == "a=b; Path=/; Secure; SameSite=None")
    }

    @Test func refusesWhatCouldBreakTheHeader() {
        #expect(throws: CookieError.invalidName("a b")) { try Cookie(name: "a b", value: "1") }
        #expect(throws: CookieError.invalidName("")) { try Cookie(name: "", value: "1") }
        #expect(throws: CookieError.invalidValue(name: "a")) { try Cookie(name: "a", value: "1;\r\nX-Evil: 1") }
        #expect(throws: CookieError.invalidAttribute(name: "a")) { try Cookie(name: "a", value: "1", path: "/;Secure") }
    }

    @Test func removalExpiresTheCookie() throws {
        #expect(try Cookie.removal(of: "id").headerValue == "id=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; SameSite=Lax")
    }
}

private typealias SameSite = Cookie.SameSite
