import Foundation
import Locking
import Logging
import SessionState

/// The ASPState schema in a SQLite file. Times are Unix seconds (`REAL`; a DBA reads them with
/// `datetime(Expires, 'unixepoch')`); one `BLOB` item column, as on PostgreSQL.
enum SQLiteSchema {
    static let tables = """
        PRAGMA journal_mode = WAL;
        CREATE TABLE IF NOT EXISTS ASPStateSchema (
            Component   TEXT    PRIMARY KEY,
            Version     INTEGER NOT NULL,
            InstalledAt TEXT    NOT NULL DEFAULT (datetime('now'))
        );
        CREATE TABLE IF NOT EXISTS ASPStateTempApplications (
            AppId   INTEGER PRIMARY KEY,
            AppName TEXT    NOT NULL
        );
        CREATE INDEX IF NOT EXISTS Index_AppName ON ASPStateTempApplications (AppName);
        CREATE TABLE IF NOT EXISTS ASPStateTempSessions (
            SessionId       TEXT    NOT NULL PRIMARY KEY,
            Created         REAL    NOT NULL,
            Expires         REAL    NOT NULL,
            LockDate        REAL    NOT NULL,
            LockDateLocal   TEXT    NOT NULL,
            LockCookie      INTEGER NOT NULL,
            Timeout         INTEGER NOT NULL,
            Locked          INTEGER NOT NULL,
            SessionItemLong BLOB,
            Flags           INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        -- No Index_Expires: every request moves Expires, and an index on it would be rewritten
        -- each time; the sweeper reads the table once a minute instead.
        DROP INDEX IF EXISTS Index_Expires;
        CREATE TABLE IF NOT EXISTS ASPStateSweeper (
            Name       TEXT PRIMARY KEY,
            Owner      TEXT NOT NULL,
            LeaseUntil REAL NOT NULL
        );
        """

    static let uninstall = """
        DROP TABLE IF EXISTS ASPStateTempSessions;
        DROP TABLE IF EXISTS ASPStateTempApplications;
        DROP TABLE IF EXISTS ASPStateSweeper;
        DROP TABLE IF EXISTS ASPStateSchema;
        """
}

/// The one connection a process writes a SQLite session file with. SQLite has one write lock
/// per database, so the writers of a process take turns on a mutex (instead of its busy
/// handler), and since they take turns anyway they share one connection: its page cache stays
/// valid from one write to the next (another connection's write would make every other
/// connection of the process read its pages again).
///
/// Checkpoints run beside the writers: SQLite's automatic one (every 1000 frames) runs in the
/// committing statement, so it copies pages and flushes the files while that request holds this
/// process's write turn, and every writer of the process waits for it. Here the write that finds
/// the WAL at `checkpointFrames` copies it on a connection of its own after giving the turn back
/// (that request pays for it; the others go on), and then, holding the turn, copies the few
/// frames written meanwhile, so that the next write can start the WAL from its beginning (a WAL
/// that never catches up only grows). Four times SQLite's default also copies a page changed
/// several times in between only once.
final class SQLiteWriter: Sendable {
    /// WAL frames (pages) that start a checkpoint.
    static let checkpointFrames = 4000

    private let state: Locked<State>
    private let checkpointConnection = Locked<SQLiteConnection?>(nil)
    private let checkpointing = Locked(false)
    /// Checkpoints this writer ran.
    private let checkpointCount = Locked(0)
    private let open: @Sendable () throws(SessionStoreError) -> SQLiteConnection
    private let takesOverCheckpoints: Bool
    private let logger: Logger?

    private struct State {
        var connection: SQLiteConnection?
        /// The WAL size at which the next checkpoint starts: `checkpointFrames`, or a quarter of
        /// that past the WAL's size at the last checkpoint while the WAL has not started again
        /// since (a reader still needed frames, or another process wrote in between).
        var checkpointAt = SQLiteWriter.checkpointFrames
        /// The WAL's size after this process's last commit: a smaller one means the WAL started
        /// again from its beginning.
        var lastFrames = 0
    }

    init(logger: Logger, open: @escaping @Sendable () throws(SessionStoreError) -> SQLiteConnection) {
        self.open = open
        self.logger = logger
        takesOverCheckpoints = true
        state = Locked(State())
    }

