import Foundation
import Glibc
import Synchronization
import Testing

/// Session locking through nginx and the probe app, told apart by the probe's tStart/tEnd (when
/// the handler began, sessions acquired, and ended): requests that wait start at or after the
/// holder's end; requests that do not overlap it. Each request has its own thread and connection.
///
/// Where a test needs one request to hold a lock before another is sent, it checks that from the
/// holder's tStart and retries the round if the machine was too slow to get the holder going
/// first; no assertion depends on how long anything took.
@Suite(.serialized)
struct SessionLockingTests {
    typealias T = SessionTesting

    static func answers(_ pending: [Pending<HTTPReply>]) throws -> [ProbeAnswer] {
        try pending.map { try ProbeAnswer($0.value()) }
    }

    static func overlap(_ a: ProbeAnswer, _ b: ProbeAnswer) -> Bool {
        a.tStart < b.tEnd && b.tStart < a.tEnd
    }

    static func disjoint(_ a: ProbeAnswer, _ b: ProbeAnswer) -> Bool {
        a.tStart >= b.tEnd || b.tStart >= a.tEnd
    }

    /// Sends `holder`, then (once it is likely to hold its sessions) `others`; returns the
    /// holder's answer, the others' replies, and whether the holder's handler had begun before
    /// the others were sent. Up to three rounds until it had.
    static func holdThen(port: Int, holder: String, cookie: String?, others: [String], othersCookie: String? = nil) throws
        -> (holder: ProbeAnswer, others: [HTTPReply])
    {
        var last: (ProbeAnswer, [HTTPReply])?
        for _ in 0..<3 {
            let held = T.background(port: port, holder, cookie: cookie)
            T.pause(300)
            let sentAt = T.now()
            let pending = others.map { T.background(port: port, $0, cookie: othersCookie ?? cookie) }
            let replies = try pending.map { try $0.value() }
            let answer = try ProbeAnswer(held.value(), target: holder)
            // tStart is rounded to the millisecond; +1 keeps "began before" strict.
            if answer.tStart + 1 <= sentAt { return (answer, replies) }
            last = (answer, replies)
        }
        throw Sockets.Failure("the holder never began within 300 ms of being sent: \(String(describing: last?.0.json))")
    }

