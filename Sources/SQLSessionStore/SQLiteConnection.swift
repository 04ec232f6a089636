import CSQLite
import Foundation
import Locking
import SessionState

/// One SQLite connection (Debian's libsqlite3), used by one worker thread at a time, with its
/// statements prepared once. The database is in WAL mode, so readers never wait; a writer of
/// another process is waited for up to the command timeout, polling every 50–1000 µs (SQLite's
/// own busy timeout sleeps up to 100 ms at a time, which made the p99 of a busy file seconds).
///
/// Durability: `synchronous=NORMAL` by default: a commit is in the WAL file (the operating
/// system's cache) when it returns, so it survives the worker crashing or being restarted; only
/// a crash of the machine itself (power, kernel) may lose the commits since the last checkpoint
/// (at most `SQLiteWriter.checkpointFrames` pages, 16 MiB), as with php-fpm's files sessions,
/// which are never flushed either. `?synchronous=full` flushes every commit.
final class SQLiteConnection {
    private let database: OpaquePointer
    let path: String
    private var statements: [String: OpaquePointer] = [:]
    private(set) var isUsable = true
    /// The busy handler's state (its context pointer).
    private let busy: UnsafeMutablePointer<BusyState>
    /// Frames in the WAL after this connection's last commit, as SQLite's WAL hook reports
    /// them (when `takeOverCheckpoints` installed it).
    private let walFrames: UnsafeMutablePointer<Int32>

    struct BusyState {
        var limitNanoseconds: Int
        var startedNanoseconds = 0
    }

    /// A statement value: integer, real, text, blob or NULL.
    enum Value {
        case int(Int)
        case real(Double)
        case text(String)
        case blob([UInt8])
        case null
    }

