/// A length of time as configured: a number of seconds, or `Infinite`.
public enum ConfiguredTime: Sendable, Hashable {
    case seconds(Int64)
    case infinite

    public var duration: Duration? {
        if case .seconds(let seconds) = self { return .seconds(seconds) }
        return nil
    }
}

/// Classic ASP session settings: `system.webServer/asp/session`.
public struct ASPSessionSettings: Sendable, Hashable {
    public var allowSessionState: Bool
    /// Mark the cookie `Secure` when the session ID is assigned over HTTPS.
    public var keepSessionIdSecure: Bool
    /// Most concurrent sessions; 4294967295 is unlimited.
    public var max: UInt32
    /// Whole minutes, 0…365 days.
    public var timeoutSeconds: Int64
}

/// `system.web/sessionState/@mode`.
public enum SessionStateMode: String, Sendable, Hashable {
    case off = "Off", inProc = "InProc", stateServer = "StateServer", sqlServer = "SQLServer", custom = "Custom"
}

/// `system.web/sessionState/@cookieless` (HttpCookieMode; `true` is UseUri, `false` UseCookies).
public enum CookieMode: String, Sendable, Hashable {
    case useUri = "UseUri", useCookies = "UseCookies", autoDetect = "AutoDetect", useDeviceProfile = "UseDeviceProfile"
}

/// A cookie's SameSite attribute; `unspecified` writes none.
public enum SameSiteMode: String, Sendable, Hashable {
    case none = "None", lax = "Lax", strict = "Strict", unspecified = "Unspecified"
}

/// `system.web/pages/@enableSessionState`: the per-directory ASP.NET session switch.
public enum EnableSessionState: String, Sendable, Hashable {
    case `true` = "true", `false` = "false", readOnly = "ReadOnly"
}

/// An `<add>` of `<sessionState><providers>`.
public struct ProviderSettings: Sendable, Hashable {
    public var name: String
    public var type: String
    /// Every other attribute, passed to the provider.
    public var parameters: [String: String]
}

/// An `<add>` of `<connectionStrings>`.
public struct ConnectionStringSettings: Sendable, Hashable {
    public var name: String
    public var connectionString: String
    public var providerName: String
}

/// ASP.NET session settings: `system.web/sessionState`.
public struct SessionStateSettings: Sendable, Hashable {
    public var mode: SessionStateMode
    /// Minutes (as seconds) or infinite.
    public var timeout: ConfiguredTime
    public var cookieName: String
    public var cookieless: CookieMode
    public var cookieSameSite: SameSiteMode
    public var regenerateExpiredSessionId: Bool
    /// With a `<connectionStrings>` name replaced by its value.
    public var sqlConnectionString: String
    public var sqlCommandTimeout: ConfiguredTime
    public var sqlConnectionRetryInterval: ConfiguredTime
    public var allowCustomSqlDatabase: Bool
    public var useHostingIdentity: Bool
    /// With a `<connectionStrings>` name replaced by its value.
    public var stateConnectionString: String
    public var stateNetworkTimeout: ConfiguredTime
    public var customProvider: String
    public var partitionResolverType: String
    public var sessionIDManagerType: String
    public var compressionEnabled: Bool
    public var providers: [ProviderSettings]
}

/// `system.web/httpCookies`: defaults for every cookie ASP.NET writes.
public struct HTTPCookiesSettings: Sendable, Hashable {
    public var httpOnlyCookies: Bool
    public var requireSSL: Bool
    public var domain: String
    public var sameSite: SameSiteMode
}

