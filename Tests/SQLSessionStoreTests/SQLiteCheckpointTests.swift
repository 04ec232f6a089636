import Foundation
import Logging
import SessionState
import Testing
@testable import SQLSessionStore

/// The SQLite writer checkpoints the WAL itself, beside the writers (SQLite's automatic
/// checkpoint, inside a commit, is off on its connection): the WAL stops growing, and nothing
/// written is lost.
struct SQLiteCheckpointTests {
    @Test func writesCheckpointTheWALAndItStopsGrowing() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sessionhost-ckpt-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/sessions.db"
        _ = try SQLSchemaInstaller.install(.sqlite(path: path))
        let writer = SQLiteWriter(logger: Logger(label: "test")) { () throws(SessionStoreError) -> SQLiteConnection in
            try SQLiteConnection(path: path, busyTimeout: .seconds(5))
        }
        // One commit per row: each at least one WAL frame, 3× the checkpoint size in all.
        let rows = 3 * SQLiteWriter.checkpointFrames
        for index in 0..<rows {
            try writer.write { connection throws(SessionStoreError) in
                try connection.execute(
                    "INSERT INTO ASPStateTempSessions (SessionId, Created, Expires, LockDate, LockDateLocal, LockCookie, Timeout, Locked, SessionItemLong, Flags) VALUES (?1, 0, 1e10, 0, '', 1, 20, 0, ?2, 0)",
                    [.text("session\(index)"), .blob([UInt8](repeating: 7, count: 100))])
            }
        }
        #expect(writer.checkpoints >= 2, "the writer ran \(writer.checkpoints) checkpoints for \(rows) commits")
        // The WAL file keeps its largest size; without checkpoints it would hold every commit.
        let walBytes = try #require(try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int)
        let frameBytes = 4096 + 24
        #expect(walBytes <= (SQLiteWriter.checkpointFrames + 500) * frameBytes + 32, "the WAL grew to \(walBytes / frameBytes) frames")
        // Nothing was lost on the way.
        let reader = try SQLiteConnection(path: path, busyTimeout: .seconds(5))
        #expect(try reader.execute("SELECT count(*) FROM ASPStateTempSessions").first?.first?.int == rows)
    }
}
