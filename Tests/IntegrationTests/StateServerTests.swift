import Foundation
import Glibc
import Synchronization
import Testing

/// `session-state-server` through a raw TCP client: ASP.NET's state-server protocol (verbs,
/// headers, answers), the wake-up extension, limits, malformed input and shutdown.
@Suite(.serialized)
struct StateServerTests {
    /// A key as ASP.NET's client writes it: URL-encoded, no leading `/`.
    static func target(_ id: String = "abcdefghijklmnopqrstuvwx") -> String {
        "%2fLM%2fW3SVC%2f1%2fROOT%2fapp(Xy1%2bz%2f%3d)%2f" + id
    }

    /// `--status-listen`: sessions, bytes, locks and operations move with known traffic; the
    /// Prometheus text parses.
    @Test func theStatusPageCountsSessionsLocksAndOperations() throws {
        let server = try StateServerProcess(arguments: ["--status-listen", "127.0.0.1:0"])
        defer { server.stop() }
        let statusPort = try #require(server.log.firstMatch(of: /status page on http:\/\/127\.0\.0\.1:(\d+)\//).flatMap { Int($0.1) })
        func status() throws -> [String: Any] {
            let reply = try StateConnection(port: statusPort).request("GET", "/")
            #expect(reply.status == 200)
            #expect(reply.header("Content-Type") == "application/json")
            return try #require(try JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any])
        }
        let before = try status()
        #expect(before["sessions"] as? Int == 0)
        let connection = try server.connect()
        for index in 0..<3 {
            #expect(try connection.request("PUT", Self.target("session\(index)"), [("Timeout", "20")], body: [1, 2, 3]).status == 200)
        }
        #expect(try connection.request("GET", Self.target("session0"), [("Exclusive", "acquire")]).status == 200)
        #expect(try connection.request("GET", Self.target("session0"), [("Exclusive", "acquire")]).status == 423)
        #expect(try connection.request("GET", Self.target("missing")).status == 404)
        let after = try status()
        #expect(after["sessions"] as? Int == 3)
        #expect(after["locked"] as? Int == 1)
        #expect((after["bytes"] as? Int ?? 0) >= 3 * 3)
        #expect(after["connections"] as? Int == 1)
        let operations = try #require(after["operations"] as? [String: Int])
        #expect(operations["put"] == 3)
        #expect(operations["getExclusive"] == 2)
        #expect(operations["get"] == 1)
        #expect(after["lockConflicts"] as? Int == 1)
        #expect(after["notFound"] as? Int == 1)
        let text = try StateConnection(port: statusPort).request("GET", "/?format=prometheus")
        #expect(text.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        let metrics = try PrometheusParser.parse(String(decoding: text.body, as: UTF8.self))
        #expect(metrics.samples.first { $0.name == "sessionhost_state_server_sessions" }?.value == 3)
        #expect(metrics.samples.first { $0.name == "sessionhost_state_server_operations_total" && $0.labels["operation"] == "put" }?.value == 3)
        #expect(metrics.types["sessionhost_state_server_lock_conflicts_total"] == "counter")
    }