    /// Opens `path`; `create` only for `session-host sql install` (a worker never creates the
    /// database: a missing file is a schema that is not installed).
    init(path: String, busyTimeout: Duration, fullSync: Bool = false, create: Bool = false) throws(SessionStoreError) {
        self.path = path
        if !create, !FileManager.default.fileExists(atPath: path) {
            throw SessionStoreError(.configuration, SQLSchema.notInstalled("SQLite \(path)", connectionStringHint: "sqlite:\(path)"))
        }
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0)
        let status = sqlite3_open_v2(path, &handle, flags, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(status))
            sqlite3_close_v2(handle)
            throw SessionStoreError(.unavailable, "cannot open the SQLite session database \(path): \(message)")
        }
        database = handle
        walFrames = .allocate(capacity: 1)
        walFrames.initialize(to: 0)
        busy = .allocate(capacity: 1)
        busy.initialize(to: BusyState(limitNanoseconds: Int(busyTimeout.components.seconds) * 1_000_000_000 + Int(busyTimeout.components.attoseconds / 1_000_000_000)))
        sqlite3_busy_handler(handle, { context, attempts in
            guard let state = context?.assumingMemoryBound(to: BusyState.self) else { return 0 }
            let now = monotonicNanoseconds()
            if attempts == 0 { state.pointee.startedNanoseconds = now }
            guard now - state.pointee.startedNanoseconds < state.pointee.limitNanoseconds else { return 0 }
            // Another process writes: this thread waits (a statement alone never blocks).
            BlockingHint.willBlock()
            usleep(useconds_t(min(1000, 50 << min(Int(attempts), 4))))
            return 1
        }, busy)
        try run("PRAGMA synchronous = \(fullSync ? "FULL" : "NORMAL")")
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close_v2(database)
        busy.deallocate()
        walFrames.deallocate()
    }

    /// Turns off SQLite's automatic checkpoints on this connection (which would run inside a
    /// commit, holding the write turn) and counts the WAL's frames instead (`framesInWAL`), so
    /// that the owner can checkpoint beside the writers (`SQLiteWriter`).
    func takeOverCheckpoints() {
        sqlite3_wal_hook(database, { context, _, _, frames in
            context?.assumingMemoryBound(to: Int32.self).pointee = frames
            return SQLITE_OK
        }, walFrames)
    }

    /// Frames in the WAL after this connection's last commit (with `takeOverCheckpoints`).
    var framesInWAL: Int { Int(walFrames.pointee) }

    /// What a checkpoint found and did.
    struct Checkpoint {
        /// Frames in the WAL.
        var frames: Int
        /// Frames of it that are not in the database yet (a reader still needs them, or another
        /// process checkpoints now).
        var left: Int
    }

    /// A PASSIVE checkpoint: copies to the database what no reader still needs, waiting for
    /// nobody.
    @discardableResult
    func checkpoint() throws(SessionStoreError) -> Checkpoint {
        var log: Int32 = 0, copied: Int32 = 0
        let status = sqlite3_wal_checkpoint_v2(database, nil, SQLITE_CHECKPOINT_PASSIVE, &log, &copied)
        // Busy: another process checkpoints now (which does the same work).
        if status == SQLITE_BUSY { return Checkpoint(frames: framesInWAL, left: framesInWAL) }
        guard status == SQLITE_OK else { throw failure(status) }
        return Checkpoint(frames: Int(max(0, log)), left: Int(max(0, log - copied)))
    }

    /// Rows changed by the last statement.
    var changes: Int { Int(sqlite3_changes(database)) }

    /// Runs `sql` (one statement, prepared once per connection) and returns its rows.
    @discardableResult
    func execute(_ sql: String, _ parameters: [Value] = []) throws(SessionStoreError) -> [[Value]] {
        let statement = try prepared(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        for (index, parameter) in parameters.enumerated() {
            let position = Int32(index + 1)
            switch parameter {
            case .int(let value): sqlite3_bind_int64(statement, position, Int64(value))
            case .real(let value): sqlite3_bind_double(statement, position, value)
            case .text(let value): sqlite3_bind_text(statement, position, value, -1, sqliteTransient)
            case .blob(let bytes): bytes.withUnsafeBytes { _ = sqlite3_bind_blob(statement, position, $0.baseAddress, Int32(bytes.count), sqliteTransient) }
            case .null: sqlite3_bind_null(statement, position)
            }
        }
        var rows: [[Value]] = []
        while true {
            let status = sqlite3_step(statement)
            if status == SQLITE_DONE { return rows }
            guard status == SQLITE_ROW else { throw failure(status) }
            rows.append((0..<sqlite3_column_count(statement)).map { column(statement, $0) })
        }
    }

    /// Runs statements that take no parameters (schema changes), all at once.
    func run(_ sql: String) throws(SessionStoreError) {
        var message: UnsafeMutablePointer<CChar>?
        let status = sqlite3_exec(database, sql, nil, nil, &message)
        defer { sqlite3_free(message) }
        guard status == SQLITE_OK else { throw failure(status, message.map { String(cString: $0) }) }
    }

    /// Runs `body` in a short write transaction (`BEGIN IMMEDIATE`: the write lock is taken
    /// at once, so two of them never deadlock); rolled back if it throws. Never held across a
    /// request: each store operation is one such transaction.
    func writeTransaction<T>(_ body: () throws(SessionStoreError) -> T) throws(SessionStoreError) -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            if sqlite3_get_autocommit(database) == 0 {
                // The transaction is still open: end it, or the next statement would run in it.
                do { try execute("ROLLBACK") } catch { isUsable = false }
            }
            throw error
        }
    }

    private func prepared(_ sql: String) throws(SessionStoreError) -> OpaquePointer {
        if let statement = statements[sql] { return statement }
        var statement: OpaquePointer?
        let status = sqlite3_prepare_v3(database, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard status == SQLITE_OK, let statement else { throw failure(status) }
        statements[sql] = statement
        return statement
    }

    private func column(_ statement: OpaquePointer, _ index: Int32) -> Value {
        switch sqlite3_column_type(statement, index) {
        case SQLITE_INTEGER: return .int(Int(sqlite3_column_int64(statement, index)))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(statement, index))
        case SQLITE_TEXT: return .text(String(cString: sqlite3_column_text(statement, index)))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, index))
            guard count > 0, let base = sqlite3_column_blob(statement, index) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: base, count: count)))
        default: return .null
        }
    }

    private func failure(_ status: Int32, _ detail: String? = nil) -> SessionStoreError {
        let message = detail ?? String(cString: sqlite3_errmsg(database))
        switch status & 0xFF {
        case SQLITE_BUSY, SQLITE_LOCKED:
            return SessionStoreError(.timeout, "the SQLite session database \(path) stayed locked by another writer for longer than the command timeout: \(message)")
        case SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_FULL, SQLITE_NOMEM:
            isUsable = false
            return SessionStoreError(.unavailable, "the SQLite session database \(path) is unavailable: \(message)")
        case SQLITE_CORRUPT, SQLITE_NOTADB:
            isUsable = false
            return SessionStoreError(.unavailable, "the SQLite session database \(path) is damaged: \(message)")
        default:
            return SessionStoreError(.refused, "the SQLite session database \(path) refused a statement: \(message)")
        }
    }
}

private func monotonicNanoseconds() -> Int {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec * 1_000_000_000 + now.tv_nsec
}

/// `SQLITE_TRANSIENT`: SQLite copies the bound value (a C macro Swift does not import).
private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

extension SQLiteConnection.Value {
    var int: Int? { if case .int(let value) = self { value } else { nil } }
    var real: Double? {
        switch self {
        case .real(let value): value
        case .int(let value): Double(value)
        default: nil
        }
    }
    var text: String? { if case .text(let value) = self { value } else { nil } }
    var blob: [UInt8]? { if case .blob(let value) = self { value } else { nil } }
}
