import Foundation
import SessionState

/// The ASPState schema on PostgreSQL, and the statements of the store operations.
///
/// Names follow ASP.NET's `InstallSqlState.sql` (unquoted, so PostgreSQL folds them to lower
/// case and a DBA may type them either way). Each operation a request makes is one prepared
/// statement, named after the procedure it stands for (`PostgresStatements`): one round trip,
/// atomic, and cheaper than a function call (plpgsql costs about a tenth more here); the rare
/// operations (`TempGetAppID`, `TempRemoveStateItem`, `DeleteExpiredSessions`) are functions.
/// Every operation commits synchronously (the requests' ones in batches of several requests'
/// statements: `PostgresPipeline`). Differences from ASPState: no index on `Expires` (see
/// below), one `bytea` item column (`SessionItemLong`, as Microsoft's async provider),
/// `timestamptz` times, `Flags` bit 2 (a request waits for the lock; cleared by the next
/// acquire) that makes a release `NOTIFY` only when someone waits, bit 4 (the last acquire
/// found the item uninitialized), bit 8 (the last acquire took the lock rather than finding it
/// held), a sweeper lease, and a `bigint` lock cookie that each acquire sets to at least the
/// database clock in microseconds, so that a lock a failover to an asynchronous standby (or a
/// restored backup) forgot is never handed out again with the same cookie.
enum PostgresSchema {
    /// The release notifications' channel; the payload is the stored session id and the lock
    /// cookie released, separated by a space.
    static let channel = "aspstate_release"

    static let tables = """
        CREATE TABLE IF NOT EXISTS ASPStateSchema (
            Component   text        PRIMARY KEY,
            Version     integer     NOT NULL,
            InstalledAt timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS ASPStateTempApplications (
            AppId   integer      PRIMARY KEY,
            AppName varchar(280) NOT NULL
        );
        CREATE INDEX IF NOT EXISTS Index_AppName ON ASPStateTempApplications (AppName);
        CREATE TABLE IF NOT EXISTS ASPStateTempSessions (
            SessionId       varchar(88) COLLATE "C" PRIMARY KEY,
            Created         timestamptz NOT NULL DEFAULT now(),
            Expires         timestamptz NOT NULL,
            LockDate        timestamptz NOT NULL,
            LockDateLocal   timestamp   NOT NULL,
            LockCookie      bigint      NOT NULL,
            Timeout         integer     NOT NULL,
            Locked          boolean     NOT NULL,
            SessionItemLong bytea,
            Flags           integer     NOT NULL DEFAULT 0
        ) WITH (fillfactor = 70);
        -- No Index_Expires: with the primary key as the only index, and room left in each page,
        -- every session update is a HOT update (no index entry written, less WAL, no index
        -- bloat). The sweeper reads the table once a minute instead.
        DROP INDEX IF EXISTS Index_Expires;
        CREATE TABLE IF NOT EXISTS ASPStateSweeper (
            Name       text        PRIMARY KEY,
            Owner      text        NOT NULL,
            LeaseUntil timestamptz NOT NULL
        );
        """

