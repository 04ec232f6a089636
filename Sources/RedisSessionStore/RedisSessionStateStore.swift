import Foundation
import Locking
public import Logging
public import SessionState
import SessionStateSerialization

/// `mode="Custom"` with Redis: sessions in Redis with the layout and format of Microsoft's
/// `Microsoft.Web.Redis.RedisSessionStateProvider` v5, so that an ASP.NET app on that provider
/// with the same `applicationName` and the same Redis shares its sessions with the Swift app.
///
/// Blocking calls on the worker thread (hiredis), through a pool of kept connections. Beyond
/// Microsoft's provider: a write whose lock was lost is refused and reported (`lockLost`),
/// never dropped in silence; waiters are woken by pub/sub when the lock is released (polling
/// every 500 ms stays as the fallback); lock ages come from the Redis server's clock; with
/// `throwOnError="false"` a request whose session cannot be read gets an empty one that is
/// never written back over the stored one.
public final class RedisSessionStateStore: ClosableSessionStateStore {
    /// SessionHost's own type name, and Microsoft's, so that an existing web.config works.
    public static let typeNames = ["SessionHost.RedisSessionStateStore", "Microsoft.Web.Redis.RedisSessionStateProvider"]

    /// The Redis store for `SessionOptions.stores`, under both type names.
    public static let factory = SessionStoreFactory(
        mode: .custom, providerTypes: typeNames,
        validate: { settings in
            switch RedisStoreConfiguration.parse(settings) {
            case .success: []
            case .failure(let failure): failure.errors
            }
        },
        make: { settings, logger throws(SessionStoreError) in
            switch RedisStoreConfiguration.parse(settings) {
            case .success(let configuration): return RedisSessionStateStore(configuration: configuration, logger: logger)
            case .failure(let failure):
                throw SessionStoreError(.configuration, failure.errors.map { "\($0.attribute): \($0.message)" }.joined(separator: "; "))
            }
        })

    public let configuration: RedisStoreConfiguration
    public var statusLocation: String { "\(configuration.endpoint)/\(configuration.databaseID)" }
    private let logger: Logger
    private let idle = Locked<[RedisConnection]>([])
    private let applicationNames = Locked<[String: String]>([:])
    /// The machine's UTC offset for lock values (local-time ticks, as `DateTime.Now`), read
    /// again every minute (daylight saving time).
    private let utcOffset = Locked<(seconds: Int, until: ContinuousClock.Instant)>((0, .now))
    private let health = StoreHealth(
        outageMessage: "Unable to reach the Redis server of the session state store.", recoveryMessage: "the Redis session state server answers again")
    /// Lock values are local-time ticks, which need not grow (another machine's clock, the
    /// end of daylight saving time): releases are matched by value, not by order.
    let signal = ReleaseSignal(orderedCookies: false)
    private let listener: RedisReleaseListener
    /// Kept idle connections (more are closed after use).
    static let maxIdleConnections = 64
    /// The channel the release scripts publish on (one per database, since pub/sub is not).
    let channel: String
    private let channelBytes: [UInt8]

    public init(configuration: RedisStoreConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        channel = "SessionHost.SessionRelease.\(configuration.databaseID)"
        channelBytes = Array(channel.utf8)
        listener = RedisReleaseListener(configuration: configuration, channel: channel, signal: signal, logger: logger)
    }

    /// Whether a failing Redis leaves requests with an empty, unsaved session (`throwOnError="false"`).
    public var failsOpen: Bool { !configuration.throwOnError }

    // MARK: Keys

    /// The keys of one session, in the scripts' order, as the bytes the commands carry.
    struct Keys {
        var lock: [UInt8]
        var data: [UInt8]
        var timeout: [UInt8]
        var waiters: [UInt8]
        /// `<app>_<id>`: the session in release messages.
        var name: String

        var all: [[UInt8]] { [lock, data, timeout, waiters] }
    }

    /// Microsoft's `KeyGenerator`: `{<applicationName>_<id>}_…`.
    func keys(_ key: SessionKey) -> Keys {
        let name = "\(applicationName(key.application))_\(key.id)"
        let tag = Array("{\(name)}_".utf8)
        return Keys(lock: tag + Self.lockSuffix, data: tag + Self.dataSuffix, timeout: tag + Self.timeoutSuffix, waiters: tag + Self.waitersSuffix, name: name)
    }

