import Locking
import Foundation
import SessionHost
import SessionHostCLI
import SessionState
import Synchronization
import WebConfiguration

/// The app the integration tests run behind nginx: each route exercises one part of the host.
@main
struct TestWorker {
    static func main() async {
        var routes = Routes()
        routes.exact("/echo") { request in
            var lines = [
                "method: \(request.method)",
                "path: \(request.path)",
                "raw-uri: \(request.rawURI)",
                "query: \(request.queryItems.map { "\($0.name)=\($0.value)" }.joined(separator: "&"))",
                "secure: \(request.isSecure)",
                "body-length: \(request.body.count)",
                "content-type: \(request.header("Content-Type") ?? "")",
            ]
            lines += request.headers.map { "header.\($0.name.canonicalName): \($0.value)" }
            lines += request.cookies.sorted { $0.key < $1.key }.map { "cookie.\($0.key): \($0.value)" }
            return .text(lines.joined(separator: "\n") + "\n")
        }
        routes.exact("/body") { request in
            Response(headers: [.contentType: "application/octet-stream"], body: .bytes(request.body))
        }
        routes.prefix("/settings") { request in
            .text(request.configuration.map(ConfigurationReport.json) ?? "none")
        }
        routes.exact("/config-statistics") { request in
            guard let statistics = request.configurationStore?.statistics else { return .text("none\n") }
            let lines = Mirror(reflecting: statistics).children.map { "\($0.label ?? ""): \($0.value)" }
            let limits = [
                "memoisedURLByteLimit: \(ConfigurationStoreStatistics.memoisedURLByteLimit)",
                "memoisedDirectoryByteLimit: \(ConfigurationStoreStatistics.memoisedDirectoryByteLimit)",
                "watchedByteLimit: \(ConfigurationStoreStatistics.watchedByteLimit)",
            ]
            return .text((lines + limits).joined(separator: "\n") + "\n")
        }
        routes.prefix("/files") { request in
            .text("prefix handler: \(request.path)\n")
        }
        routes.exact("/throw") { _ in
            throw TestError.secret("SECRET-INTERNAL-DETAIL")
        }
        routes.exact("/async") { request async throws in
            await Task.yield()
            return .text("async: \(request.query("value") ?? "")\n")
        }
        routes.exact("/cookies") { _ in
            var response = Response.text("cookies set\n")
            response.setCookie(try Cookie(name: "plain", value: "1"))
            response.setCookie(try Cookie(
                name: "full", value: "abc", path: "/files", domain: "localhost",
                expires: Date(timeIntervalSince1970: 1_800_000_000), maxAge: 60, secure: true, httpOnly: true, sameSite: .strict))
            return response
        }
        routes.exact("/big") { request in
            let size = request.query("size").flatMap { Int($0) } ?? 0
            var response = Response(headers: [.contentType: "application/octet-stream"])
            response.body = .stream { writer in
                var sent = 0
                while sent < size {
                    let count = min(65_536, size - sent)
                    try writer.write(pattern(from: sent, count: count))
                    sent += count
                }
            }
            return response
        }
        routes.exact("/stream-fail") { _ in
            var response = Response.text("")
            response.body = .stream { writer in
                try writer.write("partial\n")
                try writer.flush()
                throw TestError.secret("failed mid-stream")
            }
            return response
        }
        routes.exact("/slow") { request in
            // Holds the request open until the test creates the marker file, so a test can act
            // while it is in flight without guessing at timings.
            let marker = request.query("marker") ?? ""
            var response = Response.text("")
            response.body = .stream { writer in
                try writer.write("started\n")
                try writer.flush()
                let deadline = Date().addingTimeInterval(60)
                while !FileManager.default.fileExists(atPath: marker), Date() < deadline {
                    usleep(5_000)
                }
                try writer.write("finished\n")
            }
            return response
        }
        addSessionRoutes(&routes)
        await SessionHostMain.run(routes: routes, sessions: sessionOptions, abstract: "The integration tests' worker.")
    }

    enum TestError: Error { case secret(String) }

    // MARK: Sessions with a clock the tests move

    static let clock = ManualSessionClock()
    /// Session_End/Session_OnEnd calls seen so far, one JSON object each.
    static let ended = Locked<[[String: String]]>([])