    /// The functions of the rare operations.
    static let functions = """
        CREATE OR REPLACE FUNCTION TempGetVersion() RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT \(SQLSchema.version) $$;

        CREATE OR REPLACE FUNCTION TempGetAppID(p_name varchar, p_hash integer) RETURNS integer LANGUAGE plpgsql AS $$
        DECLARE v_name varchar := lower(p_name); v_id integer; v_other varchar;
        BEGIN
            SELECT a.AppId INTO v_id FROM ASPStateTempApplications a WHERE a.AppName = v_name;
            IF FOUND THEN RETURN v_id; END IF;
            INSERT INTO ASPStateTempApplications (AppId, AppName) VALUES (p_hash, v_name) ON CONFLICT (AppId) DO NOTHING;
            SELECT a.AppName INTO v_other FROM ASPStateTempApplications a WHERE a.AppId = p_hash;
            IF v_other <> v_name THEN
                RAISE EXCEPTION 'SQL session state fatal error: hash-code collision between applications ''%'' and ''%''. Please rename the 1st application to resolve the problem.', v_name, v_other;
            END IF;
            RETURN p_hash;
        END $$;

        CREATE OR REPLACE FUNCTION TempRemoveStateItem(p_id varchar, p_cookie bigint) RETURNS integer LANGUAGE plpgsql AS $$
        DECLARE v_locked boolean; v_cookie bigint; v_flags integer;
        BEGIN
            SELECT s.Locked, s.LockCookie, s.Flags INTO v_locked, v_cookie, v_flags FROM ASPStateTempSessions s
            WHERE s.SessionId = p_id AND s.Expires >= now() FOR UPDATE;
            IF NOT FOUND THEN RETURN 0; END IF;
            IF (p_cookie IS NULL AND v_locked) OR (p_cookie IS NOT NULL AND (NOT v_locked OR v_cookie <> p_cookie)) THEN RETURN -1; END IF;
            DELETE FROM ASPStateTempSessions s WHERE s.SessionId = p_id;
            IF v_flags & 2 <> 0 THEN PERFORM pg_notify('\(channel)', p_id || ' ' || v_cookie); END IF;
            RETURN 1;
        END $$;

        CREATE OR REPLACE FUNCTION DeleteExpiredSessions(p_limit integer, p_with_items boolean)
        RETURNS TABLE (StoredId varchar, ApplicationName varchar, Item bytea) LANGUAGE sql AS $$
            WITH gone AS (
                DELETE FROM ASPStateTempSessions s WHERE s.SessionId IN (
                    SELECT e.SessionId FROM ASPStateTempSessions e WHERE e.Expires < now() ORDER BY e.Expires LIMIT p_limit FOR UPDATE SKIP LOCKED
                ) AND s.Expires < now()
                RETURNING s.SessionId, CASE WHEN p_with_items THEN s.SessionItemLong END AS Blob
            )
            SELECT gone.SessionId, a.AppName, gone.Blob FROM gone
            LEFT JOIN ASPStateTempApplications a ON length(gone.SessionId) > 8 AND a.AppId = ('x' || right(gone.SessionId, 8))::bit(32)::integer
        $$;
        """

    /// Dropped before the functions are created again (a release may change a signature).
    static let dropFunctions = """
        DROP FUNCTION IF EXISTS TempGetVersion(), TempGetAppID(varchar, integer), TempGetStateItemExclusive3(varchar), TempGetStateItem3(varchar),
            TempReleaseStateItemExclusive(varchar, bigint), TempInsertUninitializedItem(varchar, bytea, integer),
            TempInsertStateItemLong(varchar, bytea, integer, integer), TempUpdateStateItemLong(varchar, bytea, integer, bigint),
            TempRemoveStateItem(varchar, bigint), TempResetTimeout(varchar), DeleteExpiredSessions(integer, boolean);
        """

    static let uninstall = """
        \(dropFunctions)
        DROP TABLE IF EXISTS ASPStateTempSessions, ASPStateTempApplications, ASPStateSweeper, ASPStateSchema;
        """
}

/// The statements of the store operations a request makes, each prepared once per connection.
enum PostgresStatements {
    /// `TempGetStateItemExclusive3`: one UPDATE takes the lock when it is free, else marks the
    /// row as waited for; `Flags` bit 8 says which. A waiter that finds the row marked and the
    /// expiry fresh matches nothing: `lockHolder` then reads the holder without writing.
    static let getExclusive = """
        UPDATE ASPStateTempSessions s SET
            Expires = now() + make_interval(mins => s.Timeout),
            LockDate = CASE WHEN s.Locked THEN s.LockDate ELSE now() END,
            LockDateLocal = CASE WHEN s.Locked THEN s.LockDateLocal ELSE localtimestamp END,
            LockCookie = CASE WHEN s.Locked THEN s.LockCookie
                ELSE greatest(s.LockCookie + 1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) END,
            Flags = CASE WHEN s.Locked THEN (s.Flags | 2) & ~8 ELSE (s.Flags & ~15) | 8 | CASE WHEN s.Flags & 1 <> 0 THEN 4 ELSE 0 END END,
            Locked = true
        WHERE s.SessionId = $1 AND s.Expires >= now()
            AND NOT (s.Locked AND s.Flags & 2 <> 0
                AND s.Expires >= now() + make_interval(mins => s.Timeout) - make_interval(secs => least(60, greatest(1, s.Timeout * 6))))
        RETURNING s.Flags & 8 = 0,
            CASE WHEN s.Flags & 8 = 0 THEN (extract(epoch FROM now() - s.LockDate) * 1000)::bigint ELSE 0::bigint END,
            s.LockCookie,
            CASE WHEN s.Flags & 12 = 12 THEN 1 ELSE 0 END,
            CASE WHEN s.Flags & 8 <> 0 THEN s.SessionItemLong END
        """