    private static let lockSuffix = Array("WriteLock".utf8), dataSuffix = Array("SessionStateItemCollection".utf8)
    private static let timeoutSuffix = Array("SessionTimeout".utf8), waitersSuffix = Array("SessionHostWaiters".utf8)

    /// `applicationName`, else the application's virtual path (`/LM/W3SVC/1/ROOT/shop` → `/shop`,
    /// the root → `/`), as `HostingEnvironment.ApplicationVirtualPath`.
    func applicationName(_ application: String) -> String {
        if let name = configuration.applicationName { return name }
        if let known = applicationNames.withLock({ $0[application] }) { return known }
        var name = application
        if let root = application.utf8.firstRange(of: "/ROOT".utf8) {
            let path = Substring(application.utf8[root.upperBound...])
            name = path.isEmpty ? "/" : String(path)
        }
        applicationNames.withLock { if $0.count < 10_000 { $0[application] = name } }
        return name
    }

    // MARK: SessionStateStore

    /// Redis says nothing when a key expires in time to read it: no Session_End (as Microsoft's).
    public func setItemExpireCallback(_ callback: @escaping @Sendable (SessionKey, SessionStateStoreData, SessionEndReason) -> Void) -> Bool {
        false
    }

    public func getItem(_ key: SessionKey) throws(SessionStoreError) -> StoreLookup {
        try lookup(key, script: RedisScripts.get)
    }

    public func getItemExclusive(_ key: SessionKey) throws(SessionStoreError) -> StoreLookup {
        try lookup(key, script: RedisScripts.getExclusive)
    }

    public func releaseItemExclusive(_ key: SessionKey, lockID: LockID) throws(SessionStoreError) {
        let keys = keys(key)
        _ = try run(RedisScripts.release, keys: keys.all, arguments: [Array(String(lockID.rawValue).utf8), channelBytes, Array(keys.name.utf8)])
        signal.released([(id: keys.name, cookie: lockID.rawValue)])
    }

    public func setAndReleaseItemExclusive(_ key: SessionKey, data: SessionStateStoreData, lockID: LockID?, newItem: Bool) throws(SessionStoreError) {
        let keys = keys(key)
        var items = data.items
        items[Self.actionsItem] = nil
        let blob = try encode(items)
        let seconds = Array(String(max(1, data.timeout) * 60).utf8)
        if newItem {
            _ = try run(RedisScripts.insert, keys: keys.all, arguments: [blob, seconds, Array("SET".utf8)])
            return
        }
        guard let lockID else {
            throw SessionStoreError(.lockLost, "a session was saved without its lock: nothing was written")
        }
        let written = try run(RedisScripts.update, keys: keys.all, arguments: [Array(String(lockID.rawValue).utf8), channelBytes, Array(keys.name.utf8), blob, seconds])
        guard written.integer == 1 else {
            // Microsoft's provider drops such a write without a word.
            logger.warning("a session write was refused: its lock had expired or been taken by another request", metadata: ["session": "\(key)"])
            throw SessionStoreError(.lockLost, "the session's lock expired or was taken by another request: this request's changes were not saved")
        }
        signal.released([(id: keys.name, cookie: lockID.rawValue)])
    }

    public func removeItem(_ key: SessionKey, lockID: LockID?, data: SessionStateStoreData?) throws(SessionStoreError) {
        let keys = keys(key)
        let lock = lockID.map { Array(String($0.rawValue).utf8) } ?? []
        let removed = try run(RedisScripts.remove, keys: keys.all, arguments: [lock, channelBytes, Array(keys.name.utf8)])
        if removed.integer != 1, lockID != nil {
            throw SessionStoreError(.lockLost, "the session's lock was taken by another request: it was not removed")
        }
        if let lockID { signal.released([(id: keys.name, cookie: lockID.rawValue)]) }
    }

    public func resetItemTimeout(_ key: SessionKey) throws(SessionStoreError) {
        _ = try run(RedisScripts.resetTimeout, keys: keys(key).all, arguments: [])
    }

    /// Microsoft's marker: an item `SessionStateActions` = `InitializeItem` inside the items.
    /// SessionHost writes the name as text, which Microsoft's `Enum.Parse` reads too.
    static let actionsItem = "SessionStateActions"

