import CLibPQ
import Foundation
import Locking
import SessionState

/// One blocking libpq connection, used by one worker thread at a time.
///
/// Errors become `SessionStoreError`s: a connection that cannot be made or is lost is
/// `unavailable`, a statement cancelled by `statement_timeout` is `timeout`, anything else the
/// server reports is `refused`. Messages never carry the connection string (it may hold a
/// password): only the host, port and database.
final class PostgresConnection: PooledConnection {
    private let connection: OpaquePointer
    /// `host:port/database`, for messages.
    let target: String

    /// Prepared statements of this connection, by name.
    private var prepared: Set<String> = []
    /// A pipeline ended in a state libpq could not leave: the connection is not used again.
    private var abandoned = false

    /// Connects with `conninfo` (a libpq keyword string or URI); `connectTimeout` in whole
    /// seconds (libpq's `connect_timeout`, at least 2 as libpq requires).
    convenience init(conninfo: String, connectTimeout: Int) throws(SessionStoreError) {
        // expand_dbname: the first `dbname` value is itself a connection string or URI.
        try self.init(keywords: ["dbname", "connect_timeout", "application_name"], values: [conninfo, String(max(2, connectTimeout)), "SessionHost"], expand: true)
    }

    /// Connects to `target`. Every statement is bounded by `statementTimeout` (the server's
    /// `statement_timeout`, set in the startup packet: no extra round trip); connecting by
    /// `connect_timeout` (the string's, else `statementTimeout`, at least 2 s as libpq requires).
    convenience init(target: PostgresTarget, statementTimeout: Duration) throws(SessionStoreError) {
        var parameters = target.parameters
        let seconds = max(2, Int(statementTimeout.components.seconds))
        if parameters["connect_timeout"] == nil { parameters["connect_timeout"] = String(min(seconds, 15)) }
        if parameters["application_name"] == nil { parameters["application_name"] = "SessionHost" }
        if statementTimeout > .zero {
            let milliseconds = statementTimeout.components.seconds * 1000 + statementTimeout.components.attoseconds / 1_000_000_000_000_000
            parameters["options"] = ((parameters["options"].map { $0 + " " }) ?? "") + "-c statement_timeout=\(milliseconds)"
        }
        let ordered = parameters.sorted { $0.key < $1.key }
        try self.init(keywords: ordered.map(\.key), values: ordered.map(\.value), expand: false)
    }

    private init(keywords: [String], values: [String], expand: Bool) throws(SessionStoreError) {
        BlockingHint.willBlock()
        let made: OpaquePointer? = withArrayOfCStrings(keywords) { keys in
            withArrayOfCStrings(values) { vals in PQconnectdbParams(keys, vals, expand ? 1 : 0) }
        }
        guard let made else { throw SessionStoreError(.unavailable, "libpq could not allocate a connection") }
        connection = made
        target = Self.describe(made)
        guard PQstatus(made) == CONNECTION_OK else {
            let message = Self.errorText(made)
            throw SessionStoreError(message.contains("timeout expired") ? .timeout : .unavailable,
                                    "cannot connect to the PostgreSQL session database at \(target): \(message)")
        }
    }

    deinit { PQfinish(connection) }

    /// Whether the connection is still usable (libpq's view after the last command).
    var isUsable: Bool { !abandoned && PQstatus(connection) == CONNECTION_OK }

