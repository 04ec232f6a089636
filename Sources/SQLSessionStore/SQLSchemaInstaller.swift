import Foundation
import Locking
public import SessionState

/// `session-host sql install | uninstall | status` (ASP.NET's `aspnet_regsql -ssadd` and
/// `-ssremove`): creates the `ASPState` database when the connection string names none and it
/// is missing, then the schema, in one transaction; idempotent, and versioned
/// (`ASPStateSchema`), so a later release can migrate an older schema.
public enum SQLSchemaInstaller {
    /// Installs (or refreshes) the schema; returns what was done, for the operator.
    public static func install(_ database: SQLSessionDatabase, timeout: Duration = .seconds(30)) throws(SessionStoreError) -> String {
        switch database {
        case .postgres(let target):
            var done: [String] = []
            if !target.databaseNamed, try createDatabaseIfMissing(target, timeout: timeout) { done.append("created the database \(target.database)") }
            let connection = try PostgresConnection(target: target, statementTimeout: timeout)
            let installed = try postgresVersion(connection)
            if let installed, installed > SQLSchema.version {
                throw SessionStoreError(.configuration, "\(database) has session-state schema version \(installed), from a newer SessionHost; this release installs version \(SQLSchema.version)")
            }
            // One transaction: a failure leaves the database as it was. The advisory lock keeps
            // two installs from racing.
            try connection.run("""
                BEGIN;
                SET LOCAL client_min_messages = warning;
                SELECT pg_advisory_xact_lock(\(SQLSchema.applicationHash("sessionhost-install")));
                \(PostgresSchema.tables)
                \(PostgresSchema.dropFunctions)
                \(PostgresSchema.functions)
                INSERT INTO ASPStateSchema (Component, Version) VALUES ('session-state', \(SQLSchema.version))
                    ON CONFLICT (Component) DO UPDATE SET Version = EXCLUDED.Version, InstalledAt = now();
                COMMIT;
                """)
            done.append(installed == nil ? "installed session-state schema version \(SQLSchema.version)" : "schema version \(SQLSchema.version) is installed; its functions were refreshed")
            return "\(database): " + done.joined(separator: "; ")
        case .sqlite(let path, _):
            let connection = try SQLiteConnection(path: path, busyTimeout: timeout, create: true)
            let table = SQLiteSessionTable(connection, writer: SQLiteWriter(connection))
            let installed = try table.schemaVersion()
            if let installed, installed > SQLSchema.version {
                throw SessionStoreError(.configuration, "\(database) has session-state schema version \(installed), from a newer SessionHost; this release installs version \(SQLSchema.version)")
            }
            try connection.run("""
                \(SQLiteSchema.tables)
                BEGIN IMMEDIATE;
                INSERT INTO ASPStateSchema (Component, Version) VALUES ('session-state', \(SQLSchema.version))
                    ON CONFLICT (Component) DO UPDATE SET Version = excluded.Version, InstalledAt = datetime('now');
                COMMIT;
                """)
            return "\(database): " + (installed == nil ? "installed session-state schema version \(SQLSchema.version)" : "schema version \(SQLSchema.version) is installed")
        }
    }

    /// Removes the schema and every session in it (the database itself stays).
    public static func uninstall(_ database: SQLSessionDatabase, timeout: Duration = .seconds(30)) throws(SessionStoreError) -> String {
        switch database {
        case .postgres(let target):
            let connection = try PostgresConnection(target: target, statementTimeout: timeout)
            try connection.run("BEGIN; \(PostgresSchema.uninstall) COMMIT;")
        case .sqlite(let path, _):
            let connection = try SQLiteConnection(path: path, busyTimeout: timeout)
            try connection.run(SQLiteSchema.uninstall)
        }
        return "\(database): removed the session-state schema and its sessions"
    }

