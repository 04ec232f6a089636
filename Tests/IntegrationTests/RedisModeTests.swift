import Foundation
import Glibc
import Locking
import Testing

/// `mode="Custom"` through nginx: the Redis store by Microsoft's type name shared by two
/// workers, Redis killed mid-load (503, never 500 or a hang), `throwOnError="false"` (the
/// stored session is never overwritten), an app's own store, and every provider error with
/// file and line from `check-config` and on the 500.19 page.
@Suite(.serialized)
struct RedisModeTests {
    typealias T = SessionTesting

    /// `/redis` on the Redis store under Microsoft's type name, with its attribute names.
    static func tree(_ server: RedisServer, extra: String = "", executionTimeout: Int = 8) throws -> SessionTree {
        var applications = SessionTree.standardApplications
        applications["/redis"] = SessionTree.webConfig(systemWeb: #"""
            <sessionState mode="Custom" customProvider="MySessionStateStore" timeout="20">
              <providers>
                <add name="MySessionStateStore" type="Microsoft.Web.Redis.RedisSessionStateProvider" host="127.0.0.1" port="\#(server.port)"
                     accessKey="" ssl="false" operationTimeoutInMilliseconds="2000" retryTimeoutInMilliseconds="0" \#(extra) />
              </providers>
            </sessionState>
            <httpRuntime executionTimeout="\#(executionTimeout)" />
            """#)
        return try SessionTree(applications: applications)
    }

    @Test func twoWorkersShareSessionsInRedis() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let tree = try Self.tree(server)
        let workers = try TwoProbeWorkers(tree)
        defer { workers.stop() }
        let browser = try workers.checkSharedSessions("/redis", mode: "Custom")
        // The keys are Microsoft's, under the application's virtual path.
        let id = try #require(browser.cookies["ASP.NET_SessionId"])
        #expect(try server.client().command("GET", "{/redis_\(id)}_SessionTimeout").text == "1200")

        // A waiter on one worker is woken by the other's release: the release publishes (only
        // because someone waits), and the waiting worker listens. Rounds until the two requests
        // landed on different workers and the second came while the first held the session (on
        // a busy machine it may come later: then nobody waited, and nothing is published).
        let client = try server.client()
        var woken = false
        for _ in 0..<8 where !woken {
            _ = try client.command("CONFIG", "RESETSTAT")
            let (holder, others) = try SessionLockingTests.holdThen(
                port: workers.fixture.port, holder: "/redis/probe?sleep=800&incr=w", cookie: browser.cookieHeader, others: ["/redis/probe?incr=w"])
            let waiter = try ProbeAnswer(others[0])
            guard waiter.worker != holder.worker else { continue }
            #expect(waiter.tStart >= holder.tEnd, "the waiter ran while the holder held the session")
            let stats = try client.command("INFO", "commandstats").text ?? ""
            woken = (stats.firstMatch(of: /cmdstat_publish:calls=(\d+)/).flatMap { Int($0.1) } ?? 0) >= 1
        }
        #expect(woken, "no release was published for a waiter on the other worker")
        guard case .array(let subscribers) = try client.command("PUBSUB", "NUMSUB", "SessionHost.SessionRelease.0"), subscribers.count == 2 else {
            Issue.record("no PUBSUB answer")
            return
        }
        #expect((Int(subscribers[1].text ?? "") ?? 0) >= 1, "no worker listens for releases")
    }

    /// Redis killed while increments run: 503 with Retry-After (never 500, never a hang past
    /// the operation timeout), workers alive; once it is back (empty: no persistence), new
    /// sessions work again without a restart.
    @Test func redisKilledMidLoadGives503AndRecovers() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let tree = try Self.tree(server)
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let users = (0..<6).map { _ in Browser(fixture) }
        for user in users { #expect(try user.probe("/redis/probe?set=c&v=0&type=int").aspNet?.mode == "Custom") }
        let statuses = Locked<Set<Int>>([])
        let running = Locked(true)
        let threads = users.map { user in
            let cookie = user.cookieHeader
            let port = fixture.port
            let thread = Thread {
                while running.withLock({ $0 }) {
                    let start = ContinuousClock.now
                    guard let reply = try? HTTPConnection(port: port).send("GET", "/redis/probe?incr=c", headers: cookie.map { [("Cookie", $0)] } ?? []) else { continue }
                    #expect(ContinuousClock.now - start < .seconds(20), "a request hung")
                    statuses.withLock { _ = $0.insert(reply.status) }
                    if reply.status == 503 { #expect(reply.headers("retry-after").first == "5") }
                }
            }
            thread.start()
            return thread
        }
        T.pause(400)
        server.kill()
        T.pause(1500)
        try server.start()
        try fixture.waitUntil("new sessions work after Redis is back") {
            (try? Browser(fixture).probe("/redis/probe?set=x&v=1").aspNet?.mode) == "Custom"
        }
        running.withLock { $0 = false }
        for _ in 0..<100 where threads.contains(where: { $0.isExecuting }) { T.pause(100) }
        let seen = statuses.withLock { $0 }
        #expect(seen.contains(503), "no 503 while Redis was down: \(seen)")
        #expect(seen.isSubset(of: [200, 503]), "\(seen)")
        #expect(fixture.worker.isRunning)
        #expect(fixture.workerLog.contains("Unable to reach the Redis server of the session state store."))
        #expect(fixture.workerLog.contains("the Redis session state server answers again"))
        let fresh = Browser(fixture)
        _ = try fresh.probe("/redis/probe?set=y&v=2")
        #expect(try fresh.probe("/redis/probe?get=y").json["get"] as? String == "2")
    }

    /// throwOnError="false": while Redis is down the request runs with an empty session and
    /// answers 200, nothing is written (so the stored session survives), and a warning says so.
    @Test func throwOnErrorFalseNeverOverwritesTheStoredSession() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let tree = try Self.tree(server, extra: #"throwOnError="false""#)
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        _ = try browser.probe("/redis/probe?set=cart&v=3-apples")
        let id = try #require(browser.cookies["ASP.NET_SessionId"])
        let stored = try #require(try server.client().command("GET", "{/redis_\(id)}_SessionStateItemCollection").text)
        // Redis stalls (SIGSTOP: connections stay open, nothing answers) then the request runs.
        let pid = try #require(try Self.pid(of: server))
        kill(pid, SIGSTOP)
        let during = try browser.probe("/redis/probe?set=cart&v=nothing")
        kill(pid, SIGCONT)
        #expect(during.reply.status == 200)
        #expect(during.aspNetBefore?.count == 0, "the request did not get an empty session")
        try fixture.waitUntil("the warnings are logged") {
            fixture.workerLog.contains("this request gets an empty session that will not be saved")
                && fixture.workerLog.contains("session changes were not saved: the store was unavailable")
        }
        // Nothing was written: the stored session is as it was, and readable again.
        #expect(try server.client().command("GET", "{/redis_\(id)}_SessionStateItemCollection").text == stored)
        let after = try browser.probe("/redis/probe?get=cart")
        #expect(after.json["get"] as? String == "3-apples", "\(after.reply.text)\n\(fixture.workerLog.suffix(3000))")
    }

    /// The redis-server process id (from INFO).
    static func pid(of server: RedisServer) throws -> pid_t? {
        let info = try server.client().command("INFO", "server").text ?? ""
        return info.firstMatch(of: /process_id:(\d+)/).flatMap { pid_t($0.1) }
    }

    /// An app's own store, registered by type name, selected by <providers>.
    @Test func anAppsOwnStoreIsSelectedByItsTypeName() throws {
        var applications = SessionTree.standardApplications
        applications["/mine"] = SessionTree.webConfig(systemWeb: #"""
            <sessionState mode="Custom" customProvider="Memory">
              <providers><add name="Other" type="Not.Loaded" anything="kept as data" /><add name="Memory" type="SessionProbe.MemoryStore" label="shop" /></providers>
            </sessionState>
            """#)
        let tree = try SessionTree(applications: applications)
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        #expect(try browser.probe("/mine/probe?set=a&v=1").aspNet?.mode == "Custom")
        #expect(try browser.probe("/mine/probe?get=a").json["get"] as? String == "1")
    }

    /// Every provider error, with file and line: from the app's `check-config` without starting
    /// a worker, and on the 500.19 page.
    @Test func providerErrorsHaveFileAndLine() throws {
        var applications = SessionTree.standardApplications
        func custom(_ providers: String, _ attributes: String = #"customProvider="P""#) -> String {
            SessionTree.webConfig(systemWeb: "<sessionState mode=\"Custom\" \(attributes)>\n<providers>\(providers)</providers>\n</sessionState>")
        }
        applications["/unknown-type"] = custom(#"<add name="P" type="Nobody.Registered" />"#)
        applications["/unknown-attribute"] = custom(#"<add name="P" type="Microsoft.Web.Redis.RedisSessionStateProvider" hots="x" accessKey="pw-secret" />"#)
        applications["/tls"] = custom(#"<add name="P" type="SessionHost.RedisSessionStateStore" ssl="true" />"#)
        applications["/dotnet"] = custom(#"<add name="P" type="Microsoft.Web.Redis.RedisSessionStateProvider" settingsClassName="X" settingsMethodName="Y" />"#)
        applications["/missing"] = custom(#"<add name="Q" type="SessionProbe.MemoryStore" />"#)
        applications["/empty"] = custom(#"<add name="Q" type="SessionProbe.MemoryStore" />"#, "")
        applications["/resolver"] = custom(#"<add name="P" type="SessionProbe.MemoryStore" />"#, #"customProvider="P" partitionResolverType="SessionProbe.PartitionResolver""#)
        applications["/fine"] = custom(#"<add name="P" type="SessionProbe.MemoryStore" label="x" /><add name="Z" type="Whatever" junk="1" />"#)
        let tree = try SessionTree(applications: applications)

        let output = try Fixture.runProduct("session-probe", ["check-config", "--config-dir", tree.configDirectory])
        #expect(output.status == 1)
        let expected = [
            "unknown-type/web.config:3: The custom session state store provider type 'Nobody.Registered' cannot be loaded",
            "unknown-attribute/web.config:4: Unrecognized attribute 'hots'. Note that attribute names are case-sensitive.",
            "tls/web.config:4: ssl=\"true\" is not available",
            "dotnet/web.config:4: The attribute 'settingsClassName' names .NET code",
            "missing/web.config:3: The custom session state store provider 'P' is not found.",
            "empty/web.config:3: The custom session state store provider name '' is invalid.",
            "resolver/web.config:3: Cannot use 'partitionResolver' unless the mode is 'StateServer' or 'SQLServer'.",
        ]
        for line in expected { #expect(output.text.contains(line), "missing: \(line)\n\(output.text)") }
        #expect(!output.text.contains("fine/web.config"))
        #expect(!output.text.contains("pw-secret"))

        // The same on the 500.19 page; the other applications are served.
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let page = try fixture.get("/unknown-attribute/probe")
        #expect(page.status == 500)
        #expect(page.text.contains("HTTP Error 500.19"))
        #expect(page.text.contains("Unrecognized attribute &#39;hots&#39;") || page.text.contains("Unrecognized attribute 'hots'"), "\(page.text)")
        #expect(try Browser(fixture).probe("/fine/probe?set=a&v=1").aspNet?.mode == "Custom")
    }
}
