import Foundation
import Locking
import Logging
import SessionState
import SessionStateTesting
import Testing
@testable import SQLSessionStore

/// The SQLServer store against a real PostgreSQL 15 and a SQLite file: install, the store
/// contract, a missing schema, the one-sweeper expiry with Session_End, wake-ups across workers.
@Suite(.serialized)
struct SQLStoreTests {
    static let logger = Logger(label: "test")

    /// The server's ASPState database (no database named: install creates it).
    static func postgres(_ server: PostgresServer) throws -> SQLSessionDatabase {
        try SQLSessionDatabase.parse("host=127.0.0.1 port=\(server.port) user=\(PostgresServer.user)", allowCustomDatabase: false)
    }

    static func sqlite() -> (database: SQLSessionDatabase, folder: URL) {
        let folder = URL(fileURLWithPath: "/tmp").appending(path: "sessionhost-sqlite-\(UUID().uuidString.prefix(8))")
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return (.sqlite(path: folder.appending(path: "sessions.db").path), folder)
    }

    static func store(_ database: SQLSessionDatabase, compression: Bool = false, sessionEnd: Bool = false, timeout: Duration = .seconds(5)) -> SQLSessionStateStore {
        SQLSessionStateStore(configuration: .init(database: database, commandTimeout: timeout, compressionEnabled: compression, raisesSessionEnd: sessionEnd), logger: logger)
    }

    @Test(arguments: [false, true])
    func postgresKeepsTheContract(compression: Bool) throws {
        let server = try PostgresServer()
        defer { server.stop() }
        let database = try Self.postgres(server)
        let installed = try SQLSchemaInstaller.install(database)
        #expect(installed.contains("created the database ASPState"))
        let store = Self.store(database, compression: compression)
        defer { store.close() }
        try SessionStateStoreConformance(store: store).checkAll()
    }

    @Test(arguments: [false, true])
    func sqliteKeepsTheContract(compression: Bool) throws {
        let (database, folder) = Self.sqlite()
        defer { try? FileManager.default.removeItem(at: folder) }
        _ = try SQLSchemaInstaller.install(database)
        let store = Self.store(database, compression: compression)
        defer { store.close() }
        try SessionStateStoreConformance(store: store).checkAll()
    }