    @Test func readWriteRequestsOfOneSessionSerialise() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        // ASP.NET only: the ASP session of each request is new, so only the ASP.NET lock counts.
        let browser = Browser(fixture)
        try browser.probe("/probe?set=k&v=0")
        #expect(browser.cookies.count == 1)
        let results = try Self.answers((0..<2).map { _ in T.background(port: fixture.port, "/probe?sleep=600", cookie: browser.cookieHeader) })
        #expect(Self.disjoint(results[0], results[1]), "\(results.map(\.json))")
        #expect(results.allSatisfy { $0.aspNet?.isNew == false })
    }

    @Test func requestsOfOneASPSessionSerialise() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        // ASP only (probe-ro: the ASP.NET session is read-only and new each time).
        let browser = Browser(fixture)
        try browser.probe("/probe?asp-set=k&asp-v=0")
        #expect(browser.aspCookie != nil)
        #expect(browser.cookies.count == 1)
        let results = try Self.answers((0..<2).map { _ in T.background(port: fixture.port, "/probe-ro?sleep=600", cookie: browser.cookieHeader) })
        #expect(Self.disjoint(results[0], results[1]), "\(results.map(\.json))")
        #expect(results.allSatisfy { $0.asp?.isNew == false })
    }

    @Test func readOnlyWaitsForReadWrite() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        try browser.probe("/probe?set=k&v=0")
        let (holder, others) = try Self.holdThen(port: fixture.port, holder: "/probe?sleep=1000&set=k&v=1", cookie: browser.cookieHeader, others: ["/probe-ro?get=k"])
        let reader = try ProbeAnswer(others[0])
        #expect(reader.aspNet?.isReadOnly == true)
        #expect(reader.tStart >= holder.tEnd, "reader \(reader.tStart) holder ended \(holder.tEnd)")
        // It read what the writer stored.
        #expect(reader.get == "1")
    }

    @Test func readOnlyRequestsRunInParallel() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        try browser.probe("/probe?set=k&v=0")
        let results = try Self.answers((0..<2).map { _ in T.background(port: fixture.port, "/probe-ro?sleep=800", cookie: browser.cookieHeader) })
        #expect(results.allSatisfy { $0.aspNet?.isReadOnly == true && $0.aspNet?.isNew == false })
        #expect(Self.overlap(results[0], results[1]), "\(results.map(\.json))")
    }

    @Test func requestsOfDifferentSessionsNeverWait() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let one = Browser(fixture)
        try one.probe("/probe?set=k&v=1&asp-set=k&asp-v=1")
        let two = Browser(fixture)
        try two.probe("/probe?set=k&v=2&asp-set=k&asp-v=2")
        #expect(one.cookies.count == 2)
        let results = try Self.answers([
            T.background(port: fixture.port, "/probe?sleep=800", cookie: one.cookieHeader),
            T.background(port: fixture.port, "/probe?sleep=800", cookie: two.cookieHeader),
        ])
        #expect(results[0].aspNet?.id != results[1].aspNet?.id)
        #expect(results.allSatisfy { $0.aspNet?.isNew == false && $0.asp?.isNew == false })
        #expect(Self.overlap(results[0], results[1]), "\(results.map(\.json))")
    }

    @Test func handlersWithoutSessionsNeverWait() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        try browser.probe("/probe?set=k&v=1&asp-set=k&asp-v=1")
        let (holder, others) = try Self.holdThen(port: fixture.port, holder: "/probe?sleep=1000", cookie: browser.cookieHeader, others: ["/probe-none"])
        let none = try ProbeAnswer(others[0])
        #expect(none.isASPNETNull)
        #expect(none.isASPNull)
        #expect(none.tStart < holder.tEnd, "no-session handler began \(none.tStart), holder ended \(holder.tEnd)")
    }

    /// The holder of a lock kept past the execution timeout loses it to a waiter. Its own save
    /// is then refused, and its answer says so (409): ASP.NET would drop the write silently
    /// and answer as if it had been saved.
    @Test func staleLockIsBrokenAndTheHoldersWriteRefused() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        // /stale has <httpRuntime executionTimeout="1" />.
        let browser = Browser(fixture)
        try browser.probe("/stale/probe?set=k&v=first")
        var outcome: (holder: HTTPReply, second: ProbeAnswer)?
        for _ in 0..<3 {
            let held = T.background(port: fixture.port, "/stale/probe?set=k&v=holder&sleep=4000", cookie: browser.cookieHeader)
            T.pause(300)
            let second = try ProbeAnswer(T.background(port: fixture.port, "/stale/probe?set=k&v=second", cookie: browser.cookieHeader).value())
            let holder = try held.value()
            // A holder that only began after the second request got the lock saves normally:
            // try again (the check is about the order, not about a timing).
            if holder.status == 409 {
                outcome = (holder, second)
                break
            }
            try browser.probe("/stale/probe?set=k&v=first")
        }
        let (holder, second) = try #require(outcome, "the holder never held the lock first")
        // The second request saw the session as it was before the holder.
        #expect(second.aspNetBefore?.keys == ["k": "first"])
        #expect(holder.text.contains("not saved"))
        #expect(fixture.workerLog.contains("breaking it"))
        #expect(fixture.workerLog.contains("changes were not saved"))
        let later = try browser.probe("/stale/probe?get=k")
        #expect(later.get == "second")
    }

    @Test func perSessionQueueLimit() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree, arguments: ["--session-queue-limit", "1"])
        defer { fixture.finish() }
        let browser = Browser(fixture)
        try browser.probe("/probe?set=k&v=1")
        let (_, others) = try Self.holdThen(port: fixture.port, holder: "/probe?sleep=1500", cookie: browser.cookieHeader, others: Array(repeating: "/probe", count: 3))
        let refused = others.filter { $0.status == 503 }
        #expect(!refused.isEmpty, "\(others.map(\.status))")
        #expect(refused.allSatisfy { $0.text.contains("queue limit") })
        #expect(others.allSatisfy { $0.status == 503 || $0.status == 200 })
        #expect(others.contains { $0.status == 200 })
        // The session is fine afterwards.
        #expect(try browser.probe("/probe?get=k").get == "1")
    }

    @Test func parallelIncrementsThroughNginxAreNotLost() throws {
        let tree = try SessionTree()
        let fixture = try Fixture.sessions(tree, worker: "TestWorker")
        defer { fixture.finish() }
        let browser = Browser(fixture)
        let first = try browser.get("/sessions/counter")
        #expect(first.text == "1")
        let cookie = try #require(browser.cookieHeader)
        let total = 50, threads = 8
        let port = fixture.port
        let workers = (0..<threads).map { thread in
            Pending<[Int]> {
                let connection = try HTTPConnection(port: port)
                var seen: [Int] = []
                for _ in stride(from: 1 + thread, to: total, by: threads) {
                    let reply = try connection.send("GET", "/sessions/counter", headers: [("Cookie", cookie)])
                    guard reply.status == 200, let value = Int(reply.text) else { throw Sockets.Failure("\(reply.status) \(reply.text)") }
                    seen.append(value)
                }
                return seen
            }
        }
        let values = try workers.flatMap { try $0.value() } + [1]
        #expect(values.count == total)
        #expect(Set(values) == Set(1...total))
        #expect(try browser.get("/sessions/counter").text == "\(total + 1)")
    }
}