    static var sessionOptions: SessionOptions {
        func record(_ domain: String) -> @Sendable (EndedSession) -> Void {
            { session in
                let keys = session.items.elements.map { "\($0.key)=\($0.value.jsonValue)" }.joined(separator: ",")
                ended.withLock { $0.append(["domain": domain, "id": session.key.id, "application": session.key.application, "reason": session.reason.rawValue, "items": keys]) }
            }
        }
        // Session_Start hooks only when asked: they make every new session be kept, which other
        // tests must not see.
        var options = SessionOptions(
            onASPNETSessionEnd: record("aspnet"), onClassicSessionEnd: record("asp"),
            clock: clock, expiryCheckInterval: .milliseconds(20))
        if ProcessInfo.processInfo.environment["TEST_SESSION_START_HOOKS"] == "1" {
            options.onASPNETSessionStart = { (session: ASPNETSession) in _ = try? session.set("startedBy", "Session_Start") }
            options.onClassicSessionStart = { (session: ClassicASPSession) in _ = try? session.set("startedBy", "Session_OnStart") }
        }
        return options
    }

    static func addSessionRoutes(_ routes: inout Routes) {
        // Read-modify-write of one counter per request (the concurrency test).
        routes.exact("/sessions/counter", sessions: .aspNet(.readWrite)) { request in
            let session = try request.requireSession()
            let next = (session.int("n") ?? 0) + 1
            try session.set("n", next)
            return .text("\(next)")
        }
        // Both domains read-write; `set=K&v=V` stores into both; answers the two IDs.
        routes.exact("/sessions/both", sessions: [.aspNet(.readWrite), .classic]) { request in
            let session = try request.requireSession()
            let asp = try request.requireClassicSession()
            if let key = request.query("set") {
                try session.set(key, request.query("v") ?? "")
                try asp.set(key, request.query("v") ?? "")
            }
            if request.query("abandon") == "1" { session.abandon() }
            if request.query("asp-abandon") == "1" { asp.abandon() }
            var answer = ["aspnet": session.sessionID, "asp": asp.cookieValue, "aspnetNew": "\(session.isNewSession)", "aspNew": "\(asp.isNewSession)", "aspnetCount": "\(session.count)", "aspCount": "\(asp.count)"]
            if let key = request.query("get") { answer["aspnetValue"] = session.string(key) ?? "" }
            return .text(String(decoding: try JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys]), as: UTF8.self))
        }
        // Stores a value, then fails: the change must be discarded and the lock released.
        routes.exact("/sessions/fail", sessions: .aspNet(.readWrite)) { request in
            try request.requireSession().set(request.query("set") ?? "k", request.query("v") ?? "")
            throw TestError.secret("handler failed after a session change")
        }
        // Any folder: `to` with this request's cookieless segment, as links are written.
        routes.named("session-link", sessions: .aspNet(.readWrite)) { request in
            .text(request.sessionURL(request.query("to") ?? "/"))
        }
        // Both sessions read-only for ASP.NET (the Session_Start test), reporting the keys.
        routes.exact("/sessions/keys", sessions: [.aspNet(.readOnly), .classic]) { request in
            let answer = [
                "aspnet": (request.session?.keys ?? []).joined(separator: ","), "asp": (request.classicSession?.keys ?? []).joined(separator: ","),
                "aspnetStarted": request.session?.string("startedBy") ?? "", "aspStarted": request.classicSession?.string("startedBy") ?? "",
            ]
            return .text(String(decoding: try JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys]), as: UTF8.self))
        }
        routes.exact("/sessions/clock") { request in
            let seconds = request.query("advance").flatMap { Int($0) } ?? 0
            clock.advance(by: .seconds(seconds))
            return .text("\(clock.now)")
        }
        routes.exact("/sessions/ended") { _ in
            .text(String(decoding: try JSONSerialization.data(withJSONObject: ended.withLock { $0 }, options: [.sortedKeys]), as: UTF8.self))
        }
    }

    /// Byte `i` of a streamed body is `i % 251`, so the tests can check every byte.
    static func pattern(from start: Int, count: Int) -> [UInt8] {
        (start..<(start + count)).map { UInt8($0 % 251) }
    }
}
