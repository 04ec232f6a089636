import Foundation
import Locking
public import Logging
public import SessionState
import SessionStateSerialization

/// `mode="SQLServer"`: sessions in a PostgreSQL database or a SQLite file, in ASP.NET's ASPState
/// layout (`ASPStateTempSessions`, `ASPStateTempApplications`), items in ASP.NET's serialized
/// form. Blocking calls on the worker thread, through a pool of connections per database.
///
/// Beyond ASP.NET: a save whose lock was broken and taken by another request is refused
/// (`lockLost`) instead of silently doing nothing; lock waiters are woken at the release
/// (PostgreSQL `NOTIFY`, or this process's own releases) with 500 ms polling kept as the
/// fallback; read-only hits refresh the expiry at most once per tenth of the timeout; expired
/// sessions are deleted by one worker of the farm at a time, which can raise Session_End.
public final class SQLSessionStateStore: ClosableSessionStateStore, MaintainedSessionStateStore {
    /// `mode="SQLServer"` for `SessionOptions.stores` (no Session_End, as ASP.NET).
    public static let factory = factory(raisesSessionEnd: false)

    /// `raisesSessionEnd`: the worker that deletes expired sessions raises the app's ASP.NET
    /// Session_End for each with its last data (at most once per session across the farm).
    public static func factory(raisesSessionEnd: Bool) -> SessionStoreFactory {
        SessionStoreFactory(
            mode: .sqlServer,
            validate: { settings in
                do throws(SessionStoreSettingsError) {
                    _ = try SQLSessionDatabase.parse(settings.connectionString, allowCustomDatabase: settings.allowCustomDatabase)
                } catch {
                    return [error]
                }
                return []
            },
            make: { settings, logger throws(SessionStoreError) in
                let database: SQLSessionDatabase
                do throws(SessionStoreSettingsError) {
                    database = try SQLSessionDatabase.parse(settings.connectionString, allowCustomDatabase: settings.allowCustomDatabase)
                } catch {
                    throw SessionStoreError(.configuration, error.message)
                }
                return SQLSessionStateStore(
                    configuration: Configuration(
                        database: database, commandTimeout: settings.timeout, retryInterval: settings.retryInterval,
                        compressionEnabled: settings.compressionEnabled, raisesSessionEnd: raisesSessionEnd),
                    logger: logger)
            })
    }

    public struct Configuration: Sendable {
        public var database: SQLSessionDatabase
        /// `sqlCommandTimeout`: bounds every statement (and waiting for a pooled connection).
        public var commandTimeout: Duration
        /// `sqlConnectionRetryInterval`: how long an operation is retried when the database is
        /// down or does not answer (zero: not retried).
        public var retryInterval: Duration
        /// `compressionEnabled`: items are raw-Deflate compressed.
        public var compressionEnabled: Bool
        /// Whether expired sessions raise Session_End (through the sweeping worker).
        public var raisesSessionEnd: Bool
        /// How often this worker tries to sweep expired sessions (as ASP.NET's SQL Agent job).
        public var sweepInterval: Duration
        /// Sessions deleted per statement while sweeping.
        public var sweepBatch: Int

        public init(
            database: SQLSessionDatabase, commandTimeout: Duration = .seconds(30), retryInterval: Duration = .zero,
            compressionEnabled: Bool = false, raisesSessionEnd: Bool = false, sweepInterval: Duration = .seconds(60), sweepBatch: Int = 1000
        ) {
            self.database = database
            self.commandTimeout = commandTimeout
            self.retryInterval = retryInterval
            self.compressionEnabled = compressionEnabled
            self.raisesSessionEnd = raisesSessionEnd
            self.sweepInterval = sweepInterval
            self.sweepBatch = sweepBatch
        }
    }

    public let configuration: Configuration
    /// The database's host, port and name, or the SQLite file (no password: README).
    public var statusLocation: String { "\(configuration.database)" }
    let logger: Logger
    let tables: SessionTables
    let signal = ReleaseSignal()
    private let listener: ReleaseListener?
    private let health: StoreHealth
    /// Application id → stored-id suffix, and back (for Session_End).
    private let suffixes = Locked<[String: String]>([:])
    private let applications = Locked<[String: String]>([:])
    private let schemaVerified = Locked(false)
    private let expireCallback = Locked<(@Sendable (SessionKey, SessionStateStoreData, SessionEndReason) -> Void)?>(nil)
    let sweepState = Locked(SweepState())
    /// Locks this worker holds but could not give back because the database was unreachable
    /// (stored id → lock cookie): released as soon as it answers again, so that its sessions
    /// are not blocked until the execution timeout breaks the locks (ASP.NET waits for that).
    private let orphanedLocks = Locked<[String: Int]>([:])
    /// Who sweeps, for the lease (`host:pid`).
    let owner: String