    /// Whether a kept, idle connection may be used: anything readable on it while idle is the
    /// server's goodbye (a restart, `pg_terminate_backend`, an idle timeout) or its end.
    var isAlive: Bool {
        guard isUsable else { return false }
        var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) == 0
    }

    /// The rows of one statement with text parameters (`$1`, …; nil is SQL NULL), each row its
    /// columns as text (nil for NULL).
    @discardableResult
    func query(_ sql: String, _ parameters: [String?] = []) throws(SessionStoreError) -> [[String?]] {
        BlockingHint.willBlock()
        let result: OpaquePointer? = withArrayOfOptionalCStrings(parameters) { pointers in
            PQexecParams(connection, sql, Int32(parameters.count), nil, pointers, nil, nil, 0)
        }
        defer { PQclear(result) }
        guard let result else { throw failure("the statement could not be sent") }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK:
            return []
        case PGRES_TUPLES_OK:
            var rows: [[String?]] = []
            let count = PQntuples(result), columns = PQnfields(result)
            rows.reserveCapacity(Int(count))
            for row in 0..<count {
                rows.append((0..<columns).map { column in
                    PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
                })
            }
            return rows
        default:
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } ?? ""
            throw failure(String(cString: PQresultErrorMessage(result)), sqlState: state)
        }
    }

    /// Runs a script of several statements without parameters (schema changes), as one
    /// simple query: in one implicit transaction unless it has its own BEGIN/COMMIT.
    func run(_ script: String) throws(SessionStoreError) {
        BlockingHint.willBlock()
        let result = PQexec(connection, script)
        defer { PQclear(result) }
        guard let result, [PGRES_COMMAND_OK, PGRES_TUPLES_OK].contains(PQresultStatus(result)) else { throw failure(result) }
    }

    /// Runs a statement prepared on this connection under `name` (prepared on first use):
    /// one round trip, parameters and results in binary form (no hex encoding of items).
    func execute(_ name: String, _ sql: String, _ parameters: [PostgresValue]) throws(SessionStoreError) -> [[PostgresField]] {
        BlockingHint.willBlock()
        try prepare(name, sql, parameterCount: parameters.count)
        let result = withParameters(parameters) { values, lengths, formats in
            PQexecPrepared(connection, name, Int32(parameters.count), values, lengths, formats, 1)
        }
        defer { PQclear(result) }
        guard let result else { throw failure("the statement could not be sent") }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK: return []
        case PGRES_TUPLES_OK: return try Self.binaryRows(result)
        default: throw failure(result)
        }
    }

    private func prepare(_ name: String, _ sql: String, parameterCount: Int) throws(SessionStoreError) {
        guard !prepared.contains(name) else { return }
        let result = PQprepare(connection, name, sql, Int32(parameterCount), nil)
        defer { PQclear(result) }
        guard let result, PQresultStatus(result) == PGRES_COMMAND_OK else { throw failure(result) }
        prepared.insert(name)
    }

    /// Runs several prepared statements in one pipeline (libpq's pipeline mode): sent together,
    /// answered together, and run by the server in one implicit transaction that commits at the
    /// end (one commit, one WAL flush, one round trip for all). No result is returned before
    /// that commit has answered, so nothing is reported saved that was not.
    func execute(pipeline statements: [PostgresStatement]) -> PostgresPipelineOutcome {
        BlockingHint.willBlock()
        guard isUsable else { return .notSent(failure("the connection to the session database broke")) }
        do throws(SessionStoreError) {
            for statement in statements { try prepare(statement.name, statement.sql, parameterCount: statement.parameters.count) }
        } catch {
            return .notSent(error)
        }
        guard PQenterPipelineMode(connection) == 1 else { return .notSent(failure(Self.errorText(connection))) }
        for statement in statements {
            let sent = withParameters(statement.parameters) { values, lengths, formats in
                PQsendQueryPrepared(connection, statement.name, Int32(statement.parameters.count), values, lengths, formats, 1)
            }
            guard sent == 1 else { return abandon(failure(Self.errorText(connection))) }
        }
        guard PQpipelineSync(connection) == 1 else { return abandon(failure(Self.errorText(connection))) }
        var results: [Result<[[PostgresField]], SessionStoreError>] = []
        results.reserveCapacity(statements.count)
        var firstError: PostgresPipelineOutcome?
        for index in statements.indices {
            guard let result = PQgetResult(connection) else { return abandon(failure("the session database ended a pipeline early")) }
            switch PQresultStatus(result) {
            case PGRES_COMMAND_OK:
                results.append(.success([]))
            case PGRES_TUPLES_OK:
                do throws(SessionStoreError) { results.append(.success(try Self.binaryRows(result))) } catch { results.append(.failure(error)) }
            case PGRES_PIPELINE_ABORTED:
                results.append(.failure(SessionStoreError(.refused, "not run: an earlier statement of its batch failed")))
            default:
                // The server's own error (a refusal or a statement timeout) on a connection that
                // still works rolls the batch back; anything else leaves its outcome unknown.
                let error = failure(result)
                results.append(.failure(error))
                if firstError == nil {
                    firstError = error.kind == .refused || error.kind == .timeout ? .rolledBack(failedIndex: index, error) : .failed(error)
                }
            }
            PQclear(result)
            // Each statement's results end with a NULL.
            while let extra = PQgetResult(connection) { PQclear(extra) }
            guard isUsable else { return abandon(firstError.flatMap(\.error) ?? failure(Self.errorText(connection))) }
        }
        let sync = PQgetResult(connection)
        defer { PQclear(sync) }
        guard let sync, PQresultStatus(sync) == PGRES_PIPELINE_SYNC else {
            return abandon(sync.map { failure($0) } ?? failure("the session database did not confirm the end of a pipeline"))
        }
        guard PQexitPipelineMode(connection) == 1 else { return abandon(firstError.flatMap(\.error) ?? failure(Self.errorText(connection))) }
        return firstError ?? .completed(results)
    }

    /// The connection is left in a state that cannot be trusted: it is dropped after this use.
    private func abandon(_ error: SessionStoreError) -> PostgresPipelineOutcome {
        abandoned = true
        return .failed(error)
    }

    /// Calls `body` with the parameters as C arrays: values (text NUL-terminated, bytes raw,
    /// NULL nil), lengths and formats (binary for bytes).
    private func withParameters<R>(
        _ parameters: [PostgresValue],
        _ body: (UnsafePointer<UnsafePointer<CChar>?>?, [Int32], [Int32]) -> R
    ) -> R {
        let lengths = parameters.map { value -> Int32 in
            if case .bytes(let bytes) = value { return Int32(bytes.count) }
            return 0
        }
        let formats = parameters.map { value -> Int32 in
            if case .bytes = value { return 1 }
            return 0
        }
        return withParameterPointers(parameters) { values in body(values, lengths, formats) }
    }

    private func failure(_ result: OpaquePointer?) -> SessionStoreError {
        guard let result else { return failure(Self.errorText(connection)) }
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } ?? ""
        return failure(String(cString: PQresultErrorMessage(result)), sqlState: state)
    }

    /// The rows of a binary result, each column decoded by its type.
    private static func binaryRows(_ result: OpaquePointer) throws(SessionStoreError) -> [[PostgresField]] {
        let count = PQntuples(result), columns = PQnfields(result)
        var rows: [[PostgresField]] = []
        rows.reserveCapacity(Int(count))
        for row in 0..<count {
            var fields: [PostgresField] = []
            fields.reserveCapacity(Int(columns))
            for column in 0..<columns {
                if PQgetisnull(result, row, column) == 1 {
                    fields.append(.null)
                    continue
                }
                let length = Int(PQgetlength(result, row, column))
                let bytes = UnsafeRawBufferPointer(start: PQgetvalue(result, row, column), count: length)
                fields.append(try PostgresField(type: PQftype(result, column), bytes))
            }
            rows.append(fields)
        }
        return rows
    }

    // MARK: Notifications

    /// The socket, for waiting on notifications.
    var socket: Int32 { PQsocket(connection) }

    /// Reads what the server sent and returns the payloads of the notifications that arrived
    /// (LISTEN); throws when the connection is gone.
    func notifications() throws(SessionStoreError) -> [String] {
        guard PQconsumeInput(connection) == 1 else { throw failure(Self.errorText(connection)) }
        var payloads: [String] = []
        while let notice = PQnotifies(connection) {
            payloads.append(String(cString: notice.pointee.extra))
            PQfreemem(notice)
        }
        return payloads
    }

    private func failure(_ message: String, sqlState: String = "") -> SessionStoreError {
        let text = message.trimmingCharacters(in: .whitespacesAndNewlines)
        // 57014 query_canceled (statement_timeout); class 08 connection exceptions; 57P0x
        // the server shutting down.
        if sqlState == "57014" { return SessionStoreError(.timeout, "the PostgreSQL session database at \(target) did not answer in time: \(text)") }
        if !isUsable || sqlState.hasPrefix("08") || sqlState.hasPrefix("57P") {
            return SessionStoreError(.unavailable, "the PostgreSQL session database at \(target) is unavailable: \(text.isEmpty ? Self.errorText(connection) : text)")
        }
        return SessionStoreError(.refused, "the PostgreSQL session database at \(target) refused a statement: \(text)")
    }

    private static func errorText(_ connection: OpaquePointer) -> String {
        String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func describe(_ connection: OpaquePointer) -> String {
        let host = PQhost(connection).map { String(cString: $0) } ?? "?"
        let port = PQport(connection).map { String(cString: $0) } ?? "?"
        let database = PQdb(connection).map { String(cString: $0) } ?? "?"
        return "\(host):\(port)/\(database)"
    }
}

