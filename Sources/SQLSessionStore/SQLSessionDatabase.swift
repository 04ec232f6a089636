import CLibPQ
import Foundation
public import SessionState

/// The database a `sqlConnectionString` names: a PostgreSQL database (a libpq URI or keyword
/// string, or ADO.NET keywords mapped onto libpq's) or a SQLite file (`sqlite:PATH`).
public enum SQLSessionDatabase: Sendable, Hashable, CustomStringConvertible {
    case postgres(PostgresTarget)
    /// `fullSync`: `?synchronous=full` — every commit waits for the disk (see `SQLiteConnection`).
    case sqlite(path: String, fullSync: Bool = false)

    /// The database ASP.NET uses when the connection string names none (`Initial Catalog=ASPState`).
    public static let defaultDatabase = "ASPState"

    /// For logs and error pages: the host, port and database, never a password.
    public var description: String {
        switch self {
        case .postgres(let target): "PostgreSQL \(target)"
        case .sqlite(let path, _): "SQLite \(path)"
        }
    }

    /// Reads `sqlConnectionString`:
    /// - `sqlite:PATH`: a SQLite file (a relative path is taken from the worker's directory),
    ///   optionally ending `?synchronous=full` (or `=normal`, the default);
    /// - `postgresql://…` or `postgres://…`, or libpq's `keyword=value …` form: PostgreSQL;
    /// - ADO.NET keywords (`Data Source`/`Server`, `Initial Catalog`/`Database`, `User ID`,
    ///   `Password`, …) mapped onto libpq's; a keyword with no PostgreSQL meaning (e.g.
    ///   `Integrated Security=SSPI`) is an error, never ignored.
    ///
    /// ASP.NET's `allowCustomSqlDatabase` rule holds for PostgreSQL: without it the string may
    /// not name a database, and the database is `ASPState`. Messages never quote a password.
    public static func parse(_ text: String, allowCustomDatabase: Bool) throws(SessionStoreSettingsError) -> SQLSessionDatabase {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.lowercased().hasPrefix("sqlite:") {
            var path = String(trimmed.dropFirst("sqlite:".count))
            var fullSync = false
            if let question = path.lastIndex(of: "?") {
                switch path[path.index(after: question)...].lowercased() {
                case "synchronous=full": fullSync = true
                case "synchronous=normal": fullSync = false
                default: throw invalid("the only option of a SQLite file is ?synchronous=normal (the default) or ?synchronous=full.")
                }
                path = String(path[..<question])
            }
            guard !path.isEmpty, !path.contains("\0") else {
                throw invalid("'sqlite:' must be followed by the path of the SQLite file, e.g. sqlite:/var/lib/sessionhost/sessions.db.")
            }
            return .sqlite(path: path, fullSync: fullSync)
        }
        let lower = trimmed.lowercased()
        if lower.hasPrefix("postgresql://") || lower.hasPrefix("postgres://") {
            return .postgres(try PostgresTarget(libpq: trimmed, allowCustomDatabase: allowCustomDatabase))
        }
        if !trimmed.contains(";"), PostgresTarget.isLibpqSyntax(trimmed) {
            return .postgres(try PostgresTarget(libpq: trimmed, allowCustomDatabase: allowCustomDatabase))
        }
        // Not libpq's syntax (ADO.NET's `;`, or keywords libpq does not know): ADO.NET's.
        return .postgres(try PostgresTarget(adoNet: trimmed, allowCustomDatabase: allowCustomDatabase))
    }

    static func invalid(_ reason: String) -> SessionStoreSettingsError {
        SessionStoreSettingsError(attribute: "sqlConnectionString", message: "Error parsing <sessionState> sqlConnectionString attribute: \(reason)")
    }

