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
final class PostgresConnection {
    private let connection: OpaquePointer
    /// `host:port/database`, for messages.
    let target: String

    /// Connects with `conninfo` (a libpq keyword string or URI); `connectTimeout` in whole
    /// seconds (libpq's `connect_timeout`, at least 2 as libpq requires).
    init(conninfo: String, connectTimeout: Int) throws(SessionStoreError) {
        BlockingHint.willBlock()
        let keywords = ["dbname", "connect_timeout", "application_name"]
        let values = [conninfo, String(max(2, connectTimeout)), "SessionHost"]
        // expand_dbname = 1: the first `dbname` value is itself a connection string or URI.
        let made: OpaquePointer? = withArrayOfCStrings(keywords) { keys in
            withArrayOfCStrings(values) { vals in PQconnectdbParams(keys, vals, 1) }
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
    var isUsable: Bool { PQstatus(connection) == CONNECTION_OK }

    /// The rows of one statement with text parameters (`$1`, …; nil is SQL NULL), each row its
    /// columns as text (nil for NULL).
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
