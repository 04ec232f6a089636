import Foundation
import Glibc
import Locking
import Testing
import SessionState
@testable import SQLSessionStore

/// `mode="SQLServer"` through nginx: two workers share sessions in PostgreSQL or in one SQLite
/// file; sessions survive a worker restart and a PostgreSQL restart; a database that goes down
/// gives 503, never 500 or a hang; a missing schema and a bad connection string are clear
/// errors with file and line.
@Suite(.serialized)
struct SQLServerModeTests {
    typealias T = SessionTesting

    enum Database: String, CustomStringConvertible, CaseIterable {
        case postgres, sqlite
        var description: String { rawValue }
    }

    /// A database with the schema installed, and the `sqlConnectionString` that names it.
    final class SessionDatabase {
        let postgres: PostgresServer?
        let folder: URL
        let connectionString: String

        init(_ kind: Database) throws {
            folder = URL(fileURLWithPath: "/tmp").appending(path: "sessionhost-sqlmode-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            switch kind {
            case .postgres:
                let server = try PostgresServer()
                postgres = server
                connectionString = "host=127.0.0.1 port=\(server.port) user=\(PostgresServer.user)"
            case .sqlite:
                postgres = nil
                connectionString = "sqlite:\(folder.appending(path: "sessions.db").path)"
            }
            _ = try SQLSchemaInstaller.install(try SQLSessionDatabase.parse(connectionString, allowCustomDatabase: false))
        }

        func stop() {
            postgres?.stop()
            try? FileManager.default.removeItem(at: folder)
        }
    }

