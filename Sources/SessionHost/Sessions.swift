import Foundation
public import SessionState
import HTTPTypes
import Logging
package import WebConfiguration

/// The app's session hooks and the knobs of the session pipeline.
public struct SessionOptions: Sendable {
    /// Session_Start of the ASP.NET domain: runs when a session starts, before the handler, and
    /// may store values. Its presence makes every new session be kept, as in ASP.NET, where a `Session_Start` handler keeps a session that stores nothing (README, Sessions).
    public var onASPNETSessionStart: (@Sendable (ASPNETSession) -> Void)?
    /// Session_End of the ASP.NET domain: on expiry and on Abandon, with no request. InProc
    /// raises it; so does SQLServer when the app registers
    /// `SQLSessionStateStore.factory(raisesSessionEnd: true)` (the worker that deletes expired
    /// sessions raises it, once per session across the farm). Other modes cannot (as ASP.NET).
    public var onASPNETSessionEnd: (@Sendable (EndedSession) -> Void)?
    /// Session_OnStart of classic ASP.
    public var onClassicSessionStart: (@Sendable (ClassicASPSession) -> Void)?
    /// Session_OnEnd of classic ASP.
    public var onClassicSessionEnd: (@Sendable (EndedSession) -> Void)?
    /// Requests that may wait for one session's lock at once (ASP.NET's
    /// `aspnet:RequestQueueLimitPerSession`); more are refused with 503.
    public var queueLimitPerSession: Int
    /// The time expiry and lock age are measured with; tests inject a manual clock.
    public var clock: any SessionClock
    /// How often expired in-process sessions are ended (and Session_End raised).
    public var expiryCheckInterval: Duration
    /// The out-of-process stores the app links, for `mode="StateServer"`, `"SQLServer"` and
    /// `"Custom"` (e.g. `StateServerSessionStore.factory`). InProc and Off need none; a mode or
    /// provider type no factory serves is a configuration error (500.19, `config check`).
    public var stores: [SessionStoreFactory]
    /// The partition resolvers `partitionResolverType` may name (ASP.NET's
    /// `IPartitionResolver`), by type name.
    public var partitionResolvers: [SessionPartitionResolver]
    /// The session ID managers `sessionIDManagerType` may name (ASP.NET's `ISessionIDManager`),
    /// by type name; without one the built-in `SessionIDManager.builtIn` is used.
    public var idManagers: [SessionIDManager]

    public init(
        onASPNETSessionStart: (@Sendable (ASPNETSession) -> Void)? = nil, onASPNETSessionEnd: (@Sendable (EndedSession) -> Void)? = nil,
        onClassicSessionStart: (@Sendable (ClassicASPSession) -> Void)? = nil, onClassicSessionEnd: (@Sendable (EndedSession) -> Void)? = nil,
        queueLimitPerSession: Int = 50, clock: any SessionClock = SystemSessionClock(), expiryCheckInterval: Duration = .seconds(1),
        stores: [SessionStoreFactory] = [], partitionResolvers: [SessionPartitionResolver] = [], idManagers: [SessionIDManager] = []
    ) {
        self.idManagers = idManagers
        self.stores = stores
        self.partitionResolvers = partitionResolvers
        self.onASPNETSessionStart = onASPNETSessionStart
        self.onASPNETSessionEnd = onASPNETSessionEnd
        self.onClassicSessionStart = onClassicSessionStart
        self.onClassicSessionEnd = onClassicSessionEnd
        self.queueLimitPerSession = queueLimitPerSession
        self.clock = clock
        self.expiryCheckInterval = expiryCheckInterval
    }
}