    struct SweepState {
        var running = false
        var last: ContinuousClock.Instant?
    }

    public convenience init(configuration: Configuration, logger: Logger) {
        self.init(configuration: configuration, logger: logger, owner: "\(ProcessInfo.processInfo.hostName):\(getpid())")
    }

    init(configuration: Configuration, logger: Logger, owner: String) {
        self.owner = owner
        self.configuration = configuration
        self.logger = logger
        health = StoreHealth(outageMessage: "Unable to connect to SQL Server session database.", recoveryMessage: "the session database answers again")
        // Never unbounded: a request must not wait for a database without end (README).
        let timeout = configuration.commandTimeout > .zero ? configuration.commandTimeout : .seconds(30)
        switch configuration.database {
        case .postgres(let target):
            let pipeline = PostgresPipeline(maxOpen: target.maxPoolSize, waitLimit: timeout) { () throws(SessionStoreError) -> PostgresConnection in
                do throws(SessionStoreError) {
                    return try PostgresConnection(target: target, statementTimeout: timeout)
                } catch where !target.databaseNamed && error.message.contains("database \"\(target.database)\" does not exist") {
                    // The default ASPState database is made by `sql install`, as the schema.
                    throw SessionStoreError(.configuration, SQLSchema.notInstalled("PostgreSQL \(target)", connectionStringHint: SQLSchemaInstaller.hint(.postgres(target))))
                }
            }
            tables = .postgres(PostgresSessionTable(pipeline))
            listener = ReleaseListener(target: target, signal: signal, logger: logger)
        case .sqlite(let path, let fullSync):
            // One writer at a time per database in this process, on one connection (SQLiteWriter).
            let writer = SQLiteWriter(logger: logger) { () throws(SessionStoreError) -> SQLiteConnection in
                try SQLiteConnection(path: path, busyTimeout: timeout, fullSync: fullSync)
            }
            tables = .sqlite(SessionTablePool(maxOpen: 100, waitLimit: timeout) { () throws(SessionStoreError) -> SQLiteSessionTable in
                SQLiteSessionTable(try SQLiteConnection(path: path, busyTimeout: timeout, fullSync: fullSync), writer: writer)
            })
            listener = nil
        }
    }

    // MARK: SessionStateStore

    public func setItemExpireCallback(_ callback: @escaping @Sendable (SessionKey, SessionStateStoreData, SessionEndReason) -> Void) -> Bool {
        guard configuration.raisesSessionEnd else { return false }
        expireCallback.withLock { $0 = callback }
        return true
    }

    public func getItem(_ key: SessionKey) throws(SessionStoreError) -> StoreLookup {
        let id = try storedID(key)
        let row = try perform(idempotent: true) { table throws(SessionStoreError) in try table.get(id, exclusive: false) }
        return try lookup(row, key: key, exclusive: false)
    }

    public func getItemExclusive(_ key: SessionKey) throws(SessionStoreError) -> StoreLookup {
        let id = try storedID(key)
        let row = try perform(idempotent: false) { table throws(SessionStoreError) in try table.get(id, exclusive: true) }
        do throws(SessionStoreError) {
            return try lookup(row, key: key, exclusive: true)
        } catch {
            // The read took the lock: give it back, or later requests would wait for the
            // execution timeout. The stored item stays as it is.
            if let row, !row.locked {
                do { try releaseItemExclusive(key, lockID: LockID(row.lockCookie)) } catch {
                    logger.warning("could not release the lock of an unreadable session", metadata: ["session": "\(key)", "error": "\(error)"])
                }
            }
            throw error
        }
    }

