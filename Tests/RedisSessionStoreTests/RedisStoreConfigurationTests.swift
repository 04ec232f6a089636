import SessionState
import Testing
@testable import RedisSessionStore

/// The Redis provider's attributes, as Microsoft's provider names them, and what is refused.
struct RedisStoreConfigurationTests {
    static func parse(_ parameters: [String: String]) -> Result<RedisStoreConfiguration, RedisStoreConfigurationErrors> {
        RedisStoreConfiguration.parse(SessionStoreSettings(mode: .custom, providerType: "Microsoft.Web.Redis.RedisSessionStateProvider",
                                                           parameters: parameters.merging(["name": "MySessionStateStore"]) { a, _ in a },
                                                           executionTimeout: .seconds(45)))
    }

    static func errors(_ parameters: [String: String]) -> [String] {
        if case .failure(let failure) = parse(parameters) { return failure.errors.map { "\($0.attribute): \($0.message)" } }
        return []
    }

    @Test func microsoftsAttributesAndDefaults() throws {
        let defaults = try Self.parse([:]).get()
        #expect(defaults.endpoint == .tcp(host: "127.0.0.1", port: 6379))
        #expect(defaults.throwOnError && defaults.databaseID == 0 && defaults.password == nil && defaults.applicationName == nil)
        #expect(defaults.operationTimeout == .seconds(5) && defaults.connectionTimeout == .seconds(5) && defaults.retryTimeout == .seconds(5))
        #expect(defaults.lockTimeout == .seconds(45))
        let set = try Self.parse([
            "host": "cache.local", "port": "6380", "accessKey": "pw", "ssl": "false", "databaseId": "2", "applicationName": "Shop",
            "connectionTimeoutInMilliseconds": "1500", "operationTimeoutInMilliseconds": "700", "retryTimeoutInMilliseconds": "0",
            "throwOnError": "false", "description": "sessions",
        ]).get()
        #expect(set.endpoint == .tcp(host: "cache.local", port: 6380))
        #expect(set.password == "pw" && set.databaseID == 2 && set.applicationName == "Shop" && !set.throwOnError)
        #expect(set.connectionTimeout == .milliseconds(1500) && set.operationTimeout == .milliseconds(700) && set.retryTimeout == .zero)
        #expect(try Self.parse(["host": "/run/redis/redis.sock"]).get().endpoint == .unix(path: "/run/redis/redis.sock"))
    }

    @Test func stackExchangeConnectionStrings() throws {
        let parsed = try Self.parse(["connectionString": "cache:6390,password=pw,user=web,defaultDatabase=4,connectTimeout=900,syncTimeout=300,abortConnect=False,ssl=False"]).get()
        #expect(parsed.endpoint == .tcp(host: "cache", port: 6390))
        #expect(parsed.password == "pw" && parsed.user == "web" && parsed.databaseID == 4)
        #expect(parsed.connectionTimeout == .milliseconds(900) && parsed.operationTimeout == .milliseconds(300))
        #expect(try Self.parse(["connectionString": "[::1]:7000"]).get().endpoint == .tcp(host: "::1", port: 7000))
        #expect(Self.errors(["connectionString": "a:1,b:2"]).first?.contains("names 2 servers") == true)
        #expect(Self.errors(["connectionString": "a:1,tiebreaker=x"]).first?.contains("Part 2 of the connectionString is an option that is not supported") == true)
        // A password with a comma is split; no piece of it is repeated.
        let split = Self.errors(["connectionString": "a:1,password=qu1x,zz7=k9q,x:y:z"]).joined()
        #expect(!split.isEmpty && !split.contains("zz7") && !split.contains("k9q") && !split.contains("x:y"), "\(split)")
        #expect(Self.errors(["connectionString": "a:1,ssl=true,password=hunter2"]).first?.contains("no TLS") == true)
        #expect(!Self.errors(["connectionString": "a:1,ssl=true,password=hunter2"]).joined().contains("hunter2"))
    }

    @Test func whatIsRefused() {
        #expect(Self.errors(["Host": "x"]) == ["Host: Unrecognized attribute 'Host'. Note that attribute names are case-sensitive."])
        #expect(Self.errors(["ssl": "true"]).first?.hasPrefix("ssl: ssl=\"true\" is not available") == true)
        #expect(Self.errors(["ssl": "maybe"]) == ["ssl: The value of the attribute 'ssl' must be 'true' or 'false'."])
        #expect(Self.errors(["port": "70000"]) == ["port: The value of the attribute 'port' must be an integer from 0 to 65535."])
        #expect(Self.errors(["databaseId": "-1"]).count == 1)
        #expect(Self.errors(["redisSerializerType": "My.Serializer"]).first?.contains("names .NET code") == true)
        #expect(Self.errors(["loggingClassName": "A", "loggingMethodName": "B"]).count == 2)
    }
}