    /// ASP.NET's message for a database named without `allowCustomSqlDatabase`.
    static let customDatabaseRefused = SessionStoreSettingsError(
        attribute: "sqlConnectionString",
        message: "The sqlConnectionString attribute or the connection string it refers to cannot contain the connection options 'Database', 'Initial Catalog' or 'AttachDbFileName'. In order to allow this, allowCustomSqlDatabase attribute must be set to true and the application needs to be granted unrestricted SqlClientPermission. Please check with your administrator if the application does not have this permission.")
}

/// A PostgreSQL database as libpq connection parameters.
public struct PostgresTarget: Sendable, Hashable, CustomStringConvertible {
    /// libpq keywords and values (a password among them); never logged.
    var parameters: [String: String]
    /// Whether the connection string named the database (else it is `ASPState`).
    public var databaseNamed: Bool
    /// `Max Pool Size` of an ADO.NET string: connections open at once (default 100, ADO.NET's).
    public var maxPoolSize: Int

    public var database: String { parameters["dbname"] ?? SQLSessionDatabase.defaultDatabase }
    public var host: String { parameters["host"] ?? parameters["hostaddr"] ?? "localhost" }
    public var port: String { parameters["port"] ?? "5432" }
    /// `host:port/database`.
    public var description: String { "\(host):\(port)/\(database)" }

    /// The same server, another database (install creates `ASPState` through `postgres`).
    func on(database: String) -> PostgresTarget {
        var copy = self
        copy.parameters["dbname"] = database
        return copy
    }

    /// Whether libpq reads `text` as a keyword string (`Data Source=x` and `Server=x` it does not).
    static func isLibpqSyntax(_ text: String) -> Bool {
        var message: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(text, &message) else {
            PQfreemem(message)
            return false
        }
        PQconninfoFree(options)
        return true
    }