    public func releaseItemExclusive(_ key: SessionKey, lockID: LockID) throws(SessionStoreError) {
        let id = try storedID(key)
        do throws(SessionStoreError) {
            try perform(idempotent: true) { table throws(SessionStoreError) in try table.release(id, cookie: lockID.rawValue) }
        } catch {
            if error.isTransient { orphanedLocks.withLock { $0[id] = lockID.rawValue } }
            throw error
        }
        signal.released([(id, lockID.rawValue)])
    }

    public func setAndReleaseItemExclusive(_ key: SessionKey, data: SessionStateStoreData, lockID: LockID?, newItem: Bool) throws(SessionStoreError) {
        let id = try storedID(key)
        let blob = try encode(data)
        if newItem {
            // Repeating an insert changes nothing: a second one finds the first's row.
            let inserted = try perform(idempotent: true) { table throws(SessionStoreError) in
                try table.insert(id, item: blob, timeout: data.timeout, uninitialized: false)
            }
            if !inserted { logger.debug("a new session was inserted by another request first", metadata: ["session": "\(key)"]) }
            return
        }
        guard let lockID else { throw SessionStoreError(.lockLost, "a session read without its lock cannot be saved") }
        let saved: UpdateOutcome
        do throws(SessionStoreError) {
            saved = try perform(idempotent: false) { table throws(SessionStoreError) in
                try table.update(id, item: blob, timeout: data.timeout, cookie: lockID.rawValue)
            }
        } catch {
            // Saved or not, the lock is to be given back (a release after a save that did go
            // through changes nothing: the cookie no longer holds the lock).
            if error.isTransient { orphanedLocks.withLock { $0[id] = lockID.rawValue } }
            throw error
        }
        switch saved {
        case .saved:
            break
        case .lockTaken:
            throw SessionStoreError(.lockLost, "the session's lock was broken and taken by another request (or the session ended): this request's changes were not saved")
        case .lockVanished:
            // Not another request's doing: the database forgot the lock (a failover, a restore).
            // The request may be repeated (503).
            throw SessionStoreError(.unavailable, "the session database forgot this request's lock (a failover or a restore?): its changes were not saved")
        }
        signal.released([(id, lockID.rawValue)])
    }

    public func removeItem(_ key: SessionKey, lockID: LockID?, data: SessionStateStoreData?) throws(SessionStoreError) {
        let id = try storedID(key)
        let outcome = try perform(idempotent: false) { table throws(SessionStoreError) in try table.remove(id, cookie: lockID?.rawValue) }
        switch outcome {
        case .removed:
            // Waiters find it gone at their next read, whichever holder they waited for.
            signal.released([(id, .max)])
            if let data, let callback = expireCallback.withLock({ $0 }) { callback(key, data, .abandoned) }
        case .heldByAnother where lockID != nil:
            throw SessionStoreError(.lockLost, "the session's lock was broken and taken by another request: it was not removed")
        case .heldByAnother, .notFound:
            break
        }
    }

    public func resetItemTimeout(_ key: SessionKey) throws(SessionStoreError) {
        let id = try storedID(key)
        try perform(idempotent: true) { table throws(SessionStoreError) in try table.resetTimeout(id) }
    }

    public func createUninitializedItem(_ key: SessionKey, timeout: Int) throws(SessionStoreError) {
        let id = try storedID(key)
        let blob = try encode(SessionStateStoreData(timeout: timeout))
        _ = try perform(idempotent: true) { table throws(SessionStoreError) in try table.insert(id, item: blob, timeout: timeout, uninitialized: true) }
    }

    public func containsSession(id: String) throws(SessionStoreError) -> Bool {
        try perform(idempotent: true) { table throws(SessionStoreError) in try table.contains(sessionID: id) }
    }

    /// Waits for the release of this process's holders and (PostgreSQL) other workers' NOTIFY,
    /// at most 500 ms (ASP.NET's poll); on SQLite, other processes' releases are seen by a
    /// cheap read every 25 ms.
    public func waitForRelease(_ key: SessionKey, lockID: LockID, deadline: ContinuousClock.Instant) {
        BlockingHint.willBlock()
        let wake = min(deadline, .now + .milliseconds(500))
        let id: String
        do { id = try storedID(key) } catch { return }
        if let listener {
            listener.start()
            signal.wait(for: id, holder: lockID.rawValue, until: wake)
            return
        }
        while ContinuousClock.now < wake {
            signal.wait(for: id, holder: lockID.rawValue, until: min(wake, .now + .milliseconds(25)))
            do {
                let state = try perform(idempotent: true) { table throws(SessionStoreError) in try table.lockState(id) }
                guard let state, state.locked, state.cookie == lockID.rawValue else { return }
            } catch {
                return  // the acquire that follows reports it
            }
        }
    }

