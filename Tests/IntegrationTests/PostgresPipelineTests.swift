import Foundation
import Locking
import SessionState
import Testing
@testable import SQLSessionStore

/// Group commit on PostgreSQL (`PostgresPipeline`) against a real PostgreSQL 15: a pipeline is
/// one transaction, a statement's failure rolls it back without failing the others'
/// requests, and statements of concurrent requests queued behind a busy slot share one batch.
@Suite(.serialized)
struct PostgresPipelineTests {
    @Test func aPipelineIsOneTransactionAndAFailureRollsItBack() throws {
        let server = try PostgresServer()
        defer { server.stop() }
        let connection = try PostgresConnection(conninfo: server.conninfo, connectTimeout: 5)
        try connection.query("CREATE TABLE t (id int PRIMARY KEY)")
        let insert = "INSERT INTO t VALUES ($1::int) RETURNING txid_current()"
        let outcome = connection.execute(pipeline: [
            PostgresStatement(name: "insert", sql: insert, parameters: [.int(1)]),
            PostgresStatement(name: "insert", sql: insert, parameters: [.int(2)]),
            PostgresStatement(name: "count", sql: "SELECT count(*), txid_current() FROM t", parameters: []),
        ])
        guard case .completed(let results) = outcome else {
            Issue.record("the pipeline did not complete: \(String(describing: outcome.error))")
            return
        }
        let rows = try results.map { try $0.get() }
        let transactions = Set(rows.map { $0.first?.last?.int })
        #expect(transactions.count == 1, "three statements of one pipeline ran in \(transactions.count) transactions")
        #expect(rows[2].first?.first?.int == 2, "the third statement sees the first two")
        // The second statement fails: the first one's insert is undone with it.
        let failed = connection.execute(pipeline: [
            PostgresStatement(name: "insert", sql: insert, parameters: [.int(3)]),
            PostgresStatement(name: "divide", sql: "SELECT 1 / $1::int", parameters: [.int(0)]),
            PostgresStatement(name: "insert", sql: insert, parameters: [.int(4)]),
        ])
        guard case .rolledBack(let index, let error) = failed else {
            Issue.record("a failing statement did not roll the pipeline back: \(failed)")
            return
        }
        #expect(index == 1)
        #expect(error.kind == .refused)
        #expect(connection.isUsable)
        #expect(try connection.query("SELECT count(*) FROM t") == [["2"]])
        // A statement cancelled by the statement timeout (waiting for a lock another session
        // holds) rolls its batch back too, and says so: the others may run again alone.
        let blocker = try PostgresConnection(conninfo: server.conninfo, connectTimeout: 5)
        try blocker.query("SELECT pg_advisory_lock(43)")
        try connection.query("SET statement_timeout = 200")
        let slow = connection.execute(pipeline: [
            PostgresStatement(name: "insert", sql: insert, parameters: [.int(5)]),
            PostgresStatement(name: "wait", sql: "SELECT pg_advisory_xact_lock(43)", parameters: []),
        ])
        guard case .rolledBack(1, let timeout) = slow else {
            Issue.record("a statement timeout in a pipeline was not a rollback of statement 1: \(slow)")
            return
        }
        #expect(timeout.kind == .timeout)
        #expect(connection.isUsable)
        #expect(try connection.query("SELECT count(*) FROM t") == [["2"]])
    }

    @Test func queuedStatementsShareABatchAndFailAlone() throws {
        let server = try PostgresServer()
        defer { server.stop() }
        let conninfo = server.conninfo
        let pipeline = PostgresPipeline(maxOpen: 4, waitLimit: .seconds(30), slots: 1) { () throws(SessionStoreError) -> PostgresConnection in
            try PostgresConnection(conninfo: conninfo, connectTimeout: 5)
        }
        defer { pipeline.drain() }
        let blocker = try PostgresConnection(conninfo: conninfo, connectTimeout: 5)

        /// Runs `count` statements from threads of their own while the one slot is busy, and
        /// returns each one's result once the slot is freed.
        func queueBehindABusySlot(_ statements: [PostgresStatement]) throws -> [Result<[[PostgresField]], SessionStoreError>] {
            try blocker.query("SELECT pg_advisory_lock(42)")
            let results = Locked<[Int: Result<[[PostgresField]], SessionStoreError>]>([:])
            let group = DispatchGroup()
            func start(_ index: Int, _ statement: PostgresStatement) {
                group.enter()
                Thread {
                    defer { group.leave() }
                    let result: Result<[[PostgresField]], SessionStoreError>
                    do throws(SessionStoreError) { result = .success(try pipeline.execute(statement, key: "k\(index)")) } catch { result = .failure(error) }
                    results.withLock { $0[index] = result }
                }.start()
            }
            // The slot's batch waits for the advisory lock the test holds.
            start(-1, PostgresStatement(name: "wait", sql: "SELECT txid_current() FROM (SELECT pg_advisory_xact_lock(42)) l", parameters: []))
            for _ in 0..<400 where try blocker.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") != [["1"]] {
                Thread.sleep(forTimeInterval: 0.01)
            }
            for (index, statement) in statements.enumerated() { start(index, statement) }
            for _ in 0..<400 where pipeline.queued < statements.count { Thread.sleep(forTimeInterval: 0.01) }
            #expect(pipeline.queued == statements.count)
            try blocker.query("SELECT pg_advisory_unlock(42)")
            group.wait()
            return results.withLock { results in (0..<statements.count).map { results[$0] ?? .failure(SessionStoreError(.refused, "no answer")) } }
        }

        let echo = "SELECT txid_current(), $1::int"
        let shared = try queueBehindABusySlot((0..<15).map { PostgresStatement(name: "echo", sql: echo, parameters: [.int($0)]) })
        let rows = try shared.map { try $0.get() }
        #expect(rows.map { $0.first?.last?.int } == (0..<15).map { $0 }, "each request gets its own row")
        #expect(Set(rows.map { $0.first?.first?.int }).count == 1, "15 queued statements were not one batch")

        // One of them fails: it alone gets the error.
        let mixed = try queueBehindABusySlot((0..<15).map { index in
            index == 7 ? PostgresStatement(name: "divide", sql: "SELECT txid_current(), 1 / $1::int", parameters: [.int(0)])
                : PostgresStatement(name: "echo", sql: echo, parameters: [.int(index)])
        })
        for (index, result) in mixed.enumerated() {
            switch result {
            case .success(let rows):
                #expect(index != 7)
                #expect(rows.first?.last?.int == index)
            case .failure(let error):
                #expect(index == 7, "statement \(index) failed with another's error: \(error.message)")
                #expect(error.kind == .refused)
            }
        }
    }
}