    /// Writes with `connection` (the installer's single connection; SQLite's own checkpoints).
    init(_ connection: SQLiteConnection) {
        state = Locked(State(connection: connection))
        logger = nil
        takesOverCheckpoints = false
        open = { () throws(SessionStoreError) -> SQLiteConnection in
            throw SessionStoreError(.unavailable, "the SQLite connection is closed")
        }
    }

    /// Runs a write (a statement or a short transaction) holding this process's write turn; a
    /// connection that broke is replaced first.
    @discardableResult
    func write<T>(_ body: (SQLiteConnection) throws(SessionStoreError) -> T) throws(SessionStoreError) -> T {
        var checkpointDue = false
        let result = try state.withLock { (state: inout State) throws(SessionStoreError) -> T in
            if state.connection?.isUsable != true {
                let opened = try open()
                if takesOverCheckpoints { opened.takeOverCheckpoints() }
                state.connection = opened
            }
            guard let writer = state.connection else { throw SessionStoreError(.unavailable, "no SQLite connection") }
            let result = try body(writer)
            let frames = writer.framesInWAL
            if frames < state.lastFrames { state.checkpointAt = Self.checkpointFrames }
            state.lastFrames = frames
            checkpointDue = takesOverCheckpoints && frames >= state.checkpointAt
            return result
        }
        if checkpointDue { checkpoint() }
        return result
    }

    /// Checkpoints this writer ran.
    var checkpoints: Int { checkpointCount.withLock { $0 } }

    /// Checkpoints the WAL (see the type's comment), unless another write of this process is
    /// doing so already.
    private func checkpoint() {
        guard checkpointing.withLock({ running in
            defer { running = true }
            return !running
        }) else { return }
        defer { checkpointing.withLock { $0 = false } }
        // Reads and writes pages and flushes the files: this thread blocks.
        BlockingHint.willBlock()
        checkpointCount.withLock { $0 += 1 }
        do throws(SessionStoreError) {
            try checkpointConnection.withLock { (connection: inout SQLiteConnection?) throws(SessionStoreError) in
                if connection?.isUsable != true { connection = try open() }
                try connection?.checkpoint()
            }
        } catch {
            // The catch-up below then does all of it, holding the write turn (as SQLite would).
            logger?.warning("could not checkpoint the SQLite session database's WAL beside the writers", metadata: ["error": "\(error.message)"])
        }
        do throws(SessionStoreError) {
            try state.withLock { (state: inout State) throws(SessionStoreError) in
                guard let done = try state.connection?.checkpoint() else { return }
                // Whether or not all was copied, the next checkpoint waits for a quarter more
                // frames, unless the WAL starts again (`write` sees it shrink).
                state.checkpointAt = max(Self.checkpointFrames, done.frames + Self.checkpointFrames / 4)
            }
        } catch {
            logger?.warning("could not checkpoint the SQLite session database's WAL (it grows until a checkpoint succeeds)", metadata: ["error": "\(error.message)"])
            state.withLock { $0.checkpointAt = max(Self.checkpointFrames, $0.lastFrames + Self.checkpointFrames / 4) }
        }
    }
}

/// One SQLite connection doing the ASPState operations (reads on its own connection, writes on
/// the process's writer). Each is one statement or one short `BEGIN IMMEDIATE` transaction of a
/// few statements; none is held across a request.
final class SQLiteSessionTable: SessionTableConnection {
    let connection: SQLiteConnection
    private let writer: SQLiteWriter

    init(_ connection: SQLiteConnection, writer: SQLiteWriter) {
        self.connection = connection
        self.writer = writer
    }

    @discardableResult
    private func write<T>(_ body: (SQLiteConnection) throws(SessionStoreError) -> T) throws(SessionStoreError) -> T {
        try writer.write(body)
    }

    var isUsable: Bool { connection.isUsable }
    var isAlive: Bool { connection.isUsable }

    private var now: Double { Date().timeIntervalSince1970 }