    @Test func installIsIdempotentAndStatusCountsSessions() throws {
        let server = try PostgresServer()
        defer { server.stop() }
        let (sqlite, folder) = Self.sqlite()
        defer { try? FileManager.default.removeItem(at: folder) }
        for database in [try Self.postgres(server), sqlite] {
            // Before install: a worker says what to run; status says nothing is installed.
            let early = Self.store(database)
            let missing = #expect(throws: SessionStoreError.self) { _ = try early.getItem(SessionKey(application: "/LM/W3SVC/1/ROOT", id: ASPNETSessionID.generate())) }
            #expect(missing?.kind == .configuration)
            #expect(missing?.message.contains("session-host sql install --connection-string") == true, "\(missing?.message ?? "")")
            early.close()
            if case .postgres = database {
                // No ASPState database yet: status cannot connect to it.
                #expect(throws: SessionStoreError.self) { _ = try SQLSchemaInstaller.status(database) }
            } else {
                #expect(try SQLSchemaInstaller.status(database).version == nil)
            }
            _ = try SQLSchemaInstaller.install(database)
            let again = try SQLSchemaInstaller.install(database)
            #expect(again.contains("is installed"))
            let store = Self.store(database)
            let application = "/LM/W3SVC/1/ROOT/Shop"
            var lockedKey: SessionKey?
            for index in 0..<3 {
                let key = SessionKey(application: application, id: ASPNETSessionID.generate())
                var data = SessionStateStoreData(timeout: 20)
                data.items["n"] = .int(index)
                try store.setAndReleaseItemExclusive(key, data: data, lockID: nil, newItem: true)
                lockedKey = key
            }
            _ = try store.getItemExclusive(try #require(lockedKey))
            let status = try SQLSchemaInstaller.status(database)
            #expect(status.version == SQLSchema.version)
            #expect(status.sessions == 3)
            #expect(status.lockedSessions == 1)
            #expect(status.applications == ["/lm/w3svc/1/root/shop (\(SQLSchema.suffix(SQLSchema.applicationHash(application))))"])
            #expect("\(status)".contains("sessions: 3 (1 locked"))
            store.close()
            _ = try SQLSchemaInstaller.uninstall(database)
            #expect(try SQLSchemaInstaller.status(database).version == nil)
            // The worker notices the missing schema again (once verified, a statement fails).
            let after = Self.store(database)
            #expect(throws: SessionStoreError.self) { _ = try after.getItem(SessionKey(application: application, id: ASPNETSessionID.generate())) }
            after.close()
        }
    }

    /// Rows as ASP.NET's ASPState keeps them: the stored id is the session ID and the
    /// application's 8-hex suffix, the item the ASP.NET blob.
    @Test func rowsAreASPStates() throws {
        let (database, folder) = Self.sqlite()
        defer { try? FileManager.default.removeItem(at: folder) }
        _ = try SQLSchemaInstaller.install(database)
        let store = Self.store(database)
        defer { store.close() }
        let key = SessionKey(application: "/LM/W3SVC/1/ROOT/app", id: ASPNETSessionID.generate())
        var data = SessionStateStoreData(timeout: 20)
        data.items["n"] = .int(7)
        try store.setAndReleaseItemExclusive(key, data: data, lockID: nil, newItem: true)
        guard case .sqlite(let path, _) = database else { return }
        let connection = try SQLiteConnection(path: path, busyTimeout: .seconds(5))
        let rows = try connection.execute("SELECT SessionId, Timeout, Locked, LockCookie, Flags, SessionItemLong FROM ASPStateTempSessions")
        #expect(rows.count == 1)
        #expect(rows.first?[0].text == key.id + "ad94db9f")
        #expect(rows.first?[1].int == 20)
        #expect(rows.first?[2].int == 0)
        #expect(rows.first?[3].int == 1)
        #expect(rows.first?[4].int == 0)
        // Timeout 20, items, no static objects, 1 item "n" = Int32 7, trailer 0xFF.
        let blob = try #require(rows.first?[5].blob)
        #expect(Array(blob.prefix(6)) == [20, 0, 0, 0, 1, 0])
        #expect(blob.last == 0xFF)
        #expect(try store.containsSession(id: key.id))
        #expect(try !store.containsSession(id: ASPNETSessionID.generate()))
    }

    /// Two workers share a database: only the lease holder sweeps; expired sessions are deleted
    /// once each, and with Session_End on, the app hears of each once, with its last data.
    @Test func oneWorkerSweepsAndRaisesSessionEnd() throws {
        let server = try PostgresServer()
        defer { server.stop() }
        let (sqlite, folder) = Self.sqlite()
        defer { try? FileManager.default.removeItem(at: folder) }
        for database in [try Self.postgres(server), sqlite] {
            _ = try SQLSchemaInstaller.install(database)
            let first = Self.store(database, sessionEnd: true)
            let second = Self.store(database, sessionEnd: true)
            defer {
                first.close()
                second.close()
            }
            let ended = Locked<[String: Int]>([:])
            for store in [first, second] {
                let raises = store.setItemExpireCallback { key, data, reason in
                    #expect(reason == .expired)
                    if case .int(let value)? = data.items["n"] { ended.withLock { $0[key.application + "|" + key.id] = value } }
                }
                #expect(raises)
            }
            let application = "/LM/W3SVC/1/ROOT/Sweep"
            var keys: [SessionKey] = []
            for index in 0..<5 {
                let key = SessionKey(application: application, id: ASPNETSessionID.generate())
                var data = SessionStateStoreData(timeout: 20)
                data.items["n"] = .int(index)
                try first.setAndReleaseItemExclusive(key, data: data, lockID: nil, newItem: true)
                keys.append(key)
            }
            // Three of them expired (moved into the past by hand: the database's clock decides).
            try Self.expire(database, ids: keys.prefix(3).map { $0.id })
            // The second worker is a different owner: give it a different lease name.
            let firstSweep = try first.sweepExpiredSessions()
            #expect(firstSweep == .init(claimed: true, deleted: 3, fellBehind: false))
            let secondSweep = try SQLSessionStateStore(configuration: second.configuration, logger: Self.logger, owner: "other:1").sweepExpiredSessions()
            #expect(secondSweep.claimed == false)
            #expect(ended.withLock { $0 }.count == 3)
            for (index, key) in keys.prefix(3).enumerated() {
                #expect(ended.withLock { $0[application + "|" + key.id] } == index)
                #expect(isNotFound(try first.getItem(key)))
            }
            for key in keys.suffix(2) { #expect(!isNotFound(try second.getItem(key))) }
            // The lease holder sweeps again; nothing is ended twice.
            #expect(try first.sweepExpiredSessions().deleted == 0)
            #expect(ended.withLock { $0 }.count == 3)
        }
    }

    /// A waiter in one worker is woken by a release in another: on PostgreSQL by NOTIFY (seen
    /// by the waiting store's listener), on SQLite by the waiter's own reads.
    @Test func releasesInAnotherWorkerWakeWaiters() throws {
        let server = try PostgresServer()
        defer { server.stop() }
        let database = try Self.postgres(server)
        _ = try SQLSchemaInstaller.install(database)
        let holder = Self.store(database)
        let waiter = Self.store(database)
        defer {
            holder.close()
            waiter.close()
        }
        let key = SessionKey(application: "/LM/W3SVC/1/ROOT", id: ASPNETSessionID.generate())
        try holder.setAndReleaseItemExclusive(key, data: SessionStateStoreData(timeout: 20), lockID: nil, newItem: true)
        guard case .found(_, let lock?, _) = try holder.getItemExclusive(key) else {
            Issue.record("no lock")
            return
        }
        // The waiter finds it locked (which marks the row as waited for) and starts listening.
        guard case .locked = try waiter.getItemExclusive(key) else {
            Issue.record("not locked")
            return
        }
        waiter.waitForRelease(key, lockID: lock, deadline: .now + .milliseconds(100))
        for _ in 0..<200 where !waiter.isListeningForReleases { Thread.sleep(forTimeInterval: 0.05) }
        #expect(waiter.isListeningForReleases)
        let storedID = try waiter.storedID(key)
        // The listener is connected once it hears a notification: release and look for it.
        try holder.releaseItemExclusive(key, lockID: lock)
        var heard = false
        for _ in 0..<200 where !heard {
            heard = waiter.signal.lastRelease(of: storedID)?.cookie == lock.rawValue
            if !heard { Thread.sleep(forTimeInterval: 0.05) }
        }
        #expect(heard, "the waiting worker heard no NOTIFY for the release")
    }

    /// `sqlConnectionRetryInterval`: with it, an operation on a database that is down is
    /// retried (every second) until the interval has passed, and succeeds when the database
    /// comes back meanwhile; without it, the request fails at once (503 in the host).
    @Test func theRetryIntervalRidesOutARestart() throws {
        let server = try PostgresServer()
        defer { server.stop() }
        let database = try Self.postgres(server)
        _ = try SQLSchemaInstaller.install(database)
        let key = SessionKey(application: "/LM/W3SVC/1/ROOT", id: ASPNETSessionID.generate())
        var data = SessionStateStoreData(timeout: 20)
        data.items["n"] = .int(1)
        let patient = SQLSessionStateStore(configuration: .init(database: database, commandTimeout: .seconds(5), retryInterval: .seconds(20)), logger: Self.logger)
        let impatient = Self.store(database)
        defer {
            patient.close()
            impatient.close()
        }
        try patient.setAndReleaseItemExclusive(key, data: data, lockID: nil, newItem: true)
        _ = try impatient.getItem(key)
        server.stop(mode: "immediate", removing: false)
        let down = #expect(throws: SessionStoreError.self) { _ = try impatient.getItem(key) }
        #expect(down?.isTransient == true)
        let restart = Thread {
            Thread.sleep(forTimeInterval: 1.5)
            do { try server.start() } catch { Issue.record("PostgreSQL did not start again: \(error)") }
        }
        restart.start()
        // Started while the database is down: retried until it answers.
        guard case .found(let back, let lock?, _) = try patient.getItemExclusive(key) else {
            Issue.record("the session is not found after the restart")
            return
        }
        if case .int(let value)? = back.items["n"] { #expect(value == 1) } else { Issue.record("the item changed") }
        try patient.releaseItemExclusive(key, lockID: lock)
        // The impatient store recovers by itself too.
        guard case .found = try impatient.getItem(key) else {
            Issue.record("the other store did not recover")
            return
        }
    }

    /// A database that does not answer in time: a statement waiting on a row another client
    /// keeps locked ends at sqlCommandTimeout as `timeout` (503 in the host), and the store
    /// works again once the row is free.
    @Test func aSlowDatabaseTimesOut() throws {
        let server = try PostgresServer()
        defer { server.stop() }
        let database = try Self.postgres(server)
        _ = try SQLSchemaInstaller.install(database)
        let store = Self.store(database, timeout: .seconds(1))
        defer { store.close() }
        let key = SessionKey(application: "/LM/W3SVC/1/ROOT", id: ASPNETSessionID.generate())
        try store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(timeout: 20), lockID: nil, newItem: true)
        guard case .postgres(let target) = database else { return }
        let blocker = try PostgresConnection(target: target, statementTimeout: .seconds(30))
        try blocker.run("BEGIN; SELECT * FROM ASPStateTempSessions FOR UPDATE")
        let slow = #expect(throws: SessionStoreError.self) { _ = try store.getItemExclusive(key) }
        #expect(slow?.kind == .timeout)
        try blocker.run("COMMIT")
        guard case .found(_, let lock?, _) = try store.getItemExclusive(key) else {
            Issue.record("the session is not readable after the row was freed")
            return
        }
        try store.releaseItemExclusive(key, lockID: lock)
    }

    /// An item that is not ASP.NET's serialized form: the read fails as `corrupt` (500 in the
    /// host), the row stays as it is, and the lock the read took is given back.
    @Test func anUnreadableItemIsReportedAndItsLockGivenBack() throws {
        let (database, folder) = Self.sqlite()
        defer { try? FileManager.default.removeItem(at: folder) }
        _ = try SQLSchemaInstaller.install(database)
        let store = Self.store(database)
        defer { store.close() }
        let key = SessionKey(application: "/LM/W3SVC/1/ROOT", id: ASPNETSessionID.generate())
        try store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(timeout: 20), lockID: nil, newItem: true)
        guard case .sqlite(let path, _) = database else { return }
        let connection = try SQLiteConnection(path: path, busyTimeout: .seconds(5))
        try connection.execute("UPDATE ASPStateTempSessions SET SessionItemLong = X'0102'")
        for _ in 0..<2 {
            let unreadable = #expect(throws: SessionStoreError.self) { _ = try store.getItemExclusive(key) }
            #expect(unreadable?.kind == .corrupt)
        }
        let rows = try connection.execute("SELECT Locked, SessionItemLong FROM ASPStateTempSessions")
        #expect(rows.first?[0].int == 0)
        #expect(rows.first?[1].blob == [1, 2])
    }

    func isNotFound(_ lookup: StoreLookup) -> Bool {
        if case .notFound = lookup { return true }
        return false
    }

    static func expire(_ database: SQLSessionDatabase, ids: [String]) throws {
        switch database {
        case .postgres(let target):
            let connection = try PostgresConnection(target: target, statementTimeout: .seconds(5))
            for id in ids { try connection.query("UPDATE ASPStateTempSessions SET Expires = now() - interval '1 second' WHERE SessionId LIKE $1 || '%'", [id]) }
        case .sqlite(let path, _):
            let connection = try SQLiteConnection(path: path, busyTimeout: .seconds(5))
            for id in ids { try connection.execute("UPDATE ASPStateTempSessions SET Expires = 0 WHERE SessionId LIKE ?1 || '%'", [.text(id)]) }
        }
    }
}
