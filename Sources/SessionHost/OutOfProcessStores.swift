import Dispatch
import Foundation
import Locking
import Logging
import Synchronization
import SessionState
import WebConfiguration

/// The out-of-process ASP.NET stores of the host's applications: the app's store factories
/// (`SessionOptions.stores`, the registry), and one store with its `SessionDomain` per distinct
/// storage settings, created on first use. Each request picks its application's store from its
/// effective `<sessionState>`, so two applications may use different modes. After a
/// configuration change, requests use the store of the new settings; a store nobody has used
/// for `idleLifetime` is closed.
final class OutOfProcessStores: Sendable {
    private let factories: [SessionStoreFactory]
    private let resolvers: [SessionPartitionResolver]
    private let queueLimit: Int
    private let onEnd: (@Sendable (EndedSession) -> Void)?
    private let hasStartHandler: Bool
    private let logger: Logger
    private let stores = Locked<[SessionStoreSettings: Entry]>([:])
    /// The entry of each memoised configuration (by `EffectiveConfiguration.identity`), so that
    /// a request does not derive and hash its storage settings again; emptied whenever a store
    /// is closed, and when it grows past `cacheLimit`.
    private let byConfiguration = Locked<[ObjectIdentifier: Cached]>([:])
    static let cacheLimit = 1024
    /// How long an unused store is kept.
    static let idleLifetime: Duration = .seconds(300)

    private final class Entry: Sendable {
        let domain: SessionDomain
        /// `DispatchTime` nanoseconds of the last use (set without a lock by every request).
        let lastUsed: Atomic<UInt64>

        init(domain: SessionDomain, now: UInt64) {
            self.domain = domain
            lastUsed = Atomic(now)
        }

