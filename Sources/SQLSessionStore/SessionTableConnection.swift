import SessionState

/// A session row as a read returns it (ASP.NET's `TempGetStateItem3` and
/// `TempGetStateItemExclusive3` outputs).
struct SessionRow {
    /// Another request held the lock (no item then).
    var locked: Bool
    /// How long the lock has been held, measured by the database's clock.
    var lockAge: Duration
    /// The lock cookie: the holder's, or the one this read took.
    var lockCookie: Int
    /// The item was created uninitialized and this read is its first (`actionFlags` 1).
    var initialize: Bool
    /// The ASP.NET blob (nil when locked).
    var item: [UInt8]?
}

/// What saving a session did.
enum UpdateOutcome {
    case saved
    /// Another request holds the lock now (ours was broken), or the session is gone.
    case lockTaken
    /// The lock is older than ours: the database forgot our acquire (a failover to an
    /// asynchronous standby, a restore). Nothing was saved; nobody else holds the session.
    case lockVanished
}

/// What removing a session did.
enum RemoveOutcome {
    case removed
    case notFound
    /// The session is locked by another holder: nothing was removed.
    case heldByAnother
}

/// An expired session deleted by the sweeper.
struct ExpiredSession {
    /// The stored id (session ID and application suffix).
    var storedID: String
    /// `ASPStateTempApplications.AppName` of the suffix (lower-cased), if known.
    var applicationName: String?
    /// The blob, when asked for.
    var item: [UInt8]?
}

/// What `session-host sql status` shows.
public struct SQLSchemaStatus: Sendable, CustomStringConvertible {
    /// The database, without secrets.
    public var database: String
    /// The installed schema version; nil when none is installed.
    public var version: Int?
    public var sessions: Int
    public var expiredSessions: Int
    public var lockedSessions: Int
    public var applications: [String]
    /// The worker that sweeps expired sessions now, and until when.
    public var sweeper: String?

    public var description: String {
        guard let version else {
            return "\(database): the SessionHost session-state schema is not installed (session-host sql install)"
        }
        var lines = ["\(database): session-state schema version \(version) (this release: \(SQLSchema.version))"]
        lines.append("sessions: \(sessions) (\(lockedSessions) locked, \(expiredSessions) expired awaiting the sweeper)")
        lines.append("applications: \(applications.isEmpty ? "none yet" : applications.joined(separator: ", "))")
        if let sweeper { lines.append("sweeper: \(sweeper)") }
        return lines.joined(separator: "\n")
    }
}

/// The operations of ASP.NET's ASPState procedures on one connection, each one atomic
/// statement (or, on SQLite, one short write transaction that no request holds open).
protocol SessionTableConnection: PooledConnection {
    /// The installed schema version; nil when none is installed.
    func schemaVersion() throws(SessionStoreError) -> Int?
    /// `TempGetAppID`: the application's id, registering it under `hash` on first use; a hash
    /// taken by another application is ASP.NET's fatal collision error.
    func applicationID(name: String, hash: Int32) throws(SessionStoreError) -> Int32
    /// `TempGetStateItem3` / `TempGetStateItemExclusive3`; nil when there is no live session.
    func get(_ id: String, exclusive: Bool) throws(SessionStoreError) -> SessionRow?
    /// `TempReleaseStateItemExclusive`: only the holder's cookie unlocks.
    func release(_ id: String, cookie: Int) throws(SessionStoreError)
    /// `TempInsertStateItemLong` / `TempInsertUninitializedItem`: false when a live session
    /// with this id exists (a racing insert; not an error).
    func insert(_ id: String, item: [UInt8], timeout: Int, uninitialized: Bool) throws(SessionStoreError) -> Bool
    /// `TempUpdateStateItemLong`: saves and unlocks, only while `cookie` holds the lock.
    func update(_ id: String, item: [UInt8], timeout: Int, cookie: Int) throws(SessionStoreError) -> UpdateOutcome
    /// `TempRemoveStateItem`: with a cookie only its holder removes; without one only an
    /// unlocked session goes.
    func remove(_ id: String, cookie: Int?) throws(SessionStoreError) -> RemoveOutcome
    /// `TempResetTimeout` (throttled: a refresh is written only once a tenth of the timeout,
    /// at most a minute, has passed since the last one).
    func resetTimeout(_ id: String) throws(SessionStoreError)
    /// Whether any application has a live session with this ID.
    func contains(sessionID: String) throws(SessionStoreError) -> Bool
    /// The lock cookie and whether it is held (nil: no live session); a read that writes nothing.
    func lockState(_ id: String) throws(SessionStoreError) -> (locked: Bool, cookie: Int)?
    /// Takes or renews the sweeper's lease for `owner`; false when another worker holds it.
    func claimSweep(owner: String, lease: Duration) throws(SessionStoreError) -> Bool
    /// `DeleteExpiredSessions`, one batch: deletes up to `limit` expired sessions and returns
    /// them (with their items when `withItems`), each exactly once across the farm.
    func deleteExpired(limit: Int, withItems: Bool) throws(SessionStoreError) -> [ExpiredSession]
}

/// The schema this release installs and understands.
enum SQLSchema {
    /// Version 1: ASPStateTempSessions, ASPStateTempApplications, ASPStateSchema, the sweeper
    /// lease, and (PostgreSQL) the Temp* functions.
    static let version = 1

    /// ASP.NET's `GetHashCode` procedure (djb2 with xor: `hash = (hash * 33) ^ c` from 5381,
    /// 32-bit wrap-around) over the lower-cased application id; its 8 lower-case hex digits
    /// (`appId.ToString("x8")`) end every stored session id of the application.
    static func applicationHash(_ applicationName: String) -> Int32 {
        var hash: UInt32 = 5381
        for byte in applicationName.lowercased().utf8 {
            hash = (hash &* 33) ^ UInt32(byte)
        }
        return Int32(bitPattern: hash)
    }

    static func suffix(_ appID: Int32) -> String {
        let hex = String(UInt32(bitPattern: appID), radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// The message when the schema is missing (ASP.NET's "Unable to use SQL Server because
    /// either ASP.NET version 2.0 Session State is not installed …", adapted).
    static func notInstalled(_ database: String, connectionStringHint: String) -> String {
        "Unable to use the session database \(database) because the SessionHost session-state schema is not installed on it. Run: session-host sql install --connection-string \(connectionStringHint)"
    }

    /// The refresh throttle of read-only hits: a tenth of the timeout, at most a minute.
    static func refreshThrottle(timeoutMinutes: Int) -> Duration {
        .seconds(min(60, max(1, timeoutMinutes * 6)))
    }
}