    public func createUninitializedItem(_ key: SessionKey, timeout: Int) throws(SessionStoreError) {
        var items = SessionItems()
        items[Self.actionsItem] = .string("InitializeItem")
        _ = try run(RedisScripts.insert, keys: keys(key).all, arguments: [try encode(items), Array(String(max(1, timeout) * 60).utf8), Array("NX".utf8)])
    }

    /// Sessions are kept per application name: whether another application has this ID cannot
    /// be asked cheaply, so a cookie ID not found here is never adopted.
    public func containsSession(id: String) throws(SessionStoreError) -> Bool {
        false
    }

    /// Woken by the release of this process at once, and by other workers' releases through
    /// pub/sub; at most 500 ms (Microsoft's poll), so a lost message only delays.
    public func waitForRelease(_ key: SessionKey, lockID: LockID, deadline: ContinuousClock.Instant) {
        BlockingHint.willBlock()
        listener.start()
        signal.wait(for: keys(key).name, holder: lockID.rawValue, until: min(deadline, .now + .milliseconds(500)))
    }

    /// Closes the kept connections and the listener.
    public func close() {
        listener.stop()
        idle.withLock { $0.removeAll() }
    }

    // MARK: Reading

    private func lookup(_ key: SessionKey, script: RedisScript) throws(SessionStoreError) -> StoreLookup {
        let keys = keys(key)
        let offset = Array(String(currentUTCOffset()).utf8)
        let ttl = Array(String(max(1, configuration.lockTimeout.components.seconds)).utf8)
        let reply = try run(script, keys: keys.all, arguments: [offset, ttl])
        guard case .array(let fields) = reply, let state = fields.first?.integer else {
            throw SessionStoreError(.refused, "Redis answered a session read with \(reply.kind)")
        }
        switch state {
        case 0:
            return .notFound
        case 2:
            let holder = fields.count > 1 ? fields[1].text ?? "" : ""
            let age = fields.count > 2 ? fields[2].integer ?? -1 : -1
            // A lock value that is not ticks reads as very old, as in Microsoft's provider: the
            // waiter breaks it (a holder ahead of Redis's clock is 0 ms old, never broken early).
            let lockAge: Duration = age < 0 ? .seconds(365 * 86_400) : .milliseconds(age)
            return .locked(lockAge: lockAge, lockID: LockID(Int(holder) ?? 0))
        case 1:
            guard fields.count >= 4, let blob = fields[2].bytes else { throw SessionStoreError(.refused, "Redis answered a session read with an unexpected array") }
            let lockText = fields[1].text ?? ""
            let lockID = lockText.isEmpty ? nil : Int(lockText).map(LockID.init)
            let seconds = fields[3].integer ?? -1
            var items: SessionItems
            do { items = try decode(blob) } catch {
                if let lockID { releaseAfterUnreadable(key, lockID: lockID) }
                throw SessionStoreError(.corrupt, "the session \(key) cannot be read: \(error.description)", underlying: error)
            }
            let initialize = items[Self.actionsItem] != nil
            if initialize { items[Self.actionsItem] = nil }
            let data = SessionStateStoreData(items: items, timeout: seconds > 0 ? max(1, seconds / 60) : 20)
            return .found(data, lockID: lockID, actions: initialize ? .initializeItem : .none)
        default:
            throw SessionStoreError(.refused, "Redis answered a session read with state \(state)")
        }
    }

    private func currentUTCOffset() -> Int {
        let now = ContinuousClock.now
        if let offset = utcOffset.withLock({ $0.until > now ? $0.seconds : nil }) { return offset }
        let seconds = TimeZone.current.secondsFromGMT()
        utcOffset.withLock { $0 = (seconds, now + .seconds(60)) }
        return seconds
    }

    /// The read took the lock of an item it cannot read: give it back, or every later request
    /// would wait for the execution timeout. The stored item stays as it is.
    private func releaseAfterUnreadable(_ key: SessionKey, lockID: LockID) {
        do { try releaseItemExclusive(key, lockID: lockID) } catch {
            logger.warning("could not release the lock of an unreadable session", metadata: ["session": "\(key)", "error": "\(error)"])
        }
    }

    private func encode(_ items: SessionItems) throws(SessionStoreError) -> [UInt8] {
        do { return try ASPNETSessionStateFormat.encodeItems(items, compressed: configuration.compressionEnabled) } catch {
            throw SessionStoreError(.refused, error.description, underlying: error)
        }
    }