    func schemaVersion() throws(SessionStoreError) -> Int? {
        let tables = try connection.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('ASPStateSchema', 'ASPStateTempSessions')")
        guard tables.first?.first?.int == 2 else { return nil }
        return try connection.execute("SELECT Version FROM ASPStateSchema WHERE Component = 'session-state'").first?.first?.int
    }

    func applicationID(name: String, hash: Int32) throws(SessionStoreError) -> Int32 {
        let name = name.lowercased()
        return try write { connection throws(SessionStoreError) -> Int32 in try connection.writeTransaction { () throws(SessionStoreError) -> Int32 in
            if let id = try connection.execute("SELECT AppId FROM ASPStateTempApplications WHERE AppName = ?1", [.text(name)]).first?.first?.int {
                return Int32(truncatingIfNeeded: id)
            }
            try connection.execute("INSERT OR IGNORE INTO ASPStateTempApplications (AppId, AppName) VALUES (?1, ?2)", [.int(Int(hash)), .text(name)])
            let owner = try connection.execute("SELECT AppName FROM ASPStateTempApplications WHERE AppId = ?1", [.int(Int(hash))]).first?.first?.text
            guard owner == name else {
                throw SessionStoreError(.configuration, "SQL session state fatal error: hash-code collision between applications '\(name)' and '\(owner ?? "?")'. Please rename the 1st application to resolve the problem.")
            }
            return hash
        } }
    }

    func get(_ id: String, exclusive: Bool) throws(SessionStoreError) -> SessionRow? {
        exclusive ? try getExclusive(id) : try getShared(id)
    }

    private static let select = "SELECT Locked, LockDate, LockCookie, Flags, SessionItemLong, Timeout, Expires FROM ASPStateTempSessions WHERE SessionId = ?1 AND Expires >= ?2"

    /// One UPDATE … RETURNING, as on PostgreSQL: takes the lock when free, else marks the row
    /// as waited for; Flags bit 8 says which. A waiter that finds the row marked and the expiry
    /// fresh only reads.
    private func getExclusive(_ id: String) throws(SessionStoreError) -> SessionRow? {
        var seenCookie: Int?
        for _ in 0..<8 {
            let now = self.now
            let rows = try write { connection throws(SessionStoreError) -> [[SQLiteConnection.Value]] in
                try connection.execute("""
                    UPDATE ASPStateTempSessions SET
                        Expires = ?2 + Timeout * 60,
                        LockDate = CASE WHEN Locked THEN LockDate ELSE ?2 END,
                        LockDateLocal = CASE WHEN Locked THEN LockDateLocal ELSE datetime(?2, 'unixepoch', 'localtime') END,
                        LockCookie = CASE WHEN Locked THEN LockCookie ELSE LockCookie + 1 END,
                        Flags = CASE WHEN Locked THEN (Flags | 2) & ~8 ELSE (Flags & ~15) | 8 | CASE WHEN Flags & 1 <> 0 THEN 4 ELSE 0 END END,
                        Locked = 1
                    WHERE SessionId = ?1 AND Expires >= ?2
                        AND NOT (Locked AND Flags & 2 <> 0 AND Expires >= ?2 + Timeout * 60 - min(60, max(1, Timeout * 6)))
                    RETURNING LockDate, LockCookie, Flags, CASE WHEN Flags & 8 <> 0 THEN SessionItemLong END
                    """, [.text(id), .real(now)])
            }
            if let row = rows.first {
                let flags = row[2].int ?? 0
                guard flags & 8 != 0 else {
                    let age = max(0, now - (row[0].real ?? now))
                    return SessionRow(locked: true, lockAge: .milliseconds(Int(age * 1000)), lockCookie: row[1].int ?? 0, initialize: false, item: nil)
                }
                return SessionRow(locked: false, lockAge: .zero, lockCookie: row[1].int ?? 0, initialize: flags & 4 != 0, item: row[3].blob ?? [])
            }
            // Matched nothing: the session is gone, or held and already marked as waited for
            // (then nothing is written), or it was released in between.
            let state = try connection.execute(
                "SELECT LockDate, LockCookie, Locked FROM ASPStateTempSessions WHERE SessionId = ?1 AND Expires >= ?2", [.text(id), .real(now)])
            guard let row = state.first else { return nil }
            if row[2].int == 1 {
                let age = max(0, now - (row[0].real ?? now))
                return SessionRow(locked: true, lockAge: .milliseconds(Int(age * 1000)), lockCookie: row[1].int ?? 0, initialize: false, item: nil)
            }
            seenCookie = row[1].int
        }
        // Released and taken again under our feet every time: report it held, so that the
        // caller waits (briefly) and asks again. Never "not found" for a live session.
        return seenCookie.map { SessionRow(locked: true, lockAge: .zero, lockCookie: $0, initialize: false, item: nil) }
    }

