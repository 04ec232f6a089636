import Crypto
import Foundation
import Locking
public import Logging
public import SessionState
import SessionStateSerialization

/// Where a state server listens, from `stateConnectionString` (`tcpip=host:port` or
/// `tcpip=[IPv6]:port`, ASP.NET's format).
public struct StateServerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// ASP.NET's rules: `tcpip=` exactly (case-sensitive), then `host:port` with one `:`, or
    /// `[IPv6]:port`; an ASCII host; a port of 0–65535. The message is ASP.NET's.
    public init(connectionString: String) throws(SessionStoreError) {
        let invalid = SessionStoreError(.configuration, "The <sessionState> stateConnectionString is invalid. It must have the format tcpip=<server>:<port>, where <server> is a valid IPv4 address, a machine name using only ASCII characters, or a valid IPv6 address enclosed within square brackets, and <port> is an unsigned integer ranging from 0 to 65535 (e.g., tcpip=127.0.0.1:42424, tcpip=localhost:42424, or tcpip=[::1]:42424).")
        guard connectionString.hasPrefix("tcpip=") else { throw invalid }
        let rest = connectionString.dropFirst("tcpip=".count)
        let hostPart: Substring
        let portPart: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else { throw invalid }
            hostPart = rest[rest.index(after: rest.startIndex)..<close]
            portPart = rest[rest.index(close, offsetBy: 2)...]
            guard hostPart.contains(":") else { throw invalid }
        } else {
            let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw invalid }
            (hostPart, portPart) = (parts[0], parts[1])
        }
        guard !hostPart.isEmpty, hostPart.allSatisfy(\.isASCII), let port = UInt16(portPart) else { throw invalid }
        // ASP.NET's default names the loopback interface "loopback".
        host = hostPart == "loopback" ? "127.0.0.1" : String(hostPart)
        self.port = Int(port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// `mode="StateServer"`: sessions kept by a state server (`session-state-server`, or ASP.NET's
/// own `aspnet_state`), spoken to over its HTTP-like protocol with blocking calls on the worker
/// thread, through a pool of kept connections.
///
/// Keys are ASP.NET's (`OutOfProcSessionStateStore`): the application id
/// (`/LM/W3SVC/<site>/ROOT<path>`), `(`, the Base64 SHA-256 of that id, `)/`, the session ID,
/// URL-encoded as a whole, so an ASP.NET app with the same application id shares the sessions.
/// Items travel in ASP.NET's serialized form. Against `session-state-server` two extensions
/// are used: lock waits are woken at the release instead of polled every 500 ms, and a save
/// whose lock was broken and taken by another request is refused (`lockLost`) instead of
/// overwriting that request's changes. Against `aspnet_state` it behaves as ASP.NET.
public final class StateServerSessionStore: ClosableSessionStateStore {
    /// `mode="StateServer"` for `SessionOptions.stores`.
    public static let factory = SessionStoreFactory(
        mode: .stateServer,
        validate: { settings in
            do throws(SessionStoreError) { _ = try StateServerAddress(connectionString: settings.connectionString) } catch {
                return [SessionStoreSettingsError(attribute: "stateConnectionString", message: error.message)]
            }
            guard settings.timeout > .zero else {
                return [SessionStoreSettingsError(attribute: "stateNetworkTimeout", message: "The value for 'stateNetworkTimeout' must be greater than 0.")]
            }
            return []
        },
        make: { settings, logger throws(SessionStoreError) in
            let address = try StateServerAddress(connectionString: settings.connectionString)
            return StateServerSessionStore(
                configuration: Configuration(address: address, networkTimeout: settings.timeout, compressionEnabled: settings.compressionEnabled),
                logger: logger)
        })

    public struct Configuration: Sendable {
        public var address: StateServerAddress
        /// `stateNetworkTimeout`: bounds connecting, sending and reading an answer.
        public var networkTimeout: Duration
        /// `compressionEnabled`: items are raw-Deflate compressed.
        public var compressionEnabled: Bool
        /// Kept idle connections (more are closed after use).
        public var maxIdleConnections: Int

        public init(address: StateServerAddress, networkTimeout: Duration = .seconds(10), compressionEnabled: Bool = false, maxIdleConnections: Int = 64) {
            self.address = address
            self.networkTimeout = networkTimeout
            self.compressionEnabled = compressionEnabled
            self.maxIdleConnections = maxIdleConnections
        }
    }

    public let configuration: Configuration
    public var statusLocation: String { "\(configuration.address)" }
    private let logger: Logger
    private let idle = Locked<[StateServerConnection]>([])
    /// Set from the server's `X-SessionHost` header: it offers the wake-up and strict-lock
    /// extensions.
    private let extensions = Locked<Extensions>(Extensions())
    private let keyPrefixes = Locked<[String: String]>([:])
    private let health = StoreHealth(
        outageMessage: "Unable to make the session state request to the session state server. Please ensure that the state server is started and that the client and server ports are the same.",
        recoveryMessage: "the session state server answers again")

    private struct Extensions {
        var known = false
        var wait = false
        var strictLock = false
    }

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    // MARK: SessionStateStore

    /// The state server has no way to report expiry: no Session_End (as ASP.NET).
    public func setItemExpireCallback(_ callback: @escaping @Sendable (SessionKey, SessionStateStoreData, SessionEndReason) -> Void) -> Bool {
        false
    }

    public func getItem(_ key: SessionKey) throws(SessionStoreError) -> StoreLookup {
        try lookup(try request("GET", key, []), key: key)
    }

    public func getItemExclusive(_ key: SessionKey) throws(SessionStoreError) -> StoreLookup {
        let reply = try request("GET", key, [("Exclusive", "acquire")])
        do throws(SessionStoreError) {
            return try lookup(reply, key: key)
        } catch {
            // The read took the lock: give it back, or every later request would wait for the
            // execution timeout before breaking it. The stored item stays as it is.
            if error.kind == .corrupt, let cookie = reply.header("lockcookie").flatMap(Int.init) {
                do { try releaseItemExclusive(key, lockID: LockID(cookie)) } catch {
                    logger.warning("could not release the lock of an unreadable session", metadata: ["session": "\(key)", "error": "\(error)"])
                }
            }
            throw error
        }
    }

    public func releaseItemExclusive(_ key: SessionKey, lockID: LockID) throws(SessionStoreError) {
        let reply = try request("GET", key, [("Exclusive", "release"), ("LockCookie", "\(lockID.rawValue)")])
        // 423: another request holds the lock now (ours was broken); 404: it expired. Neither is
        // an error for a release.
        try expect(reply, [200, 404, 423])
    }

    public func setAndReleaseItemExclusive(_ key: SessionKey, data: SessionStateStoreData, lockID: LockID?, newItem: Bool) throws(SessionStoreError) {
        let blob: [UInt8]
        do { blob = try ASPNETSessionStateFormat.encode(data, compressed: configuration.compressionEnabled) } catch {
            throw SessionStoreError(.refused, error.description, underlying: error)
        }
        var headers = [("Timeout", "\(data.timeout)"), ("LockCookie", "\(newItem ? 0 : lockID?.rawValue ?? 0)"), ("ExtraFlags", "0")]
        if !newItem, supports(\.strictLock) { headers.append(("X-SessionHost-Strict-Lock", "1")) }
        let reply = try request("PUT", key, headers, body: blob)
        if reply.status == 423 {
            throw SessionStoreError(.lockLost, "the session's lock was broken and taken by another request: this request's changes were not saved")
        }
        if reply.status == 413 || reply.status == 507 {
            throw SessionStoreError(.refused, "the state server refused the session (\(blob.count) bytes): \(String(decoding: reply.body.prefix(200), as: UTF8.self))")
        }
        try expect(reply, [200])
    }

    public func removeItem(_ key: SessionKey, lockID: LockID?, data: SessionStateStoreData?) throws(SessionStoreError) {
        var headers: [(String, String)] = []
        if let lockID {
            headers.append(("LockCookie", "\(lockID.rawValue)"))
            if supports(\.strictLock) { headers.append(("X-SessionHost-Strict-Lock", "1")) }
        }
        let reply = try request("DELETE", key, headers)
        if reply.status == 423 {
            throw SessionStoreError(.lockLost, "the session's lock was broken and taken by another request: it was not removed")
        }
        try expect(reply, [200, 404])
    }

    public func resetItemTimeout(_ key: SessionKey) throws(SessionStoreError) {
        try expect(try request("HEAD", key, []), [200, 404])
    }

    public func createUninitializedItem(_ key: SessionKey, timeout: Int) throws(SessionStoreError) {
        let blob: [UInt8]
        do { blob = try ASPNETSessionStateFormat.encode(SessionStateStoreData(timeout: timeout), compressed: configuration.compressionEnabled) } catch {
            throw SessionStoreError(.refused, error.description, underlying: error)
        }
        try expect(try request("PUT", key, [("Timeout", "\(timeout)"), ("ExtraFlags", "1")], body: blob), [200])
    }

    /// A state server keeps each application's sessions apart: whether another application has
    /// this ID cannot be asked, so a cookie ID not found here is never adopted.
    public func containsSession(id: String) throws(SessionStoreError) -> Bool {
        false
    }

    /// With `session-state-server`, one request that the server answers when the lock is
    /// released (or at the deadline); with aspnet_state, ASP.NET's 500 ms polling.
    public func waitForRelease(_ key: SessionKey, lockID: LockID, deadline: ContinuousClock.Instant) {
        let remaining = deadline - .now
        guard remaining > .zero else { return }
        guard supports(\.wait) else {
            let wake = min(deadline, ContinuousClock.now + .milliseconds(500))
            let pause = wake - ContinuousClock.now
            if pause > .zero { Thread.sleep(forTimeInterval: Double(pause.milliseconds) / 1000) }
            return
        }
        do {
            // The answer comes when the lock goes; the next acquire decides who gets it.
            _ = try request("GET", key, [("X-SessionHost-Wait", "\(max(1, remaining.milliseconds))"), ("X-SessionHost-Wait-Only", "1")], extraWait: remaining)
        } catch {
            // The acquire that follows reports the failure; waiting here would only delay it.
            logger.debug("state server wait failed", metadata: ["error": "\(error)"])
        }
    }

    /// Closes the kept connections.
    public func close() {
        idle.withLock { $0.removeAll() }
    }

    // MARK: Requests

    private func lookup(_ reply: StateServerReply, key: SessionKey) throws(SessionStoreError) -> StoreLookup {
        switch reply.status {
        case 200:
            let data: SessionStateStoreData
            do { data = try ASPNETSessionStateFormat.decode(reply.body, compressed: configuration.compressionEnabled) } catch {
                throw SessionStoreError(.corrupt, "the session \(key) cannot be read: \(error.description)", underlying: error)
            }
            let lockID = reply.header("lockcookie").flatMap(Int.init).map(LockID.init)
            return .found(data, lockID: lockID, actions: reply.header("actionflags") == "1" ? .initializeItem : .none)
        case 404:
            return .notFound
        case 423:
            guard let cookie = reply.header("lockcookie").flatMap(Int.init) else {
                throw SessionStoreError(.refused, "the state server answered 423 without a lock cookie")
            }
            return .locked(lockAge: lockAge(reply), lockID: LockID(cookie))
        default:
            throw unexpected(reply)
        }
    }

    /// `LockAge` in seconds, else from `LockDate` (local-time ticks), as ASP.NET's client; an
    /// age of a year or more counts as 0.
    private func lockAge(_ reply: StateServerReply) -> Duration {
        if let seconds = reply.header("lockage").flatMap(Int.init), seconds >= 0, seconds < 365 * 86_400 {
            return .seconds(seconds)
        }
        if let ticks = reply.header("lockdate").flatMap(Int64.init) {
            let now = Date()
            let local = now.timeIntervalSince1970 + Double(TimeZone.current.secondsFromGMT(for: now))
            let age = local - Double(ticks - 621_355_968_000_000_000) / 10_000_000
            if age >= 0, age < 365 * 86_400 { return .milliseconds(Int(age * 1000)) }
        }
        return .zero
    }

    private func expect(_ reply: StateServerReply, _ statuses: Set<Int>) throws(SessionStoreError) {
        guard statuses.contains(reply.status) else { throw unexpected(reply) }
    }

    private func unexpected(_ reply: StateServerReply) -> SessionStoreError {
        let detail = String(decoding: reply.body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if reply.status == 400 {
            return SessionStoreError(.refused, "Unable to make the session state request to the session state server. The session state server is running, but the request is not formatted correctly (400: \(detail)).")
        }
        return SessionStoreError(.refused, "the state server answered \(reply.status)\(detail.isEmpty ? "" : ": \(detail)")")
    }

    private func supports(_ feature: KeyPath<Extensions, Bool>) -> Bool {
        extensions.withLock { $0[keyPath: feature] }
    }

    /// One request on a kept connection (or a new one). Kept connections the server closed
    /// while idle are dropped before use; a request that fails on a kept connection anyway is
    /// sent again on a new one only when repeating it cannot change anything (a plain GET or a
    /// HEAD): a repeated acquire would find its own lock.
    private func request(_ verb: String, _ key: SessionKey, _ headers: [(String, String)], body: [UInt8]? = nil, extraWait: Duration = .zero) throws(SessionStoreError) -> StateServerReply {
        let target = resource(key)
        let repeatable = verb == "HEAD" || (verb == "GET" && !headers.contains { $0.0 == "Exclusive" })
        var attempt = 0
        while true {
            attempt += 1
            var reused: StateServerConnection?
            while reused == nil, let kept = idle.withLock({ $0.popLast() }) {
                if kept.isOpen { reused = kept }
            }
            let connection: StateServerConnection
            if let reused { connection = reused } else { connection = try connect() }
            if extraWait > .zero { connection.setTimeout(configuration.networkTimeout + extraWait) }
            do {
                let reply = try connection.exchange(verb: verb, target: target, headers: headers, body: body)
                if extraWait > .zero { connection.setTimeout(configuration.networkTimeout) }
                noteExtensions(reply)
                if !reply.closes {
                    idle.withLock { if $0.count < configuration.maxIdleConnections { $0.append(connection) } }
                }
                health.succeeded(logger: logger, server: "\(configuration.address)")
                return reply
            } catch {
                guard reused != nil, attempt == 1, repeatable, error.kind == .unavailable else {
                    health.failed(error, logger: logger, server: "\(configuration.address)")
                    throw error
                }
            }
        }
    }

    /// Reads the extensions the server offers from every answer (the server at an address may
    /// be replaced by another kind).
    private func noteExtensions(_ reply: StateServerReply) {
        let offered = reply.header("x-sessionhost")?.lowercased() ?? ""
        let current = Extensions(known: true, wait: offered.contains("wait"), strictLock: offered.contains("strict-lock"))
        extensions.withLock { extensions in
            if extensions.wait != current.wait || extensions.strictLock != current.strictLock || !extensions.known { extensions = current }
        }
    }

    /// Connect failures, before a connection exists, count too.
    private func connect() throws(SessionStoreError) -> StateServerConnection {
        do { return try StateServerConnection(address: configuration.address, timeout: configuration.networkTimeout) } catch {
            health.failed(error, logger: logger, server: "\(configuration.address)")
            throw error
        }
    }

    /// ASP.NET's resource for `key`: `<app id>(<Base64 SHA-256 of the app id>)/<session ID>`,
    /// URL-encoded as `HttpUtility.UrlEncode` does.
    func resource(_ key: SessionKey) -> String {
        let prefix = keyPrefixes.withLock { prefixes -> String in
            if let known = prefixes[key.application] { return known }
            let application = key.application.hasPrefix("/") ? key.application : "/" + key.application
            let hash = Data(SHA256.hash(data: Data(application.utf8))).base64EncodedString()
            let prefix = Self.urlEncode(application + "(" + hash + ")/")
            if prefixes.count < 10_000 { prefixes[key.application] = prefix }
            return prefix
        }
        return prefix + Self.urlEncode(key.id)
    }

    /// `HttpUtility.UrlEncode`: letters, digits and `-_.!*()` stay, a space becomes `+`, every
    /// other byte of the UTF-8 is `%xx` in lower case.
    static func urlEncode(_ text: String) -> String {
        var encoded = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "!"), UInt8(ascii: "*"), UInt8(ascii: "("), UInt8(ascii: ")"):
                encoded.unicodeScalars.append(UnicodeScalar(byte))
            case UInt8(ascii: " "):
                encoded += "+"
            default:
                encoded += "%" + String(byte >> 4, radix: 16) + String(byte & 0xF, radix: 16)
            }
        }
        return encoded
    }
}