    private func decode(_ blob: [UInt8]) throws(ASPNETSessionStateFormat.Failure) -> SessionItems {
        try ASPNETSessionStateFormat.decodeItems(blob, compressed: configuration.compressionEnabled)
    }

    // MARK: Connections

    /// Runs `script` with `EVALSHA` (loading it on `NOSCRIPT`) on a kept connection or a new
    /// one. A kept connection the server closed while idle is dropped before use. Connecting is
    /// tried again for `retryTimeout` (20 ms, then every second), unless Redis is already known
    /// to be down: then the request fails at once instead of holding its thread.
    private func run(_ script: RedisScript, keys: [[UInt8]], arguments: [[UInt8]]) throws(SessionStoreError) -> RedisReply {
        let connection = try connection()
        do throws(SessionStoreError) {
            var command: [[UInt8]] = [Self.evalsha, script.sha1, Array(String(keys.count).utf8)]
            command.reserveCapacity(3 + keys.count + arguments.count)
            command += keys
            command += arguments
            var reply = try connection.command(command)
            if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
                // A restarted or flushed server: load the script (EVAL caches it) and go on.
                command[0] = Self.eval
                command[1] = script.source
                reply = try connection.command(command)
            }
            if case .error(let message) = reply {
                giveBack(connection)
                throw SessionStoreError(Self.isTransient(message) ? .unavailable : .refused, "Redis refused a session operation: \(message)")
            }
            giveBack(connection)
            health.succeeded(logger: logger, server: "\(configuration.endpoint)")
            return reply
        } catch {
            if error.isTransient { health.failed(error, logger: logger, server: "\(configuration.endpoint)") }
            throw error
        }
    }

    private static let evalsha = Array("EVALSHA".utf8), eval = Array("EVAL".utf8)

    /// Errors of a server that cannot serve now (loading its data, a replica, out of memory).
    private static func isTransient(_ message: String) -> Bool {
        ["LOADING", "READONLY", "MASTERDOWN", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "OOM"].contains { message.hasPrefix($0) }
            || message.hasPrefix("ERR max number of clients reached")
    }

    private func giveBack(_ connection: RedisConnection) {
        guard connection.isUsable else { return }
        idle.withLock { if $0.count < Self.maxIdleConnections { $0.append(connection) } }
    }

    private func connection() throws(SessionStoreError) -> RedisConnection {
        while let kept = idle.withLock({ $0.popLast() }) {
            if kept.isAlive { return kept }
        }
        let retryUntil = health.isFailing ? ContinuousClock.now : ContinuousClock.now + configuration.retryTimeout
        var pause = Duration.milliseconds(20)
        while true {
            do { return try RedisSession.open(configuration) } catch {
                guard error.isTransient, ContinuousClock.now + pause < retryUntil else {
                    health.failed(error, logger: logger, server: "\(configuration.endpoint)")
                    throw error
                }
                BlockingHint.willBlock()
                Thread.sleep(forTimeInterval: Double(pause.components.seconds) + Double(pause.components.attoseconds) / 1e18)
                pause = .seconds(1)
            }
        }
    }
}

/// Opening a connection the store can use: connected, authenticated, on its database.
enum RedisSession {
    static func open(_ configuration: RedisStoreConfiguration, operationTimeout: Duration? = nil) throws(SessionStoreError) -> RedisConnection {
        let connection = try RedisConnection(
            endpoint: configuration.endpoint, connectTimeout: configuration.connectionTimeout, operationTimeout: operationTimeout ?? configuration.operationTimeout)
        if let password = configuration.password {
            let reply: RedisReply
            if let user = configuration.user { reply = try connection.command("AUTH", user, password) } else { reply = try connection.command("AUTH", password) }
            if case .error(let message) = reply {
                // Redis's message names no secret ("WRONGPASS invalid username-password pair").
                // Wrong credentials are the settings' fault: 500 and the log, not a 503 that
                // would suggest waiting (or, with throwOnError="false", empty sessions forever).
                throw SessionStoreError(.refused, "Redis at \(connection.server) refused the credentials: \(message)")
            }
        }
        if configuration.databaseID != 0 {
            if case .error(let message) = try connection.command("SELECT", String(configuration.databaseID)) {
                throw SessionStoreError(.refused, "Redis at \(connection.server) refused database \(configuration.databaseID): \(message)")
            }
        }
        return connection
    }
}
