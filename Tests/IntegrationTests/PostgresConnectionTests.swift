import Foundation
import SessionState
import Testing
@testable import SQLSessionStore

/// The SQLServer store's groundwork against a real PostgreSQL 15 that the test starts: the
/// harness itself, and the blocking libpq connection's answers and error kinds.
@Suite(.serialized)
struct PostgresConnectionTests {
    @Test func queriesRunAndFailuresHaveKinds() throws {
        let server = try PostgresServer()
        defer { server.stop() }
        let connection = try PostgresConnection(conninfo: server.conninfo, connectTimeout: 5)
        #expect(connection.target == "127.0.0.1:\(server.port)/postgres")
        #expect(try connection.query("SELECT 1 + $1::int, NULL::text, $2::text", ["41", nil]) == [["42", nil, nil]])
        try connection.query("CREATE TABLE t (id int PRIMARY KEY, v bytea)")
        try connection.query("INSERT INTO t VALUES (1, '\\x0102')")
        #expect(try connection.query("SELECT v FROM t WHERE id = $1", ["1"]) == [["\\x0102"]])
        // A statement the server refuses (a duplicate key) leaves the connection usable.
        let duplicate = #expect(throws: SessionStoreError.self) { try connection.query("INSERT INTO t VALUES (1, NULL)") }
        #expect(duplicate?.kind == .refused)
        #expect(connection.isUsable)
        // statement_timeout: a timeout.
        try connection.query("SET statement_timeout = 50")
        let slow = #expect(throws: SessionStoreError.self) { try connection.query("SELECT pg_sleep(5)") }
        #expect(slow?.kind == .timeout)
        // The server stopped under the connection: unavailable, and no password in the message.
        server.stop(mode: "immediate", removing: false)
        let gone = #expect(throws: SessionStoreError.self) { try connection.query("SELECT 1") }
        #expect(gone?.kind == .unavailable)
        let refused = #expect(throws: SessionStoreError.self) {
            _ = try PostgresConnection(conninfo: server.conninfo + " password=s3cret", connectTimeout: 2)
        }
        #expect(refused?.kind == .unavailable)
        #expect(refused?.message.contains("s3cret") == false)
        // Started again: new connections work, and committed data survived.
        try server.start()
        let again = try PostgresConnection(conninfo: server.conninfo, connectTimeout: 5)
        #expect(try again.query("SELECT count(*) FROM t") == [["1"]])
    }
}