    private func getShared(_ id: String) throws(SessionStoreError) -> SessionRow? {
        let now = self.now
        guard let row = try connection.execute(Self.select, [.text(id), .real(now)]).first else { return nil }
        let locked = row[0].int == 1, flags = row[3].int ?? 0, timeout = row[5].int ?? 20
        if locked {
            let age = max(0, now - (row[1].real ?? now))
            return SessionRow(locked: true, lockAge: .milliseconds(Int(age * 1000)), lockCookie: row[2].int ?? 0, initialize: false, item: nil)
        }
        var initialize = false
        if flags & 1 != 0 {
            // Only the read that clears the flag reports the session as new.
            initialize = try write { connection throws(SessionStoreError) -> Bool in
                try connection.execute("UPDATE ASPStateTempSessions SET Flags = Flags & ~1, Expires = ?2 + Timeout * 60 WHERE SessionId = ?1 AND Flags & 1 <> 0", [.text(id), .real(now)])
                return connection.changes == 1
            }
        } else if (row[6].real ?? 0) < now + Double(timeout * 60) - Double(SQLSchema.refreshThrottle(timeoutMinutes: timeout).components.seconds) {
            try write { connection throws(SessionStoreError) in
                try connection.execute("UPDATE ASPStateTempSessions SET Expires = ?2 + Timeout * 60 WHERE SessionId = ?1", [.text(id), .real(now)])
            }
        }
        return SessionRow(locked: false, lockAge: .zero, lockCookie: row[2].int ?? 0, initialize: initialize, item: row[4].blob ?? [])
    }

    func release(_ id: String, cookie: Int) throws(SessionStoreError) {
        try write { connection throws(SessionStoreError) in
            try connection.execute(
                "UPDATE ASPStateTempSessions SET Locked = 0, Expires = ?3 + Timeout * 60 WHERE SessionId = ?1 AND LockCookie = ?2 AND Locked = 1",
                [.text(id), .int(cookie), .real(now)])
        }
    }

    func insert(_ id: String, item: [UInt8], timeout: Int, uninitialized: Bool) throws(SessionStoreError) -> Bool {
        try write { connection throws(SessionStoreError) -> Bool in
        try connection.execute("""
            INSERT INTO ASPStateTempSessions (SessionId, Created, Expires, LockDate, LockDateLocal, LockCookie, Timeout, Locked, SessionItemLong, Flags)
            VALUES (?1, ?2, ?2 + ?4 * 60, ?2, datetime(?2, 'unixepoch', 'localtime'), 1, ?4, 0, ?3, ?5)
            ON CONFLICT (SessionId) DO UPDATE SET Created = excluded.Created, Expires = excluded.Expires, LockDate = excluded.LockDate,
                LockDateLocal = excluded.LockDateLocal, LockCookie = LockCookie + 1, Timeout = excluded.Timeout, Locked = 0,
                SessionItemLong = excluded.SessionItemLong, Flags = excluded.Flags
            WHERE Expires < ?2
            """, [.text(id), .real(now), .blob(item), .int(timeout), .int(uninitialized ? 1 : 0)])
        return connection.changes == 1
        }
    }

    func update(_ id: String, item: [UInt8], timeout: Int, cookie: Int) throws(SessionStoreError) -> UpdateOutcome {
        try write { connection throws(SessionStoreError) -> UpdateOutcome in
            try connection.execute("""
                UPDATE ASPStateTempSessions SET SessionItemLong = ?2, Timeout = ?3, Expires = ?5 + ?3 * 60, Locked = 0
                WHERE SessionId = ?1 AND LockCookie = ?4 AND Locked = 1
                """, [.text(id), .blob(item), .int(timeout), .int(cookie), .real(now)])
            // Locks are committed like saves: a lock SQLite granted is never forgotten, only taken.
            return connection.changes == 1 ? .saved : .lockTaken
        }
    }