/// The effective session configuration of one URL.
///
/// The values live in one shared, immutable box, so that a memoised configuration is handed to
/// each request with one reference-count operation rather than one per string and array inside
/// it (which, on a busy worker, all threads would be incrementing at once).
public struct EffectiveConfiguration: Sendable, Hashable {
    public var site: Site {
        get { box.values.site }
        set { change { $0.site = newValue } }
    }
    /// The application that serves the URL.
    public var application: Application {
        get { box.values.application }
        set { change { $0.application = newValue } }
    }
    /// The normalised URL path.
    public var path: String {
        get { box.values.path }
        set { change { $0.path = newValue } }
    }
    public var asp: ASPSessionSettings {
        get { box.values.asp }
        set { change { $0.asp = newValue } }
    }
    public var sessionState: SessionStateSettings {
        get { box.values.sessionState }
        set { change { $0.sessionState = newValue } }
    }
    public var enableSessionState: EnableSessionState {
        get { box.values.enableSessionState }
        set { change { $0.enableSessionState = newValue } }
    }
    public var httpCookies: HTTPCookiesSettings {
        get { box.values.httpCookies }
        set { change { $0.httpCookies = newValue } }
    }
    /// `system.web/httpRuntime/@executionTimeout` (the age after which a session lock is stale).
    public var executionTimeout: Duration {
        get { box.values.executionTimeout }
        set { change { $0.executionTimeout = newValue } }
    }
    public var connectionStrings: [ConnectionStringSettings] {
        get { box.values.connectionStrings }
        set { change { $0.connectionStrings = newValue } }
    }
    /// Where each value was set, keyed `section/attribute` (e.g. `system.web/sessionState/mode`,
    /// `system.webServer/asp/session/timeout`, `system.web/sessionState/providers/NAME`); values
    /// not listed are defaults.
    public var sources: [String: SourceLocation] {
        get { box.values.sectionSources.reduce(into: [:]) { $0.merge($1) { _, later in later } } }
        set { change { $0.sectionSources = [newValue] } }
    }

    public init(
        site: Site, application: Application, path: String, asp: ASPSessionSettings, sessionState: SessionStateSettings,
        enableSessionState: EnableSessionState, httpCookies: HTTPCookiesSettings, executionTimeout: Duration,
        connectionStrings: [ConnectionStringSettings], sources: [String: SourceLocation]
    ) {
        self.init(
            site: site, application: application, path: path, asp: asp, sessionState: sessionState,
            enableSessionState: enableSessionState, httpCookies: httpCookies, executionTimeout: executionTimeout,
            connectionStrings: connectionStrings, sectionSources: [sources])
    }

    /// With the sources kept per section, as merged: the store shares them between URLs and
    /// merges them only when `sources` is read.
    init(
        site: Site, application: Application, path: String, asp: ASPSessionSettings, sessionState: SessionStateSettings,
        enableSessionState: EnableSessionState, httpCookies: HTTPCookiesSettings, executionTimeout: Duration,
        connectionStrings: [ConnectionStringSettings], sectionSources: [[String: SourceLocation]]
    ) {
        box = Box(Values(
            site: site, application: application, path: path, asp: asp, sessionState: sessionState,
            enableSessionState: enableSessionState, httpCookies: httpCookies, executionTimeout: executionTimeout,
            connectionStrings: connectionStrings, sectionSources: sectionSources))
    }

    private struct Values: Sendable, Hashable {
        var site: Site
        var application: Application
        var path: String
        var asp: ASPSessionSettings
        var sessionState: SessionStateSettings
        var enableSessionState: EnableSessionState
        var httpCookies: HTTPCookiesSettings
        var executionTimeout: Duration
        var connectionStrings: [ConnectionStringSettings]
        var sectionSources: [[String: SourceLocation]]
    }

    private final class Box: Sendable {
        let values: Values

        init(_ values: Values) {
            self.values = values
        }
    }

    private var box: Box

    /// The shared storage of these values: the same object for every request of a memoised URL
    /// (until a change or a reload), so a consumer may cache what it derives from them under it
    /// (keeping the object alive, so its identity is not reused).
    package var identity: any AnyObject & Sendable { box }

    private mutating func change(_ body: (inout Values) -> Void) {
        var values = box.values
        body(&values)
        box = Box(values)
    }

    public static func == (lhs: EffectiveConfiguration, rhs: EffectiveConfiguration) -> Bool {
        lhs.box === rhs.box || lhs.box.values == rhs.box.values
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(box.values)
    }
}