/// A prepared statement to run with its parameters.
struct PostgresStatement: Sendable {
    /// The name it is prepared under on each connection.
    var name: String
    var sql: String
    var parameters: [PostgresValue]
}

/// What running a pipeline did.
enum PostgresPipelineOutcome {
    /// Committed: each statement's rows (or a decoding error of its own).
    case completed([Result<[[PostgresField]], SessionStoreError>])
    /// The statement at `failedIndex` failed (refused, or cancelled by the statement timeout),
    /// and the transaction with it: nothing was committed, so each statement may be run
    /// again on its own.
    case rolledBack(failedIndex: Int, SessionStoreError)
    /// Nothing was sent (the connection was broken, or a statement could not be prepared).
    case notSent(SessionStoreError)
    /// The connection failed: whether the statements committed is unknown.
    case failed(SessionStoreError)

    var error: SessionStoreError? {
        switch self {
        case .completed: nil
        case .rolledBack(_, let error), .notSent(let error), .failed(let error): error
        }
    }
}

/// A statement parameter: text (the server converts it to the parameter's type), binary bytes
/// (`bytea`), or NULL.
enum PostgresValue: Sendable {
    case text(String)
    case bytes([UInt8])
    case null

    static func int(_ value: Int) -> PostgresValue { .text(String(value)) }
}