    @Test func theProtocolRowByRow() throws {
        let server = try StateServerProcess()
        defer { server.stop() }
        let connection = try server.connect()
        let key = Self.target()
        var reply = try connection.request("GET", key)
        #expect(reply.status == 404)
        #expect(reply.header("X-AspNet-Version") == "4.0.30319")
        // CreateUninitializedItem, then the first exclusive read carries ActionFlags: 1.
        reply = try connection.request("PUT", key, [("Timeout", "20"), ("ExtraFlags", "1")], body: [20, 0, 0, 0, 0, 0, 0xFF])
        #expect(reply.status == 200)
        reply = try connection.request("GET", key, [("Exclusive", "acquire")])
        #expect(reply.status == 200)
        #expect(reply.header("ActionFlags") == "1")
        #expect(reply.header("Timeout") == "20")
        #expect(reply.body == [20, 0, 0, 0, 0, 0, 0xFF])
        let cookie = try #require(reply.header("LockCookie"))
        // Locked: 423 with the lock's date, age and cookie, no body.
        reply = try connection.request("GET", key, [("Exclusive", "acquire")])
        #expect(reply.status == 423)
        #expect(reply.header("LockCookie") == cookie)
        #expect(reply.header("LockAge").flatMap(Int.init) != nil)
        #expect(reply.header("LockDate").flatMap(Int64.init).map { $0 > 630_000_000_000_000_000 } == true)
        #expect(reply.body.isEmpty)
        #expect(try connection.request("GET", key).status == 423)
        // A PUT with a wrong cookie is refused; the holder's PUT unlocks.
        #expect(try connection.request("PUT", key, [("Timeout", "30"), ("LockCookie", "999"), ("ExtraFlags", "0")], body: [1]).status == 423)
        #expect(try connection.request("PUT", key, [("Timeout", "30"), ("Lock-Cookie", cookie), ("ExtraFlags", "0")], body: [1, 2, 3]).status == 200)
        reply = try connection.request("GET", "/" + key)  // with a leading `/`: the same session
        #expect(reply.status == 200)
        #expect(reply.body == [1, 2, 3])
        #expect(reply.header("Timeout") == "30")
        #expect(reply.header("ActionFlags") == nil)
        // Release with the wrong cookie: 423; with the right one (or when unlocked): 200.
        reply = try connection.request("GET", key, [("Exclusive", "acquire")])
        let second = try #require(reply.header("LockCookie"))
        #expect(try connection.request("GET", key, [("Exclusive", "release"), ("LockCookie", cookie)]).status == 423)
        #expect(try connection.request("GET", key, [("Exclusive", "Release"), ("LockCookie", second)]).status == 200)
        #expect(try connection.request("GET", key, [("Exclusive", "release"), ("LockCookie", second)]).status == 200)
        // ResetItemTimeout and RemoveItem.
        #expect(try connection.request("HEAD", key).status == 200)
        #expect(try connection.request("DELETE", key, [("LockCookie", second)]).status == 200)
        #expect(try connection.request("GET", key).status == 404)
        #expect(try connection.request("HEAD", key).status == 404)
    }

    @Test func badRequestsGet400AndCloseOnlyTheirConnection() throws {
        let server = try StateServerProcess()
        defer { server.stop() }
        let healthy = try server.connect()
        #expect(try healthy.request("PUT", Self.target(), [("Timeout", "20")], body: [1]).status == 200)
        for (headers, verb) in [([("Timeout", "525601")], "PUT"), ([("Timeout", "-5")], "PUT"), ([("LockCookie", "x")], "DELETE"), ([("Exclusive", "steal")], "GET"), ([], "POST")] {
            let bad = try server.connect()
            let reply = try bad.request(verb, Self.target(), headers, body: verb == "PUT" || verb == "POST" ? [] : nil)
            #expect(reply.status == 400, "\(verb) \(headers)")
            #expect(String(decoding: reply.body, as: UTF8.self).contains("Invalid header") || verb == "POST")
            #expect(try bad.isClosedByServer())
        }
        // Garbage, a huge head, a body over the limit.
        let garbage = try server.connect()
        try garbage.send("\u{1}\u{2}\u{3} nonsense\r\n\r\n")
        #expect(try garbage.readReply().status == 400)
        let huge = try server.connect()
        try huge.send("GET k HTTP/1.1\r\nX: " + String(repeating: "a", count: 20_000))
        #expect(try huge.readReply().status == 431)
        let large = try server.connect()
        try large.send("PUT k HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n")
        #expect(try large.readReply().status == 413)
        // The server and the first connection are fine.
        #expect(try healthy.request("GET", Self.target()).status == 200)
        #expect(server.process.isRunning)
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let server = try StateServerProcess()
        defer { server.stop() }
        let connection = try server.connect()
        let key = Self.target()
        try connection.send("PUT \(key) HTTP/1.1\r\nTimeout: 20\r\nContent-Length: 2\r\n\r\nhiGET \(key) HTTP/1.1\r\nExclusive: acquire\r\n\r\nGET \(key) HTTP/1.1\r\n\r\nDELETE \(key) HTTP/1.1\r\nLockCookie: 2\r\n\r\n")
        #expect(try connection.readReply().status == 200)
        let acquired = try connection.readReply()
        #expect(acquired.status == 200 && acquired.body == Array("hi".utf8) && acquired.header("LockCookie") == "2")
        #expect(try connection.readReply().status == 423)
        #expect(try connection.readReply().status == 200)
        #expect(try connection.request("GET", key).status == 404)
    }

