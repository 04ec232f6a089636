import Foundation
import Locking
import SessionHost
import SessionHostTesting
import Testing

/// Expiry, Session_End and abandon of both session domains on SessionHostTesting: the manual
/// clock moves, `advance(by:)` runs the expiry sweep at once, and the answers are read straight
/// from the handler, with no nginx, no clock route and no polling for Session_End.
final class SessionLifecycleTests {
    let folder: URL
    let ended = Locked<[EndedSession]>([])
    let client: TestClient

    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("session-lifecycle-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var routes = Routes()
        // Both domains read-write; `set=K&v=V` stores into both, `abandon=` ends one.
        routes.exact("/both", sessions: [.aspNet(.readWrite), .classic]) { request in
            let session = try request.requireSession()
            let classic = try request.requireClassicSession()
            if let key = request.query("set") {
                try session.set(key, request.query("v") ?? "")
                try classic.set(key, request.query("v") ?? "")
            }
            switch request.query("abandon") {
            case "aspnet": session.abandon()
            case "classic": classic.abandon()
            default: break
            }
            return .text("\(session.sessionID) \(session.isNewSession) \(session.count) \(classic.cookieValue) \(classic.isNewSession)")
        }
        routes.exact("/plain") { _ in .text("no session") }
        let ended = ended
        let options = SessionOptions(
            onASPNETSessionEnd: { session in ended.withLock { $0.append(session) } },
            onClassicSessionEnd: { session in ended.withLock { $0.append(session) } })
        client = TestClient(routes: routes, configDirectory: folder.path, sessions: options)
    }

    deinit {
        try? FileManager.default.removeItem(at: folder)
    }

    /// The handler's answer: ASP.NET ID, new, count; classic cookie value, new.
    struct Both {
        var aspNet: String
        var aspNetNew: Bool
        var aspNetCount: Int
        var classic: String
        var classicNew: Bool
    }

    func both(_ query: String = "") async throws -> Both {
        let parts = await client.get("/both" + query).text.split(separator: " ").map(String.init)
        try #require(parts.count == 5)
        return Both(aspNet: parts[0], aspNetNew: parts[1] == "true", aspNetCount: Int(parts[2]) ?? -1, classic: parts[3], classicNew: parts[4] == "true")
    }

    @Test func expiryRaisesSessionEndInBothDomains() async throws {
        let start = try await both("?set=k&v=1")
        #expect(start.aspNetNew)
        #expect(client.cookies["ASP.NET_SessionId"] == start.aspNet)
        client.advance(by: .seconds(19 * 60))
        let alive = try await both()
        #expect(alive.aspNet == start.aspNet && alive.classic == start.classic)
        #expect(!alive.aspNetNew && !alive.classicNew && alive.aspNetCount == 1)
        #expect(ended.withLock { $0.isEmpty })
        // 21 minutes untouched: both 20-minute sessions end, with their last items.
        client.advance(by: .seconds(21 * 60))
        let endings = ended.withLock { $0 }
        #expect(endings.count == 2)
        #expect(endings.allSatisfy { $0.reason == .expired && $0.items["k"]?.jsonValue as? String == "1" })
        #expect(endings.contains { $0.key.id == start.aspNet })
        let after = try await both()
        #expect(after.aspNetNew && after.classicNew && after.aspNetCount == 0)
        #expect(after.aspNet != start.aspNet && after.classic != start.classic)
    }

    @Test func requestsWithoutSessionNeedsKeepTheASPNETSessionAlive() async throws {
        let start = try await both("?set=k&v=1")
        for _ in 0..<2 {
            client.advance(by: .seconds(15 * 60))
            // A handler that needs no session resets the ASP.NET timeout (ResetItemTimeout).
            #expect(await client.get("/plain").status == .ok)
        }
        client.advance(by: .seconds(60))
        // 31 minutes after the last use of either: the classic session expired, ASP.NET's lives.
        let after = try await both()
        #expect(after.aspNet == start.aspNet && !after.aspNetNew)
        #expect(after.classicNew && after.classic != start.classic)
    }

    @Test func abandonRaisesSessionEndOncePerDomain() async throws {
        let start = try await both("?set=k&v=1")
        _ = try await both("?abandon=aspnet")
        #expect(ended.withLock { $0.map(\.key.id) } == [start.aspNet])
        #expect(ended.withLock { $0.first?.reason } == .abandoned)
        _ = try await both("?abandon=classic")
        #expect(ended.withLock { $0.count } == 2)
        #expect(ended.withLock { $0.last?.reason } == .abandoned)
        #expect(ended.withLock { $0.last?.items["k"]?.jsonValue as? String } == "1")
        // The next request starts both afresh.
        let next = try await both()
        #expect(next.aspNetNew && next.aspNet != start.aspNet)
    }

    @Test func anExpiredIDIsNeverAdopted() async throws {
        for _ in 0..<5 {
            client.clearCookies()
            let start = try await both("?set=k&v=1")
            // The clock moves without the sweep: the expired ID must not be taken either.
            client.clock.advance(by: .seconds(21 * 60))
            let reply = await client.get("/both")
            let after = try await both()
            #expect(reply.cookies.isEmpty)
            #expect(after.aspNet != start.aspNet && after.aspNetNew)
            #expect(after.classic != start.classic)
        }
    }
}