        func touch() { lastUsed.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed) }
    }

    private struct Cached {
        /// Kept alive so that its identity is not reused for other values.
        var configuration: any AnyObject & Sendable
        var entry: Entry
    }

    /// `onEnd`: the app's ASP.NET Session_End, for stores that raise it (the SQL store with
    /// Session_End on). `hasStartHandler`: the app has a Session_Start, so new sessions are kept
    /// (as with InProc).
    init(
        factories: [SessionStoreFactory], resolvers: [SessionPartitionResolver] = [], queueLimit: Int, hasStartHandler: Bool = false,
        onEnd: (@Sendable (EndedSession) -> Void)? = nil, logger: Logger
    ) {
        self.onEnd = onEnd
        self.hasStartHandler = hasStartHandler
        self.factories = factories
        self.resolvers = resolvers
        self.queueLimit = queueLimit
        self.logger = logger
    }

    /// The domain (and store) of `configuration`'s application; creates the store on first use.
    func domain(for configuration: EffectiveConfiguration) throws(SessionStoreError) -> SessionDomain {
        let identity = ObjectIdentifier(configuration.identity)
        if let entry = byConfiguration.withLock({ $0[identity]?.entry }) {
            entry.touch()
            return entry.domain
        }
        let settings = Self.settings(configuration)
        if let entry = stores.withLock({ $0[settings] }) {
            entry.touch()
            remember(configuration, settings, entry)
            return entry.domain
        }
        guard let factory = factory(for: settings) else {
            // Configuration validation reports this with file and line; a request that gets
            // here anyway fails clearly.
            throw SessionStoreError(.configuration, Self.unavailableMessage(settings, available: availableModes))
        }
        let store: any SessionStateStore
        if settings.partitionResolverType.isEmpty {
            store = try factory.make(settings, logger)
        } else if let resolver = resolvers.first(where: { $0.typeName == settings.partitionResolverType }) {
            store = PartitionedSessionStore(resolver: resolver, factory: factory, settings: settings, logger: logger)
        } else {
            throw SessionStoreError(.configuration, "The partition resolver type '\(settings.partitionResolverType)' is not registered with this app (SessionOptions.partitionResolvers).")
        }
        let domain = SessionDomain(name: "ASP.NET", store: store, queueLimit: queueLimit, hasStartHandler: hasStartHandler, onEnd: onEnd, logger: logger)
        let kept = stores.withLock { stores -> Entry in
            // Another thread may have made one meanwhile: keep the first.
            if let existing = stores[settings] { return existing }
            let entry = Entry(domain: domain, now: DispatchTime.now().uptimeNanoseconds)
            stores[settings] = entry
            return entry
        }
        if kept.domain !== domain {
            (store as? any ClosableSessionStateStore)?.close()
        } else {
            logger.info("session-state store opened", metadata: ["mode": "\(settings.mode.rawValue)", "provider": "\(settings.providerType)"])
        }
        remember(configuration, settings, kept)
        return kept.domain
    }

    /// Caches `entry` for `configuration` if it is still the store of `settings`: checked under
    /// the cache's lock, so a `closeIdle` that removed it meanwhile (and then empties the cache)
    /// cannot leave a closed store cached.
    private func remember(_ configuration: EffectiveConfiguration, _ settings: SessionStoreSettings, _ entry: Entry) {
        byConfiguration.withLock { cache in
            guard stores.withLock({ $0[settings] === entry }) else { return }
            if cache.count >= Self.cacheLimit { cache.removeAll() }
            cache[ObjectIdentifier(configuration.identity)] = Cached(configuration: configuration.identity, entry: entry)
        }
    }

    /// The stores open now, for the status page.
    func statuses() -> [HostStatus.SessionStore] {
        let each = stores.withLock { $0.map { settings, entry in SessionManager.status(of: entry.domain, domain: "ASP.NET", mode: settings.mode.rawValue) } }
        var merged: [HostStatus.SessionStore] = []
        for status in each {
            if let index = merged.firstIndex(where: { $0.isSameStore(status) }) { merged[index].add(status) } else { merged.append(status) }
        }
        return merged.sorted { ($0.mode, $0.store) < ($1.mode, $1.store) }
    }

    /// Closes the stores nobody used for `idleLifetime` (settings that a configuration change
    /// left behind).
    func closeIdle(now: UInt64 = DispatchTime.now().uptimeNanoseconds) {
        let limit = UInt64(Self.idleLifetime.components.seconds) * 1_000_000_000
        let idle = stores.withLock { stores -> [SessionDomain] in
            // A request may touch an entry after `now` was read: that entry is not idle.
            let old = stores.filter { entry in
                let last = entry.value.lastUsed.load(ordering: .relaxed)
                return now > last && now - last > limit
            }
            for key in old.keys { stores[key] = nil }
            return old.values.map(\.domain)
        }
        guard !idle.isEmpty else { return }
        byConfiguration.withLock { $0.removeAll() }
        for domain in idle {
            (domain.store as? any ClosableSessionStateStore)?.close()
            logger.info("closed an unused session-state store")
        }
    }

    /// Offers the stores in use their periodic work (deleting expired sessions from a database).
    func maintain() {
        let stores = stores.withLock { $0.values.map(\.domain.store) }
        for store in stores { (store as? any MaintainedSessionStateStore)?.performMaintenance() }
    }

    /// Closes every store (shutdown).
    func closeAll() {
        let all = stores.withLock { stores -> [SessionDomain] in
            defer { stores = [:] }
            return stores.values.map(\.domain)
        }
        byConfiguration.withLock { $0.removeAll() }
        for domain in all { (domain.store as? any ClosableSessionStateStore)?.close() }
    }

    private var availableModes: [String] {
        ["Off", "InProc"] + factories.map { $0.mode == .custom ? "Custom (\($0.providerTypes.joined(separator: ", ")))" : $0.mode.rawValue }
    }

    private func factory(for settings: SessionStoreSettings) -> SessionStoreFactory? {
        if settings.mode == .custom {
            return factories.first { $0.mode == .custom && $0.providerTypes.contains(settings.providerType) }
        }
        return factories.first { $0.mode == settings.mode }
    }

    // MARK: Settings

    /// The storage settings of `configuration` (a connection string given by the name of a
    /// `<connectionStrings>` entry was already replaced by the configuration reader).
    static func settings(_ configuration: EffectiveConfiguration) -> SessionStoreSettings {
        let section = configuration.sessionState
        let mode = SessionManager.sessionMode(section.mode)
        var settings = SessionStoreSettings(mode: mode, compressionEnabled: section.compressionEnabled, partitionResolverType: section.partitionResolverType)
        switch mode {
        case .stateServer:
            settings.connectionString = section.stateConnectionString
            settings.timeout = section.stateNetworkTimeout.duration ?? .seconds(10)
        case .sqlServer:
            settings.connectionString = section.sqlConnectionString
            settings.timeout = section.sqlCommandTimeout.duration ?? .seconds(30)
            settings.retryInterval = section.sqlConnectionRetryInterval.duration ?? .zero
            settings.allowCustomDatabase = section.allowCustomSqlDatabase
        case .custom:
            if let provider = section.providers.first(where: { $0.name.lowercased() == section.customProvider.lowercased() }) {
                settings.providerType = provider.type
                settings.parameters = provider.parameters.merging(["name": provider.name]) { current, _ in current }
                // A connectionString that names a <connectionStrings> entry means its value
                // (as Microsoft's Redis provider reads it).
                if let named = settings.parameters["connectionString"],
                   let entry = configuration.connectionStrings.first(where: { $0.name.caseInsensitiveCompare(named) == .orderedSame }) {
                    settings.parameters["connectionString"] = entry.connectionString
                }
            }
            settings.executionTimeout = configuration.executionTimeout
        case .off, .inProc:
            break
        }
        return settings
    }

    // MARK: Validation

    /// The configuration errors of `configuration`'s storage settings, with file and line: a
    /// mode or provider type the app has no store for, and what that store's factory finds
    /// wrong. `Off` and `InProc` need nothing.
    func validate(_ configuration: EffectiveConfiguration) -> [ConfigurationError] {
        let section = configuration.sessionState
        guard section.mode != .off, section.mode != .inProc else { return [] }
        func located(_ attribute: String, _ message: String) -> ConfigurationError {
            let location = configuration.sources["system.web/sessionState/\(attribute)"]
                ?? configuration.sources["system.web/sessionState/mode"]
                ?? SourceLocation(file: "(default)", line: 1)
            return ConfigurationError(message, at: location, attribute: attribute)
        }
        let settings = Self.settings(configuration)
        if section.mode == .custom {
            if section.customProvider.isEmpty {
                return [located("customProvider", "The custom session state store provider name '' is invalid.")]
            }
            if settings.providerType.isEmpty {
                return [located("customProvider", "The custom session state store provider '\(section.customProvider)' is not found.")]
            }
        }
        guard let factory = factory(for: settings) else {
            let attribute = section.mode == .custom ? "customProvider" : "mode"
            return [located(attribute, Self.unavailableMessage(settings, available: availableModes))]
        }
        if !section.partitionResolverType.isEmpty {
            guard section.mode == .stateServer || section.mode == .sqlServer else {
                return [located("partitionResolverType", "Cannot use 'partitionResolver' unless the mode is 'StateServer' or 'SQLServer'.")]
            }
            guard resolvers.contains(where: { $0.typeName == section.partitionResolverType }) else {
                return [located("partitionResolverType", "The partition resolver type '\(section.partitionResolverType)' is not registered with this app (SessionOptions.partitionResolvers).")]
            }
            // The connection string is ignored then (ASP.NET): each one the resolver returns is
            // checked when it is first used.
            return factory.validate(settings).filter { $0.attribute != "stateConnectionString" && $0.attribute != "sqlConnectionString" }
                .map { located($0.attribute, $0.message) }
        }
        if section.mode == .custom {
            // A provider's attributes are reported at its <add> entry.
            let name = settings.parameters["name"] ?? section.customProvider
            let entry = configuration.sources["system.web/sessionState/providers/\(name)"]
                ?? configuration.sources.first { $0.key.lowercased() == "system.web/sessionstate/providers/\(name.lowercased())" }?.value
            return factory.validate(settings).map { error in
                entry.map { ConfigurationError(error.message, at: $0, attribute: error.attribute) } ?? located("customProvider", error.message)
            }
        }
        return factory.validate(settings).map { located($0.attribute, $0.message) }
    }

    static func unavailableMessage(_ settings: SessionStoreSettings, available: [String]) -> String {
        let list = available.joined(separator: ", ")
        if settings.mode == .custom {
            return "The custom session state store provider type '\(settings.providerType)' cannot be loaded: the app registers no store under that type name (SessionOptions.stores; it has \(list))."
        }
        return "The session-state mode '\(settings.mode.rawValue)' is not available in this app: it links no store for it (SessionOptions.stores; it has \(list))."
    }
}