/// A column of a binary result, decoded by its type (boolean, integers, bytea, text).
enum PostgresField: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case bytes([UInt8])
    case text(String)

    init(type: Oid, _ bytes: UnsafeRawBufferPointer) throws(SessionStoreError) {
        func integer(_ width: Int) -> Int {
            var value = 0
            for byte in bytes.prefix(width) { value = value << 8 | Int(byte) }
            // Sign-extend from `width` bytes.
            let shift = 64 - width * 8
            return shift > 0 ? (value << shift) >> shift : value
        }
        switch type {
        case 16: self = .bool(bytes.first == 1)
        case 20 where bytes.count == 8: self = .int(integer(8))
        case 23 where bytes.count == 4: self = .int(integer(4))
        case 21 where bytes.count == 2: self = .int(integer(2))
        case 17: self = .bytes(Array(bytes))
        case 2278: self = .null  // void: a function that returns nothing
        case 25, 1043, 1042, 19: self = .text(String(decoding: bytes, as: UTF8.self))
        default: throw SessionStoreError(.refused, "the session database answered a column of unexpected type \(type)")
        }
    }

    var int: Int? { if case .int(let value) = self { value } else { nil } }
    var bool: Bool? { if case .bool(let value) = self { value } else { nil } }
    var bytes: [UInt8]? { if case .bytes(let value) = self { value } else { nil } }
    var text: String? { if case .text(let value) = self { value } else { nil } }
}

/// Calls `body` with the parameters as C pointers (text NUL-terminated, bytes raw, NULL nil).
private func withParameterPointers<R>(_ parameters: [PostgresValue], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    var buffers: [UnsafeMutablePointer<CChar>?] = []
    buffers.reserveCapacity(parameters.count)
    defer { for buffer in buffers { free(buffer) } }
    for parameter in parameters {
        switch parameter {
        case .text(let text): buffers.append(strdup(text))
        case .null: buffers.append(nil)
        case .bytes(let bytes):
            let buffer = malloc(max(1, bytes.count))!.assumingMemoryBound(to: CChar.self)
            bytes.withUnsafeBytes { source in
                if let base = source.baseAddress { memcpy(buffer, base, bytes.count) }
            }
            buffers.append(buffer)
        }
    }
    let array = buffers.map { $0.map { UnsafePointer($0) } }
    return array.withUnsafeBufferPointer { body($0.baseAddress) }
}

/// Calls `body` with a NULL-terminated C array of the strings (alive during the call).
private func withArrayOfCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let duplicated = strings.map { strdup($0) }
    defer { for pointer in duplicated { free(pointer) } }
    let array = duplicated.map { UnsafePointer($0) } + [nil]
    return array.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// As `withArrayOfCStrings`, with nil for SQL NULL and no terminator.
private func withArrayOfOptionalCStrings<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    let duplicated = strings.map { $0.map { strdup($0) } ?? nil }
    defer { for pointer in duplicated { free(pointer) } }
    let array = duplicated.map { $0.map { UnsafePointer($0) } }
    return array.withUnsafeBufferPointer { body($0.baseAddress) }
}
