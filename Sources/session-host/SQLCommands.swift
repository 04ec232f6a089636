import ArgumentParser
import Foundation
import SQLSessionStore
import SessionState

/// `session-host sql`: ASP.NET's `aspnet_regsql -ssadd / -ssremove` for the SQLServer mode.
struct SQLCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sql",
        abstract: "Install, remove or inspect the SQLServer mode's session-state schema (PostgreSQL or SQLite).",
        discussion: """
            The worker never creates the schema itself. Run `install` once per database, as a user \
            that may create tables and functions (and, when the connection string names no \
            database, the ASPState database). The connection string takes the forms \
            sqlConnectionString does: postgresql://user@host:port/db, host=… port=… dbname=…, \
            ADO.NET keywords (Data Source=host,port;User ID=…;Password=…) or sqlite:PATH.
            """,
        subcommands: [SQLInstallCommand.self, SQLUninstallCommand.self, SQLStatusCommand.self]
    )
}

struct SQLConnectionOptions: ParsableArguments {
    @Option(name: .customLong("connection-string"), help: ArgumentHelp("The database: as sqlConnectionString (a database may be named here).", valueName: "string"))
    var connectionString: String

    @Option(help: ArgumentHelp("Seconds each statement may take.", valueName: "seconds"))
    var timeout: Int = 30

    /// The database; the tool may name any (allowCustomSqlDatabase is a web.config rule).
    func database() throws -> SQLSessionDatabase {
        do throws(SessionStoreSettingsError) {
            return try SQLSessionDatabase.parse(connectionString, allowCustomDatabase: true)
        } catch {
            throw ValidationError(error.message)
        }
    }

    func perform<T>(_ body: (SQLSessionDatabase, Duration) throws(SessionStoreError) -> T) throws -> T {
        let database = try database()
        do throws(SessionStoreError) {
            return try body(database, .seconds(timeout))
        } catch {
            var standardError = StandardError()
            print("session-host sql: \(error.message)", to: &standardError)
            throw ExitCode.failure
        }
    }
}

struct SQLInstallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Create the ASPState database if needed, then the session-state schema (idempotent; updates an older schema).")

    @OptionGroup var options: SQLConnectionOptions

    func run() throws {
        print(try options.perform { database, timeout throws(SessionStoreError) in try SQLSchemaInstaller.install(database, timeout: timeout) })
    }
}

struct SQLUninstallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uninstall",
        abstract: "Remove the session-state schema and every session in it (the database itself stays).")

    @OptionGroup var options: SQLConnectionOptions

    func run() throws {
        print(try options.perform { database, timeout throws(SessionStoreError) in try SQLSchemaInstaller.uninstall(database, timeout: timeout) })
    }
}

struct SQLStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the installed schema version, the sessions (live, locked, expired), the applications and the sweeper.",
        discussion: "Exits 1 when no schema is installed.")

    @OptionGroup var options: SQLConnectionOptions

    func run() throws {
        let status = try options.perform { database, timeout throws(SessionStoreError) in try SQLSchemaInstaller.status(database, timeout: timeout) }
        print(status)
        if status.version == nil { throw ExitCode.failure }
    }
}