    /// The lock of a live session, read without writing (after `getExclusive` matched nothing).
    static let lockHolder = """
        SELECT c.Locked, (extract(epoch FROM now() - c.LockDate) * 1000)::bigint, c.LockCookie, 0, NULL::bytea
        FROM ASPStateTempSessions c WHERE c.SessionId = $1 AND c.Expires >= now()
        """

    /// `TempGetStateItem3`: reads without locking; slides the expiry only when the throttle
    /// allows or the item is uninitialized (whose first reader alone reports it new).
    static let get = """
        WITH cur AS (
            SELECT c.SessionId, c.Locked, c.LockDate, c.LockCookie, c.Flags, c.SessionItemLong FROM ASPStateTempSessions c
            WHERE c.SessionId = $1 AND c.Expires >= now()
        ), touched AS (
            UPDATE ASPStateTempSessions s SET Expires = now() + make_interval(mins => s.Timeout), Flags = s.Flags & ~1
            FROM cur WHERE s.SessionId = cur.SessionId AND (s.Flags & 1 <> 0
                OR s.Expires < now() + make_interval(mins => s.Timeout) - make_interval(secs => least(60, greatest(1, s.Timeout * 6))))
            RETURNING cur.Flags & 1 <> 0 AS Initialized
        )
        SELECT cur.Locked,
            CASE WHEN cur.Locked THEN (extract(epoch FROM now() - cur.LockDate) * 1000)::bigint ELSE 0::bigint END,
            cur.LockCookie,
            CASE WHEN NOT cur.Locked AND coalesce((SELECT t.Initialized FROM touched t), false) THEN 1 ELSE 0 END,
            CASE WHEN cur.Locked THEN NULL ELSE cur.SessionItemLong END
        FROM cur
        """

    /// `TempReleaseStateItemExclusive`: only the holder's cookie unlocks; waiters are notified.
    static let release = """
        WITH u AS (
            UPDATE ASPStateTempSessions s SET Locked = false, Expires = now() + make_interval(mins => s.Timeout)
            WHERE s.SessionId = $1 AND s.LockCookie = $2 AND s.Locked
            RETURNING s.Flags
        )
        SELECT CASE WHEN u.Flags & 2 <> 0 THEN pg_notify('\(PostgresSchema.channel)', $1 || ' ' || $2)::text END FROM u
        """

    /// `TempUpdateStateItemLong`: saves and unlocks, only while the cookie holds the lock; a row
    /// answers that it did.
    static let update = """
        WITH u AS (
            UPDATE ASPStateTempSessions s SET SessionItemLong = $2, Timeout = $3, Expires = now() + make_interval(mins => $3), Locked = false
            WHERE s.SessionId = $1 AND s.LockCookie = $4 AND s.Locked
            RETURNING s.Flags
        )
        SELECT CASE WHEN u.Flags & 2 <> 0 THEN pg_notify('\(PostgresSchema.channel)', $1 || ' ' || $4)::text END FROM u
        """

    /// After a save that matched nothing: the session's cookie now (older than the caller's:
    /// the database forgot the caller's lock).
    static let currentCookie = "SELECT LockCookie FROM ASPStateTempSessions WHERE SessionId = $1"