    /// Whether this store hears other workers' releases now (PostgreSQL's listener is connected).
    var isListeningForReleases: Bool { listener?.isListening ?? false }

    public func close() {
        listener?.stop()
        tables.drain()
    }

    public func performMaintenance() {
        let start = sweepState.withLock { state -> Bool in
            guard !state.running, state.last.map({ ContinuousClock.now - $0 >= configuration.sweepInterval }) ?? true else { return false }
            state.running = true
            state.last = .now
            return true
        }
        guard start else { return }
        let thread = Thread { [self] in
            defer { sweepState.withLock { $0.running = false } }
            do throws(SessionStoreError) { _ = try sweepExpiredSessions() } catch {
                logger.warning("could not delete expired sessions", metadata: ["database": "\(configuration.database)", "error": "\(error.message)"])
            }
        }
        thread.name = "sessionhost-sql-sweep"
        thread.start()
    }

    // MARK: Rows and items

    private func lookup(_ row: SessionRow?, key: SessionKey, exclusive: Bool) throws(SessionStoreError) -> StoreLookup {
        guard let row else { return .notFound }
        if row.locked { return .locked(lockAge: row.lockAge, lockID: LockID(row.lockCookie)) }
        let data: SessionStateStoreData
        do { data = try ASPNETSessionStateFormat.decode(row.item ?? [], compressed: configuration.compressionEnabled) } catch {
            throw SessionStoreError(.corrupt, "the session \(key) cannot be read: \(error.description)", underlying: error)
        }
        return .found(data, lockID: exclusive ? LockID(row.lockCookie) : nil, actions: row.initialize ? .initializeItem : .none)
    }

    private func encode(_ data: SessionStateStoreData) throws(SessionStoreError) -> [UInt8] {
        do { return try ASPNETSessionStateFormat.encode(data, compressed: configuration.compressionEnabled) } catch {
            throw SessionStoreError(.refused, error.description, underlying: error)
        }
    }

    /// ASP.NET's stored id: the session ID and the application's 8-hex suffix (`TempGetAppID`,
    /// once per application).
    func storedID(_ key: SessionKey) throws(SessionStoreError) -> String {
        if let suffix = suffixes.withLock({ $0[key.application] }) { return key.id + suffix }
        let application = key.application
        let appID = try perform(idempotent: true) { table throws(SessionStoreError) in
            try table.applicationID(name: application, hash: SQLSchema.applicationHash(application))
        }
        let suffix = SQLSchema.suffix(appID)
        suffixes.withLock { $0[application] = suffix }
        applications.withLock { $0[suffix] = application }
        return key.id + suffix
    }

    /// The application a stored id's suffix belongs to: as this process named it, else as the
    /// database keeps it (lower-cased).
    func application(ofSuffix suffix: String, stored: String?) -> String? {
        applications.withLock { $0[suffix] } ?? stored
    }

    var sessionEndCallback: (@Sendable (SessionKey, SessionStateStoreData, SessionEndReason) -> Void)? {
        expireCallback.withLock { $0 }
    }

    // MARK: Connections, retries, the schema

