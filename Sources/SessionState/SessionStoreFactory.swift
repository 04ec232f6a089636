public import Logging

/// What an out-of-process store is built from: the storage settings of an application's
/// effective `<sessionState>`, with a named connection string already looked up in
/// `<connectionStrings>`. Two applications with equal settings share one store.
public struct SessionStoreSettings: Sendable, Hashable {
    /// `mode`.
    public var mode: ASPNETSessionMode
    /// The connection string of the mode: `stateConnectionString` (StateServer) or
    /// `sqlConnectionString` (SQLServer); empty for Custom.
    public var connectionString: String
    /// `stateNetworkTimeout` (StateServer) or `sqlCommandTimeout` (SQLServer).
    public var timeout: Duration
    /// `sqlConnectionRetryInterval` (SQLServer).
    public var retryInterval: Duration
    /// `allowCustomSqlDatabase` (SQLServer).
    public var allowCustomDatabase: Bool
    /// `compressionEnabled`.
    public var compressionEnabled: Bool
    /// Custom mode: the `type` of the provider `customProvider` names.
    public var providerType: String
    /// Custom mode: that provider's other attributes (its name included, under `name`).
    public var parameters: [String: String]
    /// `partitionResolverType`; empty when none.
    public var partitionResolverType: String
    /// `<httpRuntime executionTimeout>` (Custom mode): how long a request may hold a session's
    /// lock, for stores that expire locks themselves (the Redis store's lock key).
    public var executionTimeout: Duration

    public init(
        mode: ASPNETSessionMode, connectionString: String = "", timeout: Duration = .seconds(10), retryInterval: Duration = .zero,
        allowCustomDatabase: Bool = false, compressionEnabled: Bool = false, providerType: String = "", parameters: [String: String] = [:],
        partitionResolverType: String = "", executionTimeout: Duration = .seconds(110)
    ) {
        self.executionTimeout = executionTimeout
        self.mode = mode
        self.connectionString = connectionString
        self.timeout = timeout
        self.retryInterval = retryInterval
        self.allowCustomDatabase = allowCustomDatabase
        self.compressionEnabled = compressionEnabled
        self.providerType = providerType
        self.parameters = parameters
        self.partitionResolverType = partitionResolverType
    }
}

/// A setting a store cannot work with, named by its `<sessionState>` attribute (or a
/// provider's attribute) so that the host can report the file and line it came from.
public struct SessionStoreSettingsError: Error, Sendable, Hashable {
    /// `stateConnectionString`, `sqlConnectionString`, `customProvider`, or a provider attribute.
    public var attribute: String
    /// ASP.NET's wording where it has one.
    public var message: String

    public init(attribute: String, message: String) {
        self.attribute = attribute
        self.message = message
    }
}

/// How an app makes one kind of store: for a `mode` (StateServer, SQLServer) or, in Custom
/// mode, for provider `type` names. Swift cannot load a type from its name, so the app lists
/// the factories it links (`SessionOptions.stores`); a mode or type no factory serves is a
/// configuration error.
public struct SessionStoreFactory: Sendable {
    /// The mode it serves; `.custom` for provider types.
    public var mode: ASPNETSessionMode
    /// Custom mode: the provider `type` names it answers to (e.g. a .NET type name, so that
    /// an existing web.config works unchanged).
    public var providerTypes: [String]
    /// Checks settings without connecting (configuration time: `config check`, startup, 500.19).
    public var validate: @Sendable (SessionStoreSettings) -> [SessionStoreSettingsError]
    /// Builds the store; called once per distinct settings, on first use.
    public var make: @Sendable (SessionStoreSettings, Logger) throws(SessionStoreError) -> any SessionStateStore

    public init(
        mode: ASPNETSessionMode, providerTypes: [String] = [],
        validate: @escaping @Sendable (SessionStoreSettings) -> [SessionStoreSettingsError] = { _ in [] },
        make: @escaping @Sendable (SessionStoreSettings, Logger) throws(SessionStoreError) -> any SessionStateStore
    ) {
        self.mode = mode
        self.providerTypes = providerTypes
        self.validate = validate
        self.make = make
    }
}

/// A store that holds connections or other resources to give back when it is no longer used
/// (after a configuration change replaced it, or at shutdown).
public protocol ClosableSessionStateStore: SessionStateStore {
    func close()
}

/// `partitionResolverType` (ASP.NET's `IPartitionResolver`): picks the connection string of a
/// session's store from its session ID, so that sessions spread over several state servers or
/// databases. Registered by type name in `SessionOptions.partitionResolvers`; a web.config that
/// names a type nobody registered is a configuration error.
public struct SessionPartitionResolver: Sendable {
    /// The name `partitionResolverType` gives (e.g. the .NET type name of an existing web.config).
    public var typeName: String
    /// The connection string (`tcpip=host:port` for StateServer) for a session ID; nil is an
    /// error, as in ASP.NET.
    public var resolve: @Sendable (_ sessionID: String) -> String?

    public init(typeName: String, resolve: @escaping @Sendable (_ sessionID: String) -> String?) {
        self.typeName = typeName
        self.resolve = resolve
    }
}

/// A store with periodic work of its own (deleting expired sessions from a database, raising
/// Session_End for them), which the host's maintenance service offers it every
/// `SessionOptions.expiryCheckInterval`. The store decides how often it really works, and does
/// slow work on a thread of its own: the caller must not wait for it.
public protocol MaintainedSessionStateStore: SessionStateStore {
    func performMaintenance()
}