    /// `TempInsertStateItemLong` and `TempInsertUninitializedItem` (`$4` = 1): a live session
    /// with this id is left alone (a racing insert), an expired one is replaced.
    static let insert = """
        INSERT INTO ASPStateTempSessions AS s (SessionId, Created, Expires, LockDate, LockDateLocal, LockCookie, Timeout, Locked, SessionItemLong, Flags)
        VALUES ($1, now(), now() + make_interval(mins => $3), now(), localtimestamp, 1, $3, false, $2, $4)
        ON CONFLICT (SessionId) DO UPDATE SET Created = EXCLUDED.Created, Expires = EXCLUDED.Expires, LockDate = EXCLUDED.LockDate,
            LockDateLocal = EXCLUDED.LockDateLocal, LockCookie = greatest(s.LockCookie + 1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint),
            Timeout = EXCLUDED.Timeout, Locked = false, SessionItemLong = EXCLUDED.SessionItemLong, Flags = EXCLUDED.Flags
        WHERE s.Expires < now()
        RETURNING true
        """

    /// `TempResetTimeout`, throttled as reads are.
    static let resetTimeout = """
        UPDATE ASPStateTempSessions s SET Expires = now() + make_interval(mins => s.Timeout)
        WHERE s.SessionId = $1 AND s.Expires >= now()
            AND s.Expires < now() + make_interval(mins => s.Timeout) - make_interval(secs => least(60, greatest(1, s.Timeout * 6)))
        """
}

/// The ASPState operations on PostgreSQL. The operations of requests (reads, lock, save,
/// release, refresh) go through the database's pipeline (`PostgresPipeline`: batched with other
/// requests' into one transaction); the rare ones run on a connection of their own. Holds no
/// connection itself, so one serves every request.
final class PostgresSessionTable: SessionTableConnection, Sendable {
    let pipeline: PostgresPipeline

    init(_ pipeline: PostgresPipeline) {
        self.pipeline = pipeline
    }

    var isUsable: Bool { true }
    var isAlive: Bool { true }

    /// One statement of a request, on the session row `id`.
    private func run(_ name: String, _ sql: String, _ parameters: [PostgresValue], id: String) throws(SessionStoreError) -> [[PostgresField]] {
        try pipeline.execute(PostgresStatement(name: name, sql: sql, parameters: parameters), key: id)
    }

    func schemaVersion() throws(SessionStoreError) -> Int? {
        try pipeline.withConnection { connection throws(SessionStoreError) in try Self.schemaVersion(on: connection) }
    }

    /// The installed schema version on `connection`; nil when none is installed.
    static func schemaVersion(on connection: PostgresConnection) throws(SessionStoreError) -> Int? {
        // Checked first: a statement naming a missing table fails as a whole.
        let present = try connection.query("SELECT to_regclass('aspstateschema') IS NOT NULL AND to_regclass('aspstatetempsessions') IS NOT NULL")
        guard present.first?.first == "t" else { return nil }
        return try connection.query("SELECT Version FROM ASPStateSchema WHERE Component = 'session-state'").first?.first?.flatMap { Int($0) }
    }

    func applicationID(name: String, hash: Int32) throws(SessionStoreError) -> Int32 {
        let rows = try pipeline.withConnection { connection throws(SessionStoreError) in
            try connection.execute("appid", "SELECT TempGetAppID($1, $2)", [.text(name), .int(Int(hash))])
        }
        guard let id = rows.first?.first?.int else { throw SessionStoreError(.refused, "TempGetAppID returned nothing") }
        return Int32(truncatingIfNeeded: id)
    }

    func get(_ id: String, exclusive: Bool) throws(SessionStoreError) -> SessionRow? {
        guard exclusive else { return Self.row(try run("get", PostgresStatements.get, [.text(id)], id: id)) }
        var seen: SessionRow?
        for _ in 0..<8 {
            if let row = Self.row(try run("getx", PostgresStatements.getExclusive, [.text(id)], id: id)) { return row }
            // Matched nothing: the session is gone, or held by another request and already
            // marked as waited for (then nothing is written), or it was released in between.
            guard let state = Self.row(try run("holder", PostgresStatements.lockHolder, [.text(id)], id: id)) else { return nil }
            if state.locked { return state }
            seen = state
        }
        // Released and taken again under our feet every time: report it held, so that the
        // caller waits (briefly) and asks again. Never "not found" for a live session.
        return seen.map { SessionRow(locked: true, lockAge: .zero, lockCookie: $0.lockCookie, initialize: false, item: nil) }
    }