    /// Runs `body` on a pooled connection. A kept connection found broken is replaced and the
    /// operation repeated once when repeating it cannot change anything (`idempotent`), or
    /// when it failed before anything was sent. With `sqlConnectionRetryInterval`, failures of
    /// the kinds ASP.NET calls fatal (the database unreachable or not answering) are retried
    /// every second until the interval has passed, under the same rule.
    func perform<T>(idempotent: Bool, _ body: (any SessionTableConnection) throws(SessionStoreError) -> T) throws(SessionStoreError) -> T {
        let retryUntil = configuration.retryInterval > .zero ? ContinuousClock.now + configuration.retryInterval : nil
        var repeatedOnce = false
        while true {
            var sent = false
            var reused = false
            do throws(SessionStoreError) {
                let lease = try tables.acquire()
                reused = lease.reused
                defer { tables.release(lease) }
                try verifySchema(lease.table)
                sent = true
                let result = try body(lease.table)
                health.succeeded(logger: logger, server: "\(configuration.database)")
                releaseOrphanedLocks(lease.table)
                return result
            } catch {
                let pipelined = error.underlying as? PipelineFailure
                guard error.isTransient, idempotent || !sent || pipelined?.nothingSent == true else { throw failed(error) }
                if reused || pipelined?.onKeptConnection == true, !repeatedOnce {
                    repeatedOnce = true
                    continue
                }
                guard let retryUntil, ContinuousClock.now + .seconds(1) < retryUntil else { throw failed(error) }
                if !repeatedOnce { tables.drain() }  // ASP.NET's ClearPool, once
                repeatedOnce = true
                BlockingHint.willBlock()
                Thread.sleep(forTimeInterval: 1)
            }
        }
    }

    /// Gives back the locks an outage left held (see `orphanedLocks`), on a connection that
    /// just worked.
    private func releaseOrphanedLocks(_ table: any SessionTableConnection) {
        let orphaned = orphanedLocks.withLock { locks -> [String: Int] in
            defer { locks = [:] }
            return locks
        }
        guard !orphaned.isEmpty else { return }
        var left: [String: Int] = [:]
        for (id, cookie) in orphaned {
            do throws(SessionStoreError) {
                try table.release(id, cookie: cookie)
                signal.released([(id, cookie)])
            } catch {
                left[id] = cookie
            }
        }
        logger.notice("gave back session locks held when the database became unreachable", metadata: ["released": "\(orphaned.count - left.count)", "left": "\(left.count)"])
        if !left.isEmpty { orphanedLocks.withLock { $0.merge(left) { current, _ in current } } }
    }

    private func failed(_ error: SessionStoreError) -> SessionStoreError {
        if error.isTransient { health.failed(error, logger: logger, server: "\(configuration.database)") }
        return error
    }

    /// The schema is checked on first use (and again until it is there): a worker never
    /// creates it, and a missing one is a clear error naming the command that installs it.
    private func verifySchema(_ table: any SessionTableConnection) throws(SessionStoreError) {
        if schemaVerified.withLock({ $0 }) { return }
        let version = try table.schemaVersion()
        guard let version else {
            throw SessionStoreError(.configuration, SQLSchema.notInstalled("\(configuration.database)", connectionStringHint: SQLSchemaInstaller.hint(configuration.database)))
        }
        guard version == SQLSchema.version else {
            throw SessionStoreError(.configuration, version > SQLSchema.version
                ? "The session database \(configuration.database) has session-state schema version \(version), from a newer SessionHost; this release understands version \(SQLSchema.version)."
                : "The session database \(configuration.database) has session-state schema version \(version); run session-host sql install --connection-string \(SQLSchemaInstaller.hint(configuration.database)) to update it to version \(SQLSchema.version).")
        }
        schemaVerified.withLock { $0 = true }
    }
}

/// The store's way to its tables: SQLite connections from a pool, or PostgreSQL's one table
/// object for all requests (its pipeline keeps the connections).
enum SessionTables: Sendable {
    case sqlite(SessionTablePool<SQLiteSessionTable>)
    case postgres(PostgresSessionTable)

    struct Lease {
        var table: any SessionTableConnection
        /// Whether a failure may be a kept connection's that broke meanwhile (worth one repeat).
        var reused: Bool
        fileprivate var pooled: SessionTablePool<SQLiteSessionTable>.Lease?
    }

    func acquire() throws(SessionStoreError) -> Lease {
        switch self {
        case .sqlite(let pool):
            let lease = try pool.acquire()
            return Lease(table: lease.connection, reused: lease.reused, pooled: lease)
        case .postgres(let table):
            // Whether the batch ran on a kept connection comes with its error (`PipelineFailure`).
            return Lease(table: table, reused: false, pooled: nil)
        }
    }

    func release(_ lease: Lease) {
        if case .sqlite(let pool) = self, let pooled = lease.pooled { pool.release(pooled) }
    }

    /// Closes the kept connections (ASP.NET's `ClearPool`, close).
    func drain() {
        switch self {
        case .sqlite(let pool): pool.drain()
        case .postgres(let table): table.pipeline.drain()
        }
    }
}
