import Foundation
import Testing

/// The web path end to end: an HTTP client → a real nginx → the worker.
@Suite(.serialized)
final class NginxTests {
    let fixture: Fixture

    init() throws {
        fixture = try Fixture(workerArguments: ["--max-body-size", "256K"])
    }

    @Test func getPassesMethodPathQueryHeadersAndCookies() throws {
        let reply = try fixture.get("/files/../echo?a=1&b=two+words&c=%C3%A9", headers: [("X-Test", "yes"), ("Cookie", "first=1; second=\"two\"; bad name=3")])
        #expect(reply.status == 200)
        let lines = Set(reply.text.split(separator: "\n").map(String.init))
        #expect(lines.contains("method: GET"))
        #expect(lines.contains("path: /echo"))
        #expect(lines.contains("raw-uri: /files/../echo?a=1&b=two+words&c=%C3%A9"))
        #expect(lines.contains("query: a=1&b=two words&c=é"))
        #expect(lines.contains("header.x-test: yes"))
        #expect(lines.contains("cookie.first: 1"))
        #expect(lines.contains("cookie.second: two"))
        #expect(!reply.text.contains("cookie.bad"))
        #expect(lines.contains("secure: false"))
    }

    @Test func postEchoesSmallAndLargeBodies() throws {
        let connection = try fixture.connection()
        for size in [1, 1000, 65_536 + 1, 200_000] {
            let body = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let reply = try connection.send("POST", "/body", headers: [("Content-Type", "application/octet-stream")], body: body)
            #expect(reply.status == 200)
            #expect(reply.body == body, "body of \(size) bytes came back changed")
        }
    }

    @Test func bodyOverTheLimitGets413AndTheConnectionStaysUsable() throws {
        let connection = try fixture.connection()
        let reply = try connection.send("POST", "/body", body: [UInt8](repeating: 65, count: 300_000))
        #expect(reply.status == 413)
        let next = try connection.send("GET", "/echo")
        #expect(next.status == 200)
    }

    @Test func unknownPathIs404() throws {
        let reply = try fixture.get("/no/such/page")
        #expect(reply.status == 404)
        #expect(reply.header("content-type") == "text/html; charset=utf-8")
    }

    @Test func throwingHandlerGivesGeneric500AndLogsTheError() throws {
        let reply = try fixture.get("/throw")
        #expect(reply.status == 500)
        #expect(!reply.text.contains("SECRET"))
        #expect(!reply.text.contains("TestError"))
        #expect(fixture.workerLog.contains("SECRET-INTERNAL-DETAIL"))
        #expect(try fixture.get("/echo").status == 200)
    }

    @Test func keptAliveConnectionServesManyRequests() throws {
        let connection = try fixture.connection()
        for index in 0..<50 {
            let reply = try connection.send("GET", "/async?value=\(index)")
            #expect(reply.status == 200)
            #expect(reply.text == "async: \(index)\n")
        }
    }

    @Test func largeStreamedResponseArrivesWhole() throws {
        let size = 3 << 20
        let reply = try fixture.get("/big?size=\(size)")
        #expect(reply.status == 200)
        #expect(reply.header("content-length") == nil)
        #expect(reply.body.count == size)
        #expect(reply.body.enumerated().allSatisfy { $0.element == UInt8($0.offset % 251) })
    }

    @Test func prefixRoutesMatchWholeSegments() throws {
        #expect(try fixture.get("/files/a/b").text == "prefix handler: /files/a/b\n")
        #expect(try fixture.get("/files").text == "prefix handler: /files\n")
        #expect(try fixture.get("/filesystem").status == 404)
    }

    @Test func cookiesCarryEveryAttribute() throws {
        let cookies = try fixture.get("/cookies").headers("set-cookie")
        #expect(cookies == [
            "plain=1; Path=/; HttpOnly; SameSite=Lax",
            "full=abc; Path=/files; Domain=localhost; Expires=Fri, 15 Jan 2027 08:00:00 GMT; Max-Age=60; Secure; HttpOnly; SameSite=Strict",
        ])
    }

    @Test func failureMidStreamIsNotPassedOffAsComplete() throws {
        let connection = try fixture.connection()
        #expect(throws: Sockets.Failure.self) { try connection.send("GET", "/stream-fail") }
        #expect(try fixture.get("/echo").status == 200)
    }
}