    /// The session tree with `/sql` on `connectionString`. A lock taken just before the database
    /// went down whose answer was lost is held until the execution timeout breaks it (the
    /// worker gives back the locks it knows it holds): 8 s here instead of 110.
    static func tree(_ connectionString: String, timeout: Int = 5) throws -> SessionTree {
        var applications = SessionTree.standardApplications
        applications["/sql"] = SessionTree.webConfig(systemWeb: #"<sessionState mode="SQLServer" sqlConnectionString="\#(connectionString)" sqlCommandTimeout="\#(timeout)" /><httpRuntime executionTimeout="8" />"#)
        return try SessionTree(applications: applications)
    }

    @Test(arguments: Database.allCases)
    func twoWorkersShareSessionsAndARestartKeepsThem(_ kind: Database) throws {
        let database = try SessionDatabase(kind)
        defer { database.stop() }
        let tree = try Self.tree(database.connectionString)
        let workers = try TwoProbeWorkers(tree)
        defer { workers.stop() }
        let browser = try workers.checkSharedSessions("/sql", mode: "SQLServer")

        // Both workers stop; a new one (behind a new nginx) still has the session.
        let cookies = browser.cookies
        workers.stop()
        let restarted = try Fixture.sessions(tree)
        defer { restarted.finish() }
        let back = Browser(restarted, cookies: cookies)
        #expect(try back.probe("/sql/probe?get=hits").json["get"] as? Int == 200)
        #expect(try back.probe("/sql/probe?get=n").json["get"] as? Int == 7)
    }

    /// PostgreSQL stopped at once (as a crash) while increments run: requests get 503 with
    /// Retry-After (never 500, never a hang past the command timeout), the worker stays up; once
    /// PostgreSQL is back, requests succeed again and every increment answered 200 is there.
    @Test func postgresStoppedMidLoadGives503AndRecovers() throws {
        let database = try SessionDatabase(.postgres)
        defer { database.stop() }
        let server = try #require(database.postgres)
        let tree = try Self.tree(database.connectionString, timeout: 3)
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let users = (0..<6).map { _ in Browser(fixture) }
        for user in users { #expect(try user.probe("/sql/probe?set=c&v=0&type=int").aspNet?.mode == "SQLServer") }

        let answered = Locked<[Int: Int]>([:])
        let statuses = Locked<Set<Int>>([])
        let running = Locked(true)
        let threads = users.enumerated().map { index, user in
            let cookie = user.cookieHeader
            let port = fixture.port
            let thread = Thread {
                while running.withLock({ $0 }) {
                    let start = ContinuousClock.now
                    guard let reply = try? HTTPConnection(port: port).send("GET", "/sql/probe?incr=c", headers: cookie.map { [("Cookie", $0)] } ?? []) else { continue }
                    #expect(ContinuousClock.now - start < .seconds(20), "a request hung")
                    statuses.withLock { _ = $0.insert(reply.status) }
                    if reply.status == 200 { answered.withLock { $0[index, default: 0] += 1 } }
                    if reply.status == 503 { #expect(reply.headers("retry-after").first == "5") }
                }
            }
            thread.start()
            return thread
        }
        T.pause(500)
        server.stop(mode: "immediate", removing: false)
        T.pause(1500)
        try server.start()
        // Requests succeed again by themselves.
        try fixture.waitUntil("requests succeed after PostgreSQL is back") {
            (try? users[0].get("/sql/probe?get=c").status) == 200
        }
        T.pause(300)
        running.withLock { $0 = false }
        for _ in 0..<100 where threads.contains(where: { $0.isExecuting }) { T.pause(100) }
        let seen = statuses.withLock { $0 }
        #expect(seen.contains(503), "no 503 while PostgreSQL was down: \(seen)")
        #expect(!seen.contains(500), "\(seen)")
        #expect(seen.isSubset(of: [200, 503]), "\(seen)")
        #expect(fixture.worker.isRunning)
        #expect(fixture.workerLog.contains("Unable to connect to SQL Server session database."))
        #expect(fixture.workerLog.contains("the session database answers again"))
        #expect(!fixture.workerLog.contains("password"))
        // No increment answered 200 is lost (one that failed may still have been saved).
        for (index, user) in users.enumerated() {
            let value = try #require(try user.probe("/sql/probe?get=c").json["get"] as? Int)
            #expect(value >= answered.withLock { $0[index] ?? 0 }, "user \(index): \(value) stored, \(answered.withLock { $0[index] ?? 0 }) answered")
        }
    }

    /// A database without the schema: a 500 for the request and a log line naming the command
    /// to run; installing it while the worker runs is enough.
    @Test func aMissingSchemaNamesTheInstallCommand() throws {
        let folder = URL(fileURLWithPath: "/tmp").appending(path: "sessionhost-sqlmode-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let connectionString = "sqlite:\(folder.appending(path: "later.db").path)"
        // Kept: a SessionTree removes its folder when released, under the running worker.
        let tree = try Self.tree(connectionString)
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        let reply = try browser.get("/sql/probe?set=a&v=1")
        #expect(reply.status == 500, "\(reply.text)")
        #expect(!reply.text.contains("later.db"))
        #expect(fixture.workerLog.contains("session-host sql install --connection-string"))
        _ = try SQLSchemaInstaller.install(try SQLSessionDatabase.parse(connectionString, allowCustomDatabase: false))
        #expect(try browser.probe("/sql/probe?set=a&v=1").aspNet?.mode == "SQLServer")
    }

    /// `partitionResolverType` with SQLServer: the probe's resolver spreads sessions over two
    /// SQLite files (one pool each); each session is in the file its ID names.
    @Test func aPartitionResolverSpreadsSessionsOverDatabases() throws {
        let one = try SessionDatabase(.sqlite)
        defer { one.stop() }
        let two = try SessionDatabase(.sqlite)
        defer { two.stop() }
        var applications = SessionTree.standardApplications
        applications["/sql"] = SessionTree.webConfig(systemWeb: #"<sessionState mode="SQLServer" partitionResolverType="SessionProbe.PartitionResolver" />"#)
        let tree = try SessionTree(applications: applications)
        let fixture = try Fixture.sessions(tree, environment: ["PROBE_PARTITIONS": "\(one.connectionString),\(two.connectionString)"])
        defer { fixture.finish() }
        var counts = [0, 0]
        for _ in 0..<12 {
            let browser = Browser(fixture)
            #expect(try browser.probe("/sql/probe?set=k&v=1").aspNet?.mode == "SQLServer")
            let id = try #require(browser.cookies["ASP.NET_SessionId"])
            let partition = Int(id.utf8.first!) % 2
            counts[partition] += 1
            let database = try SQLSessionDatabase.parse([one, two][partition].connectionString, allowCustomDatabase: false)
            guard case .sqlite(let path, _) = database else { continue }
            let rows = try SQLiteConnection(path: path, busyTimeout: .seconds(5)).execute("SELECT count(*) FROM ASPStateTempSessions WHERE SessionId LIKE ?1 || '%'", [.text(id)])
            #expect(rows.first?.first?.int == 1)
        }
        #expect(counts[0] > 0 && counts[1] > 0, "\(counts)")
    }

    /// Connection strings the store cannot use are configuration errors with file and line,
    /// from `session-host config check` (and at startup and on the 500.19 page alike).
    @Test func connectionStringErrorsHaveFileAndLine() throws {
        var applications = SessionTree.standardApplications
        applications["/sspi"] = SessionTree.webConfig(systemWeb: #"<sessionState mode="SQLServer" sqlConnectionString="data source=db;Integrated Security=SSPI;Password=s3cret" />"#)
        applications["/named"] = SessionTree.webConfig(systemWeb: #"<sessionState mode="SQLServer" sqlConnectionString="Server=db;Initial Catalog=Mine" />"#)
        applications["/fine"] = SessionTree.webConfig(systemWeb: #"<sessionState mode="SQLServer" allowCustomSqlDatabase="true" sqlConnectionString="postgresql://web@db:5432/Mine" />"#)
        let tree = try SessionTree(applications: applications)
        let output = try Self.sessionHost(["config", "check", "--config-dir", tree.configDirectory])
        #expect(output.status == 1)
        #expect(output.text.contains("sspi/web.config:3: "), "\(output.text)")
        #expect(output.text.contains("'integrated security' cannot be used with PostgreSQL"))
        #expect(output.text.contains("named/web.config:3: The sqlConnectionString attribute or the connection string it refers to cannot contain the connection options 'Database', 'Initial Catalog' or 'AttachDbFileName'."))
        #expect(!output.text.contains("fine/web.config"))
        #expect(!output.text.contains("s3cret"))
    }

    /// `session-host sql install | status | uninstall` end to end, on PostgreSQL.
    @Test func theSQLCommandInstallsShowsAndRemovesTheSchema() throws {
        let server = try PostgresServer()
        defer { server.stop() }
        let connection = "postgresql://\(PostgresServer.user)@127.0.0.1:\(server.port)"
        let before = try Self.sessionHost(["sql", "status", "--connection-string", connection])
        #expect(before.status == 1)
        let install = try Self.sessionHost(["sql", "install", "--connection-string", connection])
        #expect(install.status == 0, "\(install.text)")
        #expect(install.text.contains("created the database ASPState; installed session-state schema version \(SQLSchema.version)"))
        let again = try Self.sessionHost(["sql", "install", "--connection-string", connection])
        #expect(again.text.contains("schema version \(SQLSchema.version) is installed"))
        let status = try Self.sessionHost(["sql", "status", "--connection-string", connection])
        #expect(status.status == 0)
        #expect(status.text.contains("session-state schema version \(SQLSchema.version)"))
        #expect(status.text.contains("sessions: 0 (0 locked"))
        let removed = try Self.sessionHost(["sql", "uninstall", "--connection-string", connection])
        #expect(removed.status == 0)
        #expect(try Self.sessionHost(["sql", "status", "--connection-string", connection]).text.contains("not installed"))
        let bad = try Self.sessionHost(["sql", "status", "--connection-string", "Server=db;Integrated Security=SSPI"])
        #expect(bad.status != 0)
        #expect(bad.text.contains("Windows authentication"))
    }

    /// Runs the `session-host` tool; its exit status and its output (both streams).
    static func sessionHost(_ arguments: [String]) throws -> (status: Int32, text: String) {
        try Fixture.runProduct("session-host", arguments)
    }
}