/// Both session domains of the host: the HTTP half of the pipeline (IDs in cookies or URLs,
/// redirects, cookies) around `SessionDomain`, which does the store work.
package final class SessionManager: Sendable {
    let options: SessionOptions
    /// The store of ASP.NET `mode="InProc"`.
    let aspNetStore: InProcSessionStore
    /// Classic ASP: always in process (as in IIS), a store of its own.
    let aspStore: InProcSessionStore
    /// ASP.NET `mode="InProc"`.
    let aspNet: SessionDomain
    let asp: SessionDomain
    /// The out-of-process stores in use, one domain per distinct settings.
    let outOfProcess: OutOfProcessStores
    private let logger: Logger

    init(options: SessionOptions, logger: Logger) {
        self.options = options
        self.logger = logger
        outOfProcess = OutOfProcessStores(
            factories: options.stores, resolvers: options.partitionResolvers, queueLimit: options.queueLimitPerSession,
            hasStartHandler: options.onASPNETSessionStart != nil, onEnd: options.onASPNETSessionEnd, logger: logger)
        aspNetStore = InProcSessionStore(clock: options.clock)
        aspStore = InProcSessionStore(clock: options.clock)
        aspNet = SessionDomain(
            name: "ASP.NET", store: aspNetStore, queueLimit: options.queueLimitPerSession,
            hasStartHandler: options.onASPNETSessionStart != nil, onEnd: options.onASPNETSessionEnd, logger: logger)
        asp = SessionDomain(
            name: "ASP", store: aspStore, queueLimit: options.queueLimitPerSession,
            hasStartHandler: options.onClassicSessionStart != nil, onEnd: options.onClassicSessionEnd, logger: logger)
    }

    /// Every domain's store and counters: InProc of both domains, then the out-of-process stores.
    func statuses() -> [HostStatus.SessionStore] {
        [Self.status(of: aspNet, domain: "ASP.NET", mode: "InProc"), Self.status(of: asp, domain: "classic ASP", mode: "InProc")]
            + outOfProcess.statuses()
    }

    static func status(of sessionDomain: SessionDomain, domain: String, mode: String) -> HostStatus.SessionStore {
        let counted = sessionDomain.counters.snapshot
        return HostStatus.SessionStore(
            domain: domain, mode: mode, store: sessionDomain.store.statusLocation, liveSessions: sessionDomain.store.liveSessionCount,
            lockWaits: counted.lockWaits, lockWaitSeconds: counted.lockWaitSeconds, queueLimitRefusals: counted.queueLimitRefusals,
            staleLocksBroken: counted.staleLocksBroken, storeCalls: counted.storeCalls, storeErrors: counted.storeErrors,
            storeSeconds: counted.storeSeconds)
    }

    /// Ends expired in-process sessions of both domains, and closes out-of-process stores that a
    /// configuration change left unused.
    func removeExpired() {
        aspNetStore.removeExpiredItems()
        aspStore.removeExpiredItems()
        outOfProcess.maintain()
        outOfProcess.closeIdle()
    }

    /// The check of an application's storage settings, for the configuration store (every
    /// web.config at startup, `config check`, the 500.19 page).
    package static func storageValidator(
        stores: [SessionStoreFactory], resolvers: [SessionPartitionResolver] = [], idManagers: [SessionIDManager] = []
    ) -> @Sendable (EffectiveConfiguration) -> [ConfigurationError] {
        let registry = OutOfProcessStores(factories: stores, resolvers: resolvers, queueLimit: 1, logger: Logger(label: "sessionhost.validation"))
        let managers = idManagers
        return { registry.validate($0) + cookieSettingsErrors($0) + idManagerErrors($0, managers: managers) }
    }

    /// Every configuration file of every site under `directory`, checked with `options`'
    /// stores, partition resolvers and ID managers (`config check`, `check-config`).
    package static func checkConfiguration(directory: String, options: SessionOptions) -> [ConfigurationError] {
        let validate = storageValidator(stores: options.stores, resolvers: options.partitionResolvers, idManagers: options.idManagers)
        return ConfigurationStore(directory: directory, logger: Logger(label: "config") { _ in SwiftLogNoOpLogHandler() }, validate: validate).check()
    }

    /// `sessionIDManagerType` names a manager the app registered (or nothing: the built-in one).
    static func idManagerErrors(_ configuration: EffectiveConfiguration, managers: [SessionIDManager]) -> [ConfigurationError] {
        let type = configuration.sessionState.sessionIDManagerType
        guard configuration.sessionState.mode != .off, !type.isEmpty, idManager(named: type, in: managers) == nil else { return [] }
        let location = configuration.sources["system.web/sessionState/sessionIDManagerType"] ?? SourceLocation(file: "(default)", line: 1)
        return [ConfigurationError(
            "The session ID manager type '\(type)' cannot be loaded: the app registers no ID manager under that type name (SessionOptions.idManagers).",
            at: location, attribute: "sessionIDManagerType")]
    }

    /// The manager `type` names: empty is the built-in one; a .NET assembly-qualified name
    /// (`Type, Assembly, …`) is matched by its type part.
    static func idManager(named type: String, in managers: [SessionIDManager]) -> SessionIDManager? {
        let name = type.split(separator: ",", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        if name.isEmpty || name == SessionIDManager.builtIn.typeName { return .builtIn }
        return managers.first { $0.typeName == name }
    }

    /// One domain's session held by a request.
    struct Held {
        var domain: SessionDomain
        var key: SessionKey
        var contents: SessionContents
        var lockID: LockID?
        var storeHadItem: Bool
        var exclusive: Bool
        /// The cookie announcing a new ID; sent only if the session is kept.
        var cookie: Cookie?
        /// The store failed and fails open: this session is never written back.
        var detached = false

        init(domain: SessionDomain, key: SessionKey, contents: SessionContents, lockID: LockID?, storeHadItem: Bool, exclusive: Bool, detached: Bool = false) {
            self.domain = domain
            self.key = key
            self.contents = contents
            self.lockID = lockID
            self.storeHadItem = storeHadItem
            self.exclusive = exclusive
            self.detached = detached
        }
    }

    struct Ticket {
        var aspNet: Held?
        var asp: Held?
    }

    enum Outcome {
        case proceed(Ticket)
        /// Answer with this instead of running the handler (a redirect, or an error).
        case respond(Response)
    }

    /// ASP.NET's application id (`HttpRuntime.AppDomainAppId`): `/LM/W3SVC/<site id>/ROOT` and
    /// the application's path, so that an ASP.NET app of the same site id and path finds the same
    /// sessions in a shared store.
    static func applicationKey(_ configuration: EffectiveConfiguration) -> String {
        let path = configuration.application.path
        return "/LM/W3SVC/\(configuration.site.id)/ROOT" + (path == "/" ? "" : path.hasSuffix("/") ? String(path.dropLast()) : path)
    }

    /// Acquires the sessions the handler needs, ASP.NET first, then ASP (always in that order, so
    /// two requests never wait for each other crosswise).
    func begin(_ request: inout Request, needs: SessionRequirements, requestID: UInt64) -> Outcome {
        guard let configuration = request.configuration else { return .proceed(Ticket()) }
        var ticket = Ticket()
        do throws(SessionDomain.AcquireError) {
            switch try beginASPNET(&request, configuration, needs: needs.aspNet) {
            case .respond(let response): return .respond(response)
            case .hold(let held): ticket.aspNet = held
            case .nothing: break
            }
            if needs.classic {
                switch try beginASP(&request, configuration) {
                case .respond(let response):
                    end(ticket, response: nil, failed: true, requestID: requestID)
                    return .respond(response)
                case .hold(let held): ticket.asp = held
                case .nothing: break
                }
            }
        } catch {
            end(ticket, response: nil, failed: true, requestID: requestID)
            switch error {
            case .queueLimitExceeded:
                logger.warning("session request queue limit exceeded", metadata: ["request": "\(requestID)", "limit": "\(options.queueLimitPerSession)"])
                var response = ErrorPage.response(.serviceUnavailable, detail: "The request queue limit of the session is exceeded: too many requests of this session are waiting for it.")
                response.headers[.retryAfter] = "1"
                return .respond(response)
            case .store(let failure):
                logger.error("session-state store failed", metadata: ["request": "\(requestID)", "error": "\(failure)", "kind": "\(failure.kind)"])
                guard failure.isTransient else {
                    return .respond(ErrorPage.response(.internalServerError, detail: "Session state could not be read.", reference: requestID))
                }
                var page = ErrorPage.response(.serviceUnavailable, detail: "Session state is unavailable right now.", reference: requestID)
                page.headers[.retryAfter] = "5"
                return .respond(page)
            }
        }
        return .proceed(ticket)
    }

    private enum DomainOutcome {
        case nothing
        case hold(Held)
        case respond(Response)
    }

    private func beginASPNET(_ request: inout Request, _ configuration: EffectiveConfiguration, needs: SessionAccess) throws(SessionDomain.AcquireError) -> DomainOutcome {
        let settings = configuration.sessionState
        guard let access = Self.aspNetAccess(needs: needs, configuration, &request) else { return .nothing }
        let domain: SessionDomain
        switch settings.mode {
        case .inProc: domain = aspNet
        default:
            do { domain = try outOfProcess.domain(for: configuration) } catch { throw .store(error) }
        }
        guard access != .none else {
            keepCarriedSessionAlive(request, configuration, domain: domain)
            return .nothing
        }
        let transport: IDTransport
        switch IDTransport.decide(settings.cookieless, request: request) {
        case .decided(let decided): transport = decided
        case .probe(let redirect): return .respond(redirect)
        }
        guard let manager = Self.idManager(named: settings.sessionIDManagerType, in: options.idManagers) else {
            // Configuration validation reports this with file and line (500.19).
            return .respond(ErrorPage.response(.internalServerError, detail: "The session ID manager of this application is not registered."))
        }
        let id = transport.incomingID(request, cookieName: settings.cookieName, manager: manager)
        let mode = Self.sessionMode(settings.mode)
        let context = ASPNETAcquisition(
            configuration: configuration, domain: domain, transport: transport, manager: manager, exclusive: access == .readWrite,
            rule: ASPNETSession.timeoutRule(mode: mode))
        var held: Held
        switch try holdASPNET(id, request, context) {
        case .hold(let taken): held = taken
        case .respond(let response): return .respond(response)
        case .nothing: return .nothing
        }
        let session = ASPNETSession(contents: held.contents, sessionID: held.key.id, mode: mode, cookieMode: Self.cookieMode(settings.cookieless), isCookieless: transport.usesURL)
        if session.isNewSession, let start = options.onASPNETSessionStart {
            held.contents.writable { start(session) }
        }
        request.session = session
        request.sessionUnavailable = nil
        return .hold(held)
    }

    /// What one request's ASP.NET session is acquired with.
    private struct ASPNETAcquisition {
        var configuration: EffectiveConfiguration
        var domain: SessionDomain
        var transport: IDTransport
        var manager: SessionIDManager
        var exclusive: Bool
        var rule: (ClosedRange<Int>, @Sendable (Int) -> String)

        var application: String { SessionManager.applicationKey(configuration) }
        var timeout: Int {
            Int(min(configuration.sessionState.timeout.duration.map { $0.components.seconds / 60 } ?? Int64(Int32.max), Int64(Int32.max)))
        }
    }

    /// The session under the request's ID (`id`), an empty one that is never saved when the
    /// store fails open, or a new one (with its cookie, or the redirect that puts its ID in the
    /// URL).
    private func holdASPNET(_ id: String?, _ request: Request, _ context: ASPNETAcquisition) throws(SessionDomain.AcquireError) -> DomainOutcome {
        let (domain, exclusive, rule, application) = (context.domain, context.exclusive, context.rule, context.application)
        if let id, let acquired = try acquire(SessionKey(application: application, id: id), domain: domain, exclusive: exclusive, context.configuration) {
            let key = SessionKey(application: application, id: id)
            guard let acquired else {
                // The store is down and fails open: an empty session under the same ID, never
                // written back over the stored one.
                return .hold(Held(domain: domain, key: key, contents: domain.newContents(timeout: context.timeout, readOnly: !exclusive, rule: rule),
                                  lockID: nil, storeHadItem: true, exclusive: exclusive, detached: true))
            }
            return .hold(Held(domain: domain, key: key, contents: domain.contents(of: acquired, readOnly: !exclusive, rule: rule),
                              lockID: acquired.lockID, storeHadItem: true, exclusive: exclusive))
        }
        switch try newSession(request, context.configuration, domain: domain, transport: context.transport, incoming: id, manager: context.manager) {
        case .redirect(let response): return .respond(response)
        case .created(let sessionID):
            var held = Held(domain: domain, key: SessionKey(application: application, id: sessionID),
                            contents: domain.newContents(timeout: context.timeout, readOnly: !exclusive, rule: rule), lockID: nil, storeHadItem: false, exclusive: exclusive)
            if !context.transport.usesURL, sessionID != id {
                let settings = context.configuration.sessionState
                do { held.cookie = try Self.aspNetCookie(settings: settings, httpCookies: context.configuration.httpCookies, id: context.manager.outgoingValue(sessionID) ?? sessionID) } catch {
                    // Configuration validation rejects such settings; if one slips through, say so.
                    logger.error("the session cookie cannot be built; the session will not persist", metadata: ["error": "\(error)"])
                }
            }
            return .hold(held)
        }
    }

    /// Acquires `key`: `.some(nil)` when the store is down or slow and fails open
    /// (`throwOnError="false"`), with a warning; nil when the store has no such session.
    private func acquire(
        _ key: SessionKey, domain: SessionDomain, exclusive: Bool, _ configuration: EffectiveConfiguration
    ) throws(SessionDomain.AcquireError) -> SessionDomain.Acquired?? {
        do throws(SessionDomain.AcquireError) {
            guard let acquired = try domain.acquire(key, exclusive: exclusive, executionTimeout: configuration.executionTimeout) else { return nil }
            return .some(acquired)
        } catch {
            guard case .store(let failure) = error, failure.isTransient, domain.store.failsOpen else { throw error }
            logger.warning("\(domain.name) session store unavailable; this request gets an empty session that will not be saved (throwOnError=\"false\")", metadata: [
                "session": "\(key)", "error": "\(failure.message)",
            ])
            return .some(nil)
        }
    }

    /// The access the request gets to the ASP.NET session: what the handler asked for, limited by
    /// `pages/@enableSessionState`. Nil when session state is off for the application; either way
    /// `request.sessionUnavailable` says why there is no session.
    static func aspNetAccess(needs: SessionAccess, _ configuration: EffectiveConfiguration, _ request: inout Request) -> SessionAccess? {
        guard configuration.sessionState.mode != .off else {
            request.sessionUnavailable = "Session state is off for this application (sessionState mode=\"Off\")."
            return nil
        }
        switch configuration.enableSessionState {
        case .false:
            if needs != .none { request.sessionUnavailable = "Session state is disabled for this folder (pages enableSessionState=\"false\")." }
            return SessionAccess.none
        case .readOnly: return min(needs, .readOnly)
        case .true: return needs
        }
    }

    /// A request that needs no session only keeps the one it carries alive, as
    /// `SessionStateModule` does with `ResetItemTimeout` (README, Sessions). The ID is read from
    /// wherever it may be, without deciding the cookie mode; a failure is logged, not shown.
    private func keepCarriedSessionAlive(_ request: Request, _ configuration: EffectiveConfiguration, domain: SessionDomain) {
        let settings = configuration.sessionState
        let incoming = settings.cookieless == .useCookies ? request.cookie(named: settings.cookieName)
            : request.cookieless?["S"] ?? (settings.cookieless == .useUri ? nil : request.cookie(named: settings.cookieName))
        guard let manager = Self.idManager(named: settings.sessionIDManagerType, in: options.idManagers),
              let id = incoming.flatMap(manager.incomingID) else { return }
        do { try domain.measure { () throws(SessionStoreError) in try domain.store.resetItemTimeout(SessionKey(application: Self.applicationKey(configuration), id: id)) } } catch {
            // Debug only: the store logs its outages itself (once, then once a minute), and
            // every request without session needs would repeat it here.
            logger.debug("could not refresh an ASP.NET session's expiry", metadata: ["error": "\(error)", "kind": "\(error.kind)"])
        }
    }

    private enum NewSession {
        case created(id: String)
        /// Cookieless: the new ID goes into the URL first.
        case redirect(Response)
    }

    /// No session under the request's ID here: adopt the ID or issue a new one. A URL ID is
    /// reused only with regenerateExpiredSessionId="false" (ASP.NET's unsafe option); a cookie
    /// ID only when another application of this host has a live session under it (one ID
    /// serves every application). Anything else gets a new ID: unknown IDs are never adopted.
    private func newSession(
        _ request: Request, _ configuration: EffectiveConfiguration, domain: SessionDomain, transport: IDTransport, incoming id: String?,
        manager: SessionIDManager
    ) throws(SessionDomain.AcquireError) -> NewSession {
        let settings = configuration.sessionState
        if let id, transport.usesURL ? !settings.regenerateExpiredSessionId : knownElsewhere(id, domain: domain) {
            return .created(id: id)
        }
        guard let sessionID = manager.newID() else {
            throw .store(SessionStoreError(.configuration, "the session ID manager '\(manager.typeName)' made an ID that it does not validate itself, or that is not 1–80 characters of A–Z a–z 0–9 - _ ."))
        }
        guard transport.usesURL else { return .created(id: sessionID) }
        // The follow-up request must find the ID known, so it is created (uninitialized) first.
        if settings.regenerateExpiredSessionId {
            let timeout = Int(min(settings.timeout.duration.map { $0.components.seconds / 60 } ?? Int64(Int32.max), Int64(Int32.max)))
            do { try domain.measure { () throws(SessionStoreError) in try domain.store.createUninitializedItem(SessionKey(application: Self.applicationKey(configuration), id: sessionID), timeout: timeout) } } catch {
                throw .store(error)
            }
        }
        return .redirect(transport.redirect(request, newID: manager.outgoingValue(sessionID) ?? sessionID, applicationPath: configuration.application.path))
    }

    /// Whether another application of this host has a live session under `id` (one ID serves
    /// every application, as in ASP.NET). A store that cannot tell, or fails, counts as no: the
    /// ID is then not adopted.
    private func knownElsewhere(_ id: String, domain: SessionDomain) -> Bool {
        do { return try domain.measure { () throws(SessionStoreError) -> Bool in try domain.store.containsSession(id: id) } } catch {
            logger.warning("could not check a session ID with the store; a new ID is issued", metadata: ["error": "\(error)", "kind": "\(error.kind)"])
            return false
        }
    }

    static func sessionMode(_ mode: SessionStateMode) -> ASPNETSessionMode {
        switch mode {
        case .off: .off
        case .inProc: .inProc
        case .stateServer: .stateServer
        case .sqlServer: .sqlServer
        case .custom: .custom
        }
    }

    static func cookieMode(_ mode: CookieMode) -> ASPNETCookieMode {
        switch mode {
        case .useUri: .useUri
        case .useCookies: .useCookies
        case .autoDetect: .autoDetect
        case .useDeviceProfile: .useDeviceProfile
        }
    }

    /// `ASP.NET_SessionId=…; Path=/; HttpOnly; SameSite=Lax` (`SessionIDManager`'s cookie, README Sessions); `Secure` with
    /// `<httpCookies requireSSL="true">` or SameSite=None.
    static func aspNetCookie(settings: SessionStateSettings, httpCookies: HTTPCookiesSettings, id: String) throws(CookieError) -> Cookie {
        let sameSite: Cookie.SameSite? = switch settings.cookieSameSite {
        case .lax: .lax
        case .strict: .strict
        case .none: Cookie.SameSite.none
        case .unspecified: nil
        }
        return try Cookie(
            name: settings.cookieName, value: id, path: "/", domain: httpCookies.domain.isEmpty ? nil : httpCookies.domain,
            secure: httpCookies.requireSSL, httpOnly: true, sameSite: sameSite)
    }

    /// The configuration errors of the session cookie's settings: a `cookieName` that is not a
    /// cookie name, or an `<httpCookies domain>` a cookie cannot carry. Without this check the
    /// cookie could not be built, no cookie would be sent and every request would start a new
    /// session.
    package static func cookieSettingsErrors(_ configuration: EffectiveConfiguration) -> [ConfigurationError] {
        let settings = configuration.sessionState
        guard settings.mode != .off else { return [] }
        func located(_ key: String, _ attribute: String, _ message: String) -> ConfigurationError {
            ConfigurationError(message, at: configuration.sources[key] ?? configuration.sources["system.web/sessionState/mode"] ?? SourceLocation(file: "(default)", line: 1), attribute: attribute)
        }
        do throws(CookieError) {
            _ = try Cookie(name: settings.cookieName, value: "x")
        } catch {
            return [located("system.web/sessionState/cookieName", "cookieName", "The session cookie name '\(settings.cookieName)' is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~ only).")]
        }
        let domain = configuration.httpCookies.domain
        if !domain.isEmpty, domain.contains(where: { $0 == " " || $0 == ";" || $0 == "," || !$0.isASCII || $0.asciiValue.map { $0 < 0x21 || $0 == 0x7F } ?? true }) {
            return [located("system.web/httpCookies/domain", "domain", "The cookie domain '\(domain)' is not a valid domain for a cookie.")]
        }
        return []
    }

    private func beginASP(_ request: inout Request, _ configuration: EffectiveConfiguration) throws(SessionDomain.AcquireError) -> DomainOutcome {
        let settings = configuration.asp
        guard settings.allowSessionState else {
            request.classicSessionUnavailable = "Classic ASP session state is disabled for this folder (asp/session allowSessionState=\"false\")."
            return .nothing
        }
        let application = Self.applicationKey(configuration)
        let cookieName = ASPSessionID.cookieName(site: configuration.site.id, applicationPath: configuration.application.path)
        let rule = ClassicASPSession.timeoutRule
        var held: Held
        var value: String
        if let id = request.cookie(named: cookieName).flatMap(ASPSessionID.normalize),
           let acquired = try asp.acquire(SessionKey(application: application, id: id), exclusive: true, executionTimeout: configuration.executionTimeout) {
            value = id
            held = Held(domain: asp, key: SessionKey(application: application, id: id), contents: asp.contents(of: acquired, readOnly: false, rule: rule),
                        lockID: acquired.lockID, storeHadItem: true, exclusive: true)
        } else {
            // `max` counts kept, live sessions; a new one beyond it is refused (IIS `system.webServer/asp/session/@max`). At the
            // limit, sessions that expired since the last sweep are ended first: they no longer count.
            if settings.max != UInt32.max, aspStore.count(application: application) >= Int(settings.max),
               aspStore.removeExpiredItems() == 0 || aspStore.count(application: application) >= Int(settings.max) {
                logger.warning("classic ASP session limit reached", metadata: ["application": "\(application)", "max": "\(settings.max)"])
                return .respond(ErrorPage.response(.internalServerError, detail: "Server Too Busy: the most sessions this application may hold (\(settings.max)) are in use."))
            }
            value = ASPSessionID.generate()
            let minutes = max(1, Int(settings.timeoutSeconds / 60))
            held = Held(domain: asp, key: SessionKey(application: application, id: value), contents: asp.newContents(timeout: minutes, readOnly: false, rule: rule),
                        lockID: nil, storeHadItem: false, exclusive: true)
            // HttpOnly: IIS leaves it off; SessionHost sets it (scripts have no business with it).
            // The name and value are generated letters: a failure would be a defect, so it is logged.
            do {
                held.cookie = try Cookie(name: cookieName, value: value, path: "/", secure: settings.keepSessionIdSecure && request.isSecure, httpOnly: true, sameSite: nil)
            } catch {
                logger.error("the classic ASP session cookie cannot be built; the session will not persist", metadata: ["error": "\(error)"])
            }
        }
        let session = ClassicASPSession(contents: held.contents, cookieValue: value)
        if session.isNewSession, let start = options.onClassicSessionStart {
            held.contents.writable { start(session) }
        }
        request.classicSession = session
        request.classicSessionUnavailable = nil
        return .hold(held)
    }

    /// Releases what `ticket` holds (saving per the decision table) and adds the cookies of new
    /// sessions that were kept. Returns an error page when a store failed to save.
    @discardableResult
    func end(_ ticket: Ticket, response: Response?, failed: Bool, requestID: UInt64) -> Response? {
        guard ticket.aspNet != nil || ticket.asp != nil else { return response }
        var response = response
        var failure: SessionStoreError?
        // Released in the reverse order of acquisition.
        for held in [ticket.asp, ticket.aspNet].compactMap({ $0 }) {
            if held.detached {
                if held.domain.discardDetached(held.contents) {
                    logger.warning("\(held.domain.name) session changes were not saved: the store was unavailable (throwOnError=\"false\")", metadata: [
                        "request": "\(requestID)", "session": "\(held.key)",
                    ])
                }
                continue
            }
            do {
                let outcome = try held.domain.release(
                    held.key, contents: held.contents, lockID: held.lockID, storeHadItem: held.storeHadItem, exclusive: held.exclusive, failed: failed)
                if outcome == .saved, let cookie = held.cookie { response?.setCookie(cookie) }
            } catch {
                let metadata: Logger.Metadata = ["request": "\(requestID)", "session": "\(held.key)", "error": "\(error)"]
                if error.isTransient, held.domain.store.failsOpen {
                    // throwOnError="false": the answer stands; what the session held is lost.
                    logger.warning("\(held.domain.name) session could not be saved: the store is unavailable (throwOnError=\"false\")", metadata: metadata)
                    continue
                }
                failure = error
                if error.kind == .lockLost {
                    logger.warning("\(held.domain.name) session changes were not saved: the lock was broken and taken by another request", metadata: metadata)
                } else {
                    logger.error("\(held.domain.name) session could not be saved", metadata: metadata)
                }
            }
        }
        // The handler's answer must not claim success for changes that were not stored.
        guard let failure, response != nil else { return response }
        return Self.savingFailed(failure, reference: requestID)
    }

    /// The page for a session that could not be saved: 409 when the lock was lost (trying again
    /// redoes the work against the current session), 503 with `Retry-After` when the store is
    /// down or slow, 500 otherwise.
    static func savingFailed(_ error: SessionStoreError, reference: UInt64) -> Response {
        switch error.kind {
        case .lockLost:
            return ErrorPage.response(.conflict, detail: "Your session changes were not saved: this request held the session longer than the execution timeout, and another request took it over.", reference: reference)
        case .unavailable, .timeout:
            var page = ErrorPage.response(.serviceUnavailable, detail: "Session state could not be saved right now.", reference: reference)
            page.headers[.retryAfter] = "5"
            return page
        default:
            return ErrorPage.response(.internalServerError, detail: "Session state could not be saved.", reference: reference)
        }
    }
}