    /// What is installed, and how many sessions live.
    public static func status(_ database: SQLSessionDatabase, timeout: Duration = .seconds(30)) throws(SessionStoreError) -> SQLSchemaStatus {
        var status = SQLSchemaStatus(database: "\(database)", version: nil, sessions: 0, expiredSessions: 0, lockedSessions: 0, applications: [], sweeper: nil)
        switch database {
        case .postgres(let target):
            let connection = try PostgresConnection(target: target, statementTimeout: timeout)
            status.version = try postgresVersion(connection)
            guard status.version != nil else { return status }
            let counts = try connection.query("SELECT count(*) FILTER (WHERE Expires >= now()), count(*) FILTER (WHERE Expires < now()), count(*) FILTER (WHERE Locked AND Expires >= now()) FROM ASPStateTempSessions")
            status.sessions = counts.first?[0].flatMap { Int($0) } ?? 0
            status.expiredSessions = counts.first?[1].flatMap { Int($0) } ?? 0
            status.lockedSessions = counts.first?[2].flatMap { Int($0) } ?? 0
            status.applications = try connection.query("SELECT AppName || ' (' || lpad(to_hex(AppId), 8, '0') || ')' FROM ASPStateTempApplications ORDER BY AppName").compactMap { $0.first ?? nil }
            status.sweeper = try connection.query("SELECT Owner || ', lease until ' || to_char(LeaseUntil AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC' FROM ASPStateSweeper").first?.first ?? nil
        case .sqlite(let path, _):
            guard FileManager.default.fileExists(atPath: path) else { return status }
            let connection = try SQLiteConnection(path: path, busyTimeout: timeout)
            status.version = try SQLiteSessionTable(connection, writer: SQLiteWriter(connection)).schemaVersion()
            guard status.version != nil else { return status }
            let now = Date().timeIntervalSince1970
            let counts = try connection.execute("SELECT sum(Expires >= ?1), sum(Expires < ?1), sum(Locked = 1 AND Expires >= ?1) FROM ASPStateTempSessions", [.real(now)])
            status.sessions = counts.first?[0].int ?? 0
            status.expiredSessions = counts.first?[1].int ?? 0
            status.lockedSessions = counts.first?[2].int ?? 0
            status.applications = try connection.execute("SELECT AppName, AppId FROM ASPStateTempApplications ORDER BY AppName").compactMap { row in
                guard let name = row[0].text, let id = row[1].int else { return nil }
                return "\(name) (\(SQLSchema.suffix(Int32(truncatingIfNeeded: id))))"
            }
            status.sweeper = try connection.execute("SELECT Owner, datetime(LeaseUntil, 'unixepoch') FROM ASPStateSweeper").first.map { row in
                "\(row[0].text ?? "?"), lease until \(row[1].text ?? "?") UTC"
            }
        }
        return status
    }

    /// The connection string to show in messages: the same database without the password.
    static func hint(_ database: SQLSessionDatabase) -> String {
        switch database {
        case .sqlite(let path, _): return "'sqlite:\(path)'"
        case .postgres(let target):
            var parts = ["host=\(target.host)", "port=\(target.port)", "dbname=\(target.database)"]
            if let user = target.parameters["user"] { parts.append("user=\(user)") }
            return "'" + parts.joined(separator: " ") + "'"
        }
    }

    private static func postgresVersion(_ connection: PostgresConnection) throws(SessionStoreError) -> Int? {
        try PostgresSessionTable.schemaVersion(on: connection)
    }

    /// Creates the default database through the server's `postgres` database; false when it
    /// exists already.
    private static func createDatabaseIfMissing(_ target: PostgresTarget, timeout: Duration) throws(SessionStoreError) -> Bool {
        let maintenance = try PostgresConnection(target: target.on(database: "postgres"), statementTimeout: timeout)
        let exists = try maintenance.query("SELECT 1 FROM pg_database WHERE datname = $1", [target.database])
        guard exists.isEmpty else { return false }
        do {
            try maintenance.query("CREATE DATABASE \"\(target.database.replacingOccurrences(of: "\"", with: "\"\""))\"")
        } catch where error.message.contains("already exists") {
            return false  // created by a concurrent install
        }
        return true
    }
}