    func remove(_ id: String, cookie: Int?) throws(SessionStoreError) -> RemoveOutcome {
        try write { connection throws(SessionStoreError) -> RemoveOutcome in try connection.writeTransaction { () throws(SessionStoreError) -> RemoveOutcome in
            guard let row = try connection.execute("SELECT Locked, LockCookie FROM ASPStateTempSessions WHERE SessionId = ?1 AND Expires >= ?2", [.text(id), .real(now)]).first else {
                return .notFound
            }
            let locked = row[0].int == 1
            if let cookie, !locked || row[1].int != cookie { return .heldByAnother }
            if cookie == nil, locked { return .heldByAnother }
            try connection.execute("DELETE FROM ASPStateTempSessions WHERE SessionId = ?1", [.text(id)])
            return .removed
        } }
    }

    func resetTimeout(_ id: String) throws(SessionStoreError) {
        try write { connection throws(SessionStoreError) in
        try connection.execute("""
            UPDATE ASPStateTempSessions SET Expires = ?2 + Timeout * 60
            WHERE SessionId = ?1 AND Expires >= ?2 AND Expires < ?2 + Timeout * 60 - min(60, max(1, Timeout * 6))
            """, [.text(id), .real(now)])
        }
    }

    func contains(sessionID: String) throws(SessionStoreError) -> Bool {
        let rows = try connection.execute(
            "SELECT EXISTS (SELECT 1 FROM ASPStateTempSessions WHERE SessionId >= ?1 AND SessionId < ?1 || '~' AND length(SessionId) = length(?1) + 8 AND Expires >= ?2)",
            [.text(sessionID), .real(now)])
        return rows.first?.first?.int == 1
    }

    func lockState(_ id: String) throws(SessionStoreError) -> (locked: Bool, cookie: Int)? {
        guard let row = try connection.execute("SELECT Locked, LockCookie FROM ASPStateTempSessions WHERE SessionId = ?1 AND Expires >= ?2", [.text(id), .real(now)]).first else {
            return nil
        }
        return (row[0].int == 1, row[1].int ?? 0)
    }

    func claimSweep(owner: String, lease: Duration) throws(SessionStoreError) -> Bool {
        try write { connection throws(SessionStoreError) -> Bool in
        try connection.execute("""
            INSERT INTO ASPStateSweeper (Name, Owner, LeaseUntil) VALUES ('expiry', ?1, ?2 + ?3)
            ON CONFLICT (Name) DO UPDATE SET Owner = excluded.Owner, LeaseUntil = excluded.LeaseUntil
            WHERE LeaseUntil < ?2 OR Owner = excluded.Owner
            """, [.text(owner), .real(now), .real(Double(lease.components.seconds))])
        return connection.changes == 1
        }
    }

    func deleteExpired(limit: Int, withItems: Bool) throws(SessionStoreError) -> [ExpiredSession] {
        let rows = try write { connection throws(SessionStoreError) -> [[SQLiteConnection.Value]] in try connection.execute("""
            DELETE FROM ASPStateTempSessions WHERE SessionId IN (
                SELECT SessionId FROM ASPStateTempSessions WHERE Expires < ?1 ORDER BY Expires LIMIT ?2)
            RETURNING SessionId, CASE WHEN ?3 THEN SessionItemLong END
            """, [.real(now), .int(limit), .int(withItems ? 1 : 0)]) }
        guard !rows.isEmpty else { return [] }
        var names: [Int: String] = [:]
        for row in try connection.execute("SELECT AppId, AppName FROM ASPStateTempApplications") {
            if let id = row[0].int, let name = row[1].text { names[id] = name }
        }
        return rows.compactMap { row in
            guard let id = row[0].text else { return nil }
            let appID = UInt32(id.suffix(8), radix: 16).map { Int(Int32(bitPattern: $0)) }
            return ExpiredSession(storedID: id, applicationName: appID.flatMap { names[$0] }, item: row[1].blob)
        }
    }
}