    private static func row(_ rows: [[PostgresField]]) -> SessionRow? {
        guard let row = rows.first, row.count == 5, let locked = row[0].bool, let age = row[1].int, let cookie = row[2].int else { return nil }
        return SessionRow(locked: locked, lockAge: .milliseconds(max(0, age)), lockCookie: cookie, initialize: row[3].int == 1, item: row[4].bytes)
    }

    func release(_ id: String, cookie: Int) throws(SessionStoreError) {
        _ = try run("release", PostgresStatements.release, [.text(id), .int(cookie)], id: id)
    }

    func insert(_ id: String, item: [UInt8], timeout: Int, uninitialized: Bool) throws(SessionStoreError) -> Bool {
        let rows = try run("insert", PostgresStatements.insert, [.text(id), .bytes(item), .int(timeout), .int(uninitialized ? 1 : 0)], id: id)
        return rows.first?.first?.bool == true
    }

    func update(_ id: String, item: [UInt8], timeout: Int, cookie: Int) throws(SessionStoreError) -> UpdateOutcome {
        let saved = try run("update", PostgresStatements.update, [.text(id), .bytes(item), .int(timeout), .int(cookie)], id: id)
        if !saved.isEmpty { return .saved }
        let current = try run("cookie", PostgresStatements.currentCookie, [.text(id)], id: id).first?.first?.int
        return current.map { $0 < cookie } == true ? .lockVanished : .lockTaken
    }

    func remove(_ id: String, cookie: Int?) throws(SessionStoreError) -> RemoveOutcome {
        let rows = try pipeline.withConnection { connection throws(SessionStoreError) in
            try connection.execute("remove", "SELECT TempRemoveStateItem($1, $2)", [.text(id), cookie.map { .int($0) } ?? .null])
        }
        switch rows.first?.first?.int {
        case 1: return .removed
        case -1: return .heldByAnother
        default: return .notFound
        }
    }

    func resetTimeout(_ id: String) throws(SessionStoreError) {
        _ = try run("reset", PostgresStatements.resetTimeout, [.text(id)], id: id)
    }

    func contains(sessionID: String) throws(SessionStoreError) -> Bool {
        let rows = try run(
            "contains",
            "SELECT EXISTS (SELECT 1 FROM ASPStateTempSessions WHERE SessionId >= $1 AND SessionId < $1 || '~' AND length(SessionId) = length($1) + 8 AND Expires >= now())",
            [.text(sessionID)], id: sessionID)
        return rows.first?.first?.bool == true
    }

    func lockState(_ id: String) throws(SessionStoreError) -> (locked: Bool, cookie: Int)? {
        let rows = try run("lockstate", "SELECT Locked, LockCookie FROM ASPStateTempSessions WHERE SessionId = $1 AND Expires >= now()", [.text(id)], id: id)
        guard let row = rows.first, let locked = row[0].bool, let cookie = row[1].int else { return nil }
        return (locked, cookie)
    }

    func claimSweep(owner: String, lease: Duration) throws(SessionStoreError) -> Bool {
        let rows = try pipeline.withConnection { connection throws(SessionStoreError) in
            try connection.execute("sweeper", """
                INSERT INTO ASPStateSweeper AS w (Name, Owner, LeaseUntil) VALUES ('expiry', $1, now() + make_interval(secs => $2::integer))
                ON CONFLICT (Name) DO UPDATE SET Owner = EXCLUDED.Owner, LeaseUntil = EXCLUDED.LeaseUntil
                WHERE w.LeaseUntil < now() OR w.Owner = EXCLUDED.Owner
                RETURNING true
                """, [.text(owner), .int(Int(lease.components.seconds))])
        }
        return rows.first?.first?.bool == true
    }

    func deleteExpired(limit: Int, withItems: Bool) throws(SessionStoreError) -> [ExpiredSession] {
        let rows = try pipeline.withConnection { connection throws(SessionStoreError) in
            try connection.execute("sweep", "SELECT * FROM DeleteExpiredSessions($1, $2)", [.int(limit), .text(withItems ? "true" : "false")])
        }
        return rows.compactMap { row in
            guard let id = row[0].text else { return nil }
            return ExpiredSession(storedID: id, applicationName: row[1].text, item: row[2].bytes)
        }
    }
}
