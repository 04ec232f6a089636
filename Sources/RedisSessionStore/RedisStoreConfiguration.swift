public import SessionState
import Foundation

/// Where a Redis server listens: `host:port`, or a Unix socket (a `host` that starts with `/`,
/// SessionHost's addition to Microsoft's attributes).
public enum RedisEndpoint: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): path
        }
    }
}

/// The Redis store's settings, from the attributes of its `<providers><add …/>` entry, with the
/// names and defaults of Microsoft's `Microsoft.Web.Redis.RedisSessionStateProvider`
/// (`ProviderConfiguration`), so that an existing web.config works unchanged.
public struct RedisStoreConfiguration: Sendable, Hashable {
    public var endpoint: RedisEndpoint
    /// `accessKey` (or `password=` in `connectionString`): `AUTH`; never logged.
    public var password: String?
    /// `user=` in `connectionString`: an ACL user (`AUTH user password`).
    public var user: String?
    /// `databaseId` (or `defaultDatabase=`): `SELECT`.
    public var databaseID: Int
    /// `applicationName`: the first part of every key; nil: the application's virtual path, as
    /// Microsoft's provider (`HostingEnvironment.ApplicationVirtualPath`).
    public var applicationName: String?
    /// `connectionTimeoutInMilliseconds` (`connectTimeout=`); 0 is StackExchange.Redis's 5 s.
    public var connectionTimeout: Duration
    /// `operationTimeoutInMilliseconds` (`syncTimeout=`); 0 is StackExchange.Redis's 5 s.
    public var operationTimeout: Duration
    /// `retryTimeoutInMilliseconds`: how long a failed connection is tried again (20 ms, then
    /// every second) before the request fails; default 5 s, as Microsoft's.
    public var retryTimeout: Duration
    /// `throwOnError`: true (the default) fails the request with 503 when Redis fails; false
    /// gives it an empty session that is not saved, and logs a warning.
    public var throwOnError: Bool
    /// `executionTimeout` of `<httpRuntime>`: the lock key's TTL, so that a crashed worker cannot
    /// hold a session for longer.
    public var lockTimeout: Duration
    /// `compressionEnabled` of `<sessionState>`: the items are raw-Deflate compressed (SessionHost
    /// only; Microsoft's provider does not compress).
    public var compressionEnabled: Bool

    public init(
        endpoint: RedisEndpoint = .tcp(host: "127.0.0.1", port: 6379), password: String? = nil, user: String? = nil, databaseID: Int = 0,
        applicationName: String? = nil, connectionTimeout: Duration = .seconds(5), operationTimeout: Duration = .seconds(5),
        retryTimeout: Duration = .seconds(5), throwOnError: Bool = true, lockTimeout: Duration = .seconds(110), compressionEnabled: Bool = false
    ) {
        self.endpoint = endpoint
        self.password = password
        self.user = user
        self.databaseID = databaseID
        self.applicationName = applicationName
        self.connectionTimeout = connectionTimeout
        self.operationTimeout = operationTimeout
        self.retryTimeout = retryTimeout
        self.throwOnError = throwOnError
        self.lockTimeout = lockTimeout
        self.compressionEnabled = compressionEnabled
    }

    /// Microsoft's attribute names (ASP.NET compares them case-sensitively).
    static let knownAttributes: Set<String> = [
        "name", "description", "host", "port", "accessKey", "ssl", "databaseId", "connectionString", "applicationName",
        "connectionTimeoutInMilliseconds", "operationTimeoutInMilliseconds", "retryTimeoutInMilliseconds", "throwOnError",
    ]

    /// Attributes of Microsoft's provider that name .NET code, which a Swift host cannot run.
    static let dotNetOnlyAttributes: Set<String> = [
        "settingsClassName", "settingsMethodName", "loggingClassName", "loggingMethodName", "redisSerializerType",
    ]

    /// The settings of a provider entry, or every attribute that is wrong (each with its name, so
    /// that the host reports the entry's file and line).
    public static func parse(_ settings: SessionStoreSettings) -> Result<RedisStoreConfiguration, RedisStoreConfigurationErrors> {
        var parser = Parser(parameters: settings.parameters)
        var configuration = parser.configuration()
        configuration.lockTimeout = settings.executionTimeout
        configuration.compressionEnabled = settings.compressionEnabled
        return parser.errors.isEmpty ? .success(configuration) : .failure(RedisStoreConfigurationErrors(errors: parser.errors))
    }

    /// Reads the attributes one by one, collecting what is wrong.
    private struct Parser {
        let parameters: [String: String]
        var errors: [SessionStoreSettingsError] = []