    @Test func limitsRefuseClearly() throws {
        let server = try StateServerProcess(arguments: ["--max-item-size", "1K", "--max-memory", "4K"])
        defer { server.stop() }
        let connection = try server.connect()
        let big = try connection.request("PUT", Self.target("big"), [("Timeout", "20")], body: [UInt8](repeating: 7, count: 1025))
        #expect(big.status == 413)  // refused by the framing before it is buffered
        var stored = 0
        var refused: StateReply?
        for index in 0..<10 {
            let reply = try server.connect().request("PUT", Self.target("s\(index)"), [("Timeout", "20")], body: [UInt8](repeating: 1, count: 1000))
            if reply.status == 200 { stored += 1 } else { refused = reply }
        }
        #expect(stored == 3)
        #expect(refused?.status == 507)
        let refusal = String(decoding: refused?.body ?? [], as: UTF8.self)
        #expect(refusal.contains("--max-memory"))
        #expect(server.process.isRunning)
    }

    /// SessionHost's extension: a GET that asks to wait for a held lock is answered when the
    /// lock is released (no polling); one whose wait runs out gets the 423 it would have got.
    @Test func theWakeUpExtensionAnswersWhenTheLockIsReleased() throws {
        let server = try StateServerProcess()
        defer { server.stop() }
        let holder = try server.connect()
        let key = Self.target()
        #expect(try holder.request("PUT", key, [("Timeout", "20")], body: [1]).status == 200)
        let cookie = try #require(try holder.request("GET", key, [("Exclusive", "acquire")]).header("LockCookie"))
        let waiter = try server.connect()
        try waiter.send("GET \(key) HTTP/1.1\r\nExclusive: acquire\r\nX-SessionHost-Wait: 60000\r\n\r\n")
        // Still waiting: a request pipelined behind it is held back too (answers stay in order).
        try waiter.send("HEAD \(key) HTTP/1.1\r\n\r\n")
        #expect(try holder.request("PUT", key, [("Timeout", "20"), ("LockCookie", cookie)], body: [2]).status == 200)
        let woken = try waiter.readReply()
        #expect(woken.status == 200)
        #expect(woken.body == [2])
        #expect(woken.header("LockCookie") == String((Int(cookie) ?? 0) + 1))
        #expect(try waiter.readReply(forHead: true).status == 200)
        // A short wait that runs out: 423 with the lock's details.
        let impatient = try server.connect()
        let reply = try impatient.request("GET", key, [("Exclusive", "acquire"), ("X-SessionHost-Wait", "50")])
        #expect(reply.status == 423)
        #expect(reply.header("LockCookie") == woken.header("LockCookie"))
    }

    @Test func concurrentIncrementsUnderTheLockLoseNothing() throws {
        let server = try StateServerProcess()
        defer { server.stop() }
        let key = Self.target()
        #expect(try server.connect().request("PUT", key, [("Timeout", "20")], body: [0, 0, 0, 0]).status == 200)
        let failures = Atomic<Int>(0)
        let port = server.port
        let finished = DispatchSemaphore(value: 0)
        for _ in 0..<8 {
            Thread.detachNewThread {
                defer { finished.signal() }
                do {
                    let connection = try StateConnection(port: port)
                    for _ in 0..<25 {
                        let got = try connection.request("GET", key, [("Exclusive", "acquire"), ("X-SessionHost-Wait", "30000")])
                        guard got.status == 200, let cookie = got.header("LockCookie") else {
                            failures.add(1, ordering: .relaxed)
                            continue
                        }
                        let value = got.body.enumerated().reduce(0) { $0 | Int($1.element) << ($1.offset * 8) }
                        let next = (0..<4).map { UInt8(truncatingIfNeeded: (value + 1) >> ($0 * 8)) }
                        if try connection.request("PUT", key, [("Timeout", "20"), ("LockCookie", cookie)], body: next).status != 200 {
                            failures.add(1, ordering: .relaxed)
                        }
                    }
                } catch {
                    failures.add(1000, ordering: .relaxed)
                }
            }
        }
        for _ in 0..<8 { finished.wait() }
        let reply = try server.connect().request("GET", key)
        #expect(reply.status == 200)
        #expect(reply.body == [200, 0, 0, 0])
        #expect(failures.load(ordering: .relaxed) == 0)
    }

    @Test func sigtermStopsCleanly() throws {
        let server = try StateServerProcess()
        defer { server.stop() }
        let idle = try server.connect()
        #expect(try idle.request("GET", Self.target()).status == 404)
        #expect(server.terminate() == 0)
        #expect(try idle.isClosedByServer())
        #expect(server.log.contains("session-state-server stopped"))
    }
}