    /// A libpq URI or keyword string, parsed by libpq itself (`PQconninfoParse`).
    init(libpq text: String, allowCustomDatabase: Bool) throws(SessionStoreSettingsError) {
        var message: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(text, &message) else {
            defer { PQfreemem(message) }
            let reason = message.map { String(cString: $0) } ?? "libpq cannot read it"
            throw SQLSessionDatabase.invalid(Self.withoutQuotedText(reason.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        defer { PQconninfoFree(options) }
        var parameters: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { parameters[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        let named = parameters["dbname"].map { !$0.isEmpty } ?? false
        if named, !allowCustomDatabase { throw SQLSessionDatabase.customDatabaseRefused }
        if !named { parameters["dbname"] = SQLSessionDatabase.defaultDatabase }
        self.parameters = parameters
        databaseNamed = named
        maxPoolSize = 100
    }

    /// libpq's messages quote pieces of the string, which may be a password: those go.
    private static func withoutQuotedText(_ message: String) -> String {
        var result = "", quoted = false
        for character in message {
            if character == "\"" {
                quoted.toggle()
                result.append(quoted ? "\"…" : "\"")
            } else if !quoted {
                result.append(character)
            }
        }
        return result
    }

    /// ADO.NET keywords, mapped onto libpq's where PostgreSQL has the same thing.
    init(adoNet text: String, allowCustomDatabase: Bool) throws(SessionStoreSettingsError) {
        let options: [String: String]
        do { options = try ADONETConnectionString.parse(text) } catch {
            throw SQLSessionDatabase.invalid(error.message)
        }
        var parameters: [String: String] = ["dbname": SQLSessionDatabase.defaultDatabase]
        var named = false
        var maxPoolSize = 100
        var encrypt: String?
        var trustServerCertificate = false
        for (key, value) in options.sorted(by: { $0.key < $1.key }) {
            switch key {
            case "data source", "server", "address", "addr", "network address":
                let (host, port) = try Self.server(value)
                parameters["host"] = host
                if let port { parameters["port"] = port }
            case "initial catalog", "database":
                guard !value.isEmpty else { continue }
                guard allowCustomDatabase else { throw SQLSessionDatabase.customDatabaseRefused }
                parameters["dbname"] = value
                named = true
            case "attachdbfilename", "extended properties", "initial file name":
                guard allowCustomDatabase else { throw SQLSessionDatabase.customDatabaseRefused }
                throw Self.unmapped(key, "PostgreSQL cannot attach a database file; name the database with Initial Catalog.")
            case "user id", "uid", "user":
                parameters["user"] = value
            case "password", "pwd":
                parameters["password"] = value
            case "integrated security", "trusted_connection":
                guard ["false", "no"].contains(value.lowercased()) else {
                    throw Self.unmapped(key, "Windows authentication has no PostgreSQL equivalent here: give User ID and Password, or write a libpq connection string (e.g. host=/var/run/postgresql for peer authentication over the Unix socket).")
                }
            case "connect timeout", "connection timeout", "timeout":
                guard let seconds = Int(value), seconds >= 0 else { throw SQLSessionDatabase.invalid("'\(key)' must be a whole number of seconds.") }
                parameters["connect_timeout"] = String(seconds)
            case "application name", "app":
                parameters["application_name"] = value
            case "encrypt":
                encrypt = value.lowercased()
            case "trustservercertificate", "trust server certificate":
                trustServerCertificate = ["true", "yes"].contains(value.lowercased())
            case "max pool size":
                guard let size = Int(value), size > 0 else { throw SQLSessionDatabase.invalid("'Max Pool Size' must be a positive whole number.") }
                maxPoolSize = size
            case "pooling":
                guard ["true", "yes"].contains(value.lowercased()) else {
                    throw Self.unmapped(key, "SessionHost always keeps a pool of connections (Max Pool Size bounds it).")
                }
            case "persist security info":
                // Whether a connection hands its password back to code; ours never does.
                continue
            default:
                throw Self.unmapped(key, "it has no PostgreSQL equivalent. Write a libpq connection string (postgresql://user@host:port/db or host=… port=… dbname=…) for PostgreSQL's own options.")
            }
        }
        switch encrypt {
        case nil, "false", "no", "optional": break
        case "true", "yes", "mandatory", "strict": parameters["sslmode"] = trustServerCertificate ? "require" : "verify-full"
        default: throw SQLSessionDatabase.invalid("'Encrypt' must be true or false.")
        }
        self.parameters = parameters
        databaseNamed = named
        self.maxPoolSize = maxPoolSize
    }

    private static func unmapped(_ key: String, _ reason: String) -> SessionStoreSettingsError {
        SQLSessionDatabase.invalid("the connection option '\(key)' cannot be used with PostgreSQL: \(reason)")
    }

    /// `Data Source`: `host`, `host,port`, `tcp:host,port`; `(local)` and `.` are this machine.
    /// Named instances and the pipe and shared-memory protocols have no PostgreSQL meaning.
    private static func server(_ value: String) throws(SessionStoreSettingsError) -> (host: String, port: String?) {
        var text = value
        if text.lowercased().hasPrefix("tcp:") { text.removeFirst(4) }
        let lower = text.lowercased()
        if lower.hasPrefix("np:") || lower.hasPrefix("lpc:") || lower.hasPrefix("admin:") {
            throw unmapped("data source", "only TCP servers (host or host,port) can be mapped onto PostgreSQL.")
        }
        if text.contains("\\") {
            throw unmapped("data source", "SQL Server named instances (host\\instance) have no PostgreSQL equivalent; give the port: Data Source=host,5432.")
        }
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count <= 2, let first = parts.first, !first.isEmpty else {
            throw SQLSessionDatabase.invalid("'Data Source' must be host or host,port.")
        }
        let host = ["(local)", ".", "(localdb)"].contains(first.lowercased()) ? "localhost" : first
        guard parts.count == 2 else { return (host, nil) }
        guard let port = UInt16(parts[1]), port > 0 else { throw SQLSessionDatabase.invalid("the port in 'Data Source' must be 1–65535.") }
        return (host, String(port))
    }
}