        mutating func configuration() -> RedisStoreConfiguration {
            for name in parameters.keys.sorted() where !knownAttributes.contains(name) {
                if dotNetOnlyAttributes.contains(name) {
                    fail(name, "The attribute '\(name)' names .NET code, which SessionHost cannot run: give the server with host/port or connectionString instead.")
                } else {
                    fail(name, "Unrecognized attribute '\(name)'. Note that attribute names are case-sensitive.")
                }
            }
            var configuration = RedisStoreConfiguration()
            if flag("ssl", default: false) {
                fail("ssl", "ssl=\"true\" is not available: the Redis client library SessionHost uses (Debian's hiredis 0.14) has no TLS. Reach Redis over a local TLS tunnel (stunnel, spiped) and set ssl=\"false\".")
            }
            configuration.databaseID = number("databaseId", default: 0, range: 0...Int(Int32.max))
            configuration.connectionTimeout = milliseconds("connectionTimeoutInMilliseconds", default: 5000)
            configuration.operationTimeout = milliseconds("operationTimeoutInMilliseconds", default: 5000)
            configuration.retryTimeout = .milliseconds(number("retryTimeoutInMilliseconds", default: 5000, range: 0...Int(Int32.max)))
            configuration.throwOnError = flag("throwOnError", default: true)
            if let name = parameters["applicationName"], !name.isEmpty { configuration.applicationName = name }
            configuration.password = parameters["accessKey"].flatMap { $0.isEmpty ? nil : $0 }
            if let connectionString = parameters["connectionString"], !connectionString.isEmpty {
                readConnectionString(connectionString, into: &configuration)
            } else {
                let host = parameters["host"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
                let port = number("port", default: 0, range: 0...65535)
                configuration.endpoint = host.hasPrefix("/") ? .unix(path: host) : .tcp(host: host, port: port == 0 ? 6379 : port)
            }
            return configuration
        }

        /// StackExchange.Redis's form: `host:port[,host:port…],password=…,ssl=…,defaultDatabase=N,
        /// connectTimeout=ms,syncTimeout=ms,user=…,abortConnect=…` (one endpoint only).
        mutating func readConnectionString(_ text: String, into configuration: inout RedisStoreConfiguration) {
            // Messages never repeat a part of the string: a password with a comma in it would be
            // split, and its pieces would look like servers or options.
            var endpoints: [RedisEndpoint] = []
            for (index, part) in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }).enumerated() where !part.isEmpty {
                guard let equals = part.firstIndex(of: "=") else {
                    guard let endpoint = Self.endpoint(part) else {
                        fail("connectionString", "Part \(index + 1) of the connectionString is neither host:port nor an option (key=value).")
                        continue
                    }
                    endpoints.append(endpoint)
                    continue
                }
                let key = part[..<equals].lowercased(), value = String(part[part.index(after: equals)...])
                switch key {
                case "password": configuration.password = value
                case "user": configuration.user = value
                case "defaultdatabase":
                    guard let database = Int(value), database >= 0 else { fail("connectionString", "defaultDatabase must be a number of 0 or more."); continue }
                    configuration.databaseID = database
                case "connecttimeout", "synctimeout":
                    guard let milliseconds = Int(value), milliseconds > 0 else { fail("connectionString", "\(key == "connecttimeout" ? "connectTimeout" : "syncTimeout") must be a number of milliseconds."); continue }
                    if key == "connecttimeout" { configuration.connectionTimeout = .milliseconds(milliseconds) } else { configuration.operationTimeout = .milliseconds(milliseconds) }
                case "ssl":
                    if value.lowercased() == "true" {
                        fail("connectionString", "ssl=true is not available: the Redis client library SessionHost uses (Debian's hiredis 0.14) has no TLS.")
                    }
                case "abortconnect", "allowadmin", "name", "connectretry", "keepalive", "resolvedns":
                    break  // StackExchange.Redis's client behaviour; nothing to do for a blocking client
                default:
                    fail("connectionString", "Part \(index + 1) of the connectionString is an option that is not supported here (supported: host:port, password, user, defaultDatabase, connectTimeout, syncTimeout, ssl=false, and StackExchange.Redis's client options abortConnect, allowAdmin, name, connectRetry, keepAlive, resolveDns).")
                }
            }
            guard endpoints.count == 1, let endpoint = endpoints.first else {
                fail("connectionString", endpoints.isEmpty ? "The connectionString names no server (host:port)." : "The connectionString names \(endpoints.count) servers; SessionHost talks to one (a primary, or a proxy in front of a cluster).")
                return
            }
            configuration.endpoint = endpoint
        }

        static func endpoint(_ text: String) -> RedisEndpoint? {
            if text.hasPrefix("/") { return .unix(path: text) }
            if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
                let host = String(text[text.index(after: text.startIndex)..<close])
                let rest = text[text.index(after: close)...]
                guard rest.isEmpty || rest.hasPrefix(":"), let port = rest.isEmpty ? 6379 : Int(rest.dropFirst()), (1...65535).contains(port) else { return nil }
                return .tcp(host: host, port: port)
            }
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2, !parts[0].isEmpty else { return nil }
            guard parts.count == 2 else { return .tcp(host: String(parts[0]), port: 6379) }
            guard let port = Int(parts[1]), (1...65535).contains(port) else { return nil }
            return .tcp(host: String(parts[0]), port: port)
        }

        mutating func fail(_ attribute: String, _ message: String) {
            errors.append(SessionStoreSettingsError(attribute: attribute, message: message))
        }

        mutating func flag(_ name: String, default value: Bool) -> Bool {
            guard let text = parameters[name], !text.isEmpty else { return value }
            switch text.lowercased() {
            case "true": return true
            case "false": return false
            default:
                fail(name, "The value of the attribute '\(name)' must be 'true' or 'false'.")
                return value
            }
        }

        mutating func number(_ name: String, default value: Int, range: ClosedRange<Int>) -> Int {
            guard let text = parameters[name], !text.isEmpty else { return value }
            guard let number = Int(text), range.contains(number) else {
                fail(name, "The value of the attribute '\(name)' must be an integer from \(range.lowerBound) to \(range.upperBound).")
                return value
            }
            return number
        }

        /// 0 means the client library's default (5 s).
        mutating func milliseconds(_ name: String, default value: Int) -> Duration {
            let number = number(name, default: value, range: 0...Int(Int32.max))
            return .milliseconds(number == 0 ? value : number)
        }
    }
}

/// What is wrong with a Redis provider entry, attribute by attribute.
public struct RedisStoreConfigurationErrors: Error, Sendable {
    public var errors: [SessionStoreSettingsError]
}
