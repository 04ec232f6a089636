import SessionState
import Testing
@testable import SQLSessionStore

/// `sqlConnectionString` as the SQLServer store reads it: which database, how ADO.NET keywords
/// map onto libpq's, ASP.NET's `allowCustomSqlDatabase` rule, and errors that name the problem
/// without quoting a password.
struct SQLConnectionStringTests {
    func postgres(_ text: String, allow: Bool = false) throws -> PostgresTarget {
        guard case .postgres(let target) = try SQLSessionDatabase.parse(text, allowCustomDatabase: allow) else {
            Issue.record("not PostgreSQL: \(text)")
            throw SessionStoreSettingsError(attribute: "", message: "")
        }
        return target
    }

    func error(_ text: String, allow: Bool = false) -> String? {
        do {
            _ = try SQLSessionDatabase.parse(text, allowCustomDatabase: allow)
            return nil
        } catch {
            #expect(error.attribute == "sqlConnectionString")
            return error.message
        }
    }

    @Test func libpqURIsAndKeywordStringsArePostgres() throws {
        let uri = try postgres("postgresql://app:s3cret@db.example:6432/Sessions", allow: true)
        #expect(uri.parameters["host"] == "db.example")
        #expect(uri.parameters["port"] == "6432")
        #expect(uri.parameters["user"] == "app")
        #expect(uri.parameters["password"] == "s3cret")
        #expect(uri.database == "Sessions")
        #expect(uri.databaseNamed)
        #expect("\(SQLSessionDatabase.postgres(uri))" == "PostgreSQL db.example:6432/Sessions")
        let keywords = try postgres("host=/var/run/postgresql port=5433 user=web")
        #expect(keywords.host == "/var/run/postgresql")
        #expect(keywords.database == "ASPState")
        #expect(!keywords.databaseNamed)
        #expect(try postgres("postgres://localhost").database == "ASPState")
    }

    @Test func sqliteNamesAFile() throws {
        #expect(try SQLSessionDatabase.parse("sqlite:/var/lib/app/sessions.db", allowCustomDatabase: false) == .sqlite(path: "/var/lib/app/sessions.db"))
        #expect(try SQLSessionDatabase.parse("SQLite:run/s.db", allowCustomDatabase: false) == .sqlite(path: "run/s.db"))
        #expect(try SQLSessionDatabase.parse("sqlite:/d/s.db?synchronous=FULL", allowCustomDatabase: false) == .sqlite(path: "/d/s.db", fullSync: true))
        #expect(try SQLSessionDatabase.parse("sqlite:/d/s.db?synchronous=normal", allowCustomDatabase: false) == .sqlite(path: "/d/s.db"))
        #expect(error("sqlite:/d/s.db?mode=ro")?.contains("?synchronous=full") == true)
        #expect(error("sqlite:")?.contains("path of the SQLite file") == true)
    }

    @Test func adoNetKeywordsAreMapped() throws {
        let target = try postgres("Data Source=tcp:db.example,5433;User ID=web;Password='p;w';Connect Timeout=7;Application Name=Shop;Max Pool Size=20;Encrypt=true;TrustServerCertificate=true")
        #expect(target.parameters["host"] == "db.example")
        #expect(target.parameters["port"] == "5433")
        #expect(target.parameters["user"] == "web")
        #expect(target.parameters["password"] == "p;w")
        #expect(target.parameters["connect_timeout"] == "7")
        #expect(target.parameters["application_name"] == "Shop")
        #expect(target.parameters["sslmode"] == "require")
        #expect(target.maxPoolSize == 20)
        #expect(target.database == "ASPState")
        #expect(try postgres("Server=(local);Integrated Security=false").host == "localhost")
        #expect(try postgres("Data Source=localhost").host == "localhost")
        #expect(try postgres("Server=db;Encrypt=yes").parameters["sslmode"] == "verify-full")
        #expect(try postgres("Server=db;Initial Catalog=Shop", allow: true).database == "Shop")
    }

    @Test func withoutAllowCustomSqlDatabaseNoDatabaseMayBeNamed() {
        let message = "The sqlConnectionString attribute or the connection string it refers to cannot contain the connection options 'Database', 'Initial Catalog' or 'AttachDbFileName'. In order to allow this, allowCustomSqlDatabase attribute must be set to true and the application needs to be granted unrestricted SqlClientPermission. Please check with your administrator if the application does not have this permission."
        #expect(error("Server=db;Initial Catalog=Mine") == message)
        #expect(error("Server=db;Database=Mine") == message)
        #expect(error("Server=db;AttachDBFilename=x.mdf") == message)
        #expect(error("host=db dbname=Mine") == message)
        #expect(error("postgresql://db/Mine") == message)
    }

    @Test func whatCannotBeMappedIsAnError() {
        #expect(error("data source=127.0.0.1;Integrated Security=SSPI")?.contains("'integrated security' cannot be used with PostgreSQL") == true)
        #expect(error("Server=db;Trusted_Connection=yes")?.contains("Windows authentication") == true)
        #expect(error("Server=db\\SQLEXPRESS")?.contains("named instances") == true)
        #expect(error("Server=np:db")?.contains("only TCP") == true)
        #expect(error("Server=db;Pooling=false")?.contains("always keeps a pool") == true)
        #expect(error("Server=db;MultiSubnetFailover=true")?.contains("'multisubnetfailover' cannot be used with PostgreSQL") == true)
        #expect(error("Server=db;AttachDBFilename=x.mdf", allow: true)?.contains("cannot attach a database file") == true)
        #expect(error("Server=db,99999")?.contains("port") == true)
        #expect(error("Server='db")?.hasPrefix("Error parsing <sessionState> sqlConnectionString attribute: Format of the initialization string does not conform to specification starting at index 0.") == true)
    }

    @Test func messagesNeverQuoteAPassword() {
        for text in ["host=db password=s3cret bogus=s3cret", "postgresql://u:s3cret@db/x?bogus=s3cret", "Server=db;Password=s3cret;Bogus=1", "Server=db;Password=s3cret;Integrated Security=SSPI"] {
            let message = error(text, allow: true)
            #expect(message != nil)
            #expect(message?.contains("s3cret") == false, "\(message ?? "")")
        }
    }

    @Test func applicationSuffixesAreASPNETs() {
        // Values of ASPState's GetHashCode procedure (its 16-bit arithmetic, run in Python).
        #expect(SQLSchema.suffix(SQLSchema.applicationHash("/LM/W3SVC/1/ROOT")) == "2014c0f1")
        #expect(SQLSchema.suffix(SQLSchema.applicationHash("/lm/w3svc/1/root/app")) == "ad94db9f")
        #expect(SQLSchema.suffix(SQLSchema.applicationHash("/LM/W3SVC/2/ROOT/shop")) == "2767beb9")
        #expect(SQLSchema.suffix(SQLSchema.applicationHash("")) == "00001505")
    }

    @Test func theRefreshThrottleIsATenthOfTheTimeoutAtMostAMinute() {
        #expect(SQLSchema.refreshThrottle(timeoutMinutes: 20) == .seconds(60))
        #expect(SQLSchema.refreshThrottle(timeoutMinutes: 5) == .seconds(30))
        #expect(SQLSchema.refreshThrottle(timeoutMinutes: 0) == .seconds(1))
    }
}
