import Foundation

/// Where a session lives in a store: the application (sessions of different applications are
/// kept apart, as ASP.NET's stores partition by application) and the session ID.
public struct SessionKey: Hashable, Sendable, CustomStringConvertible {
    public var application: String
    public var id: String

    public init(application: String, id: String) {
        self.application = application
        self.id = id
    }

    /// For logs: the session ID shortened to its first four characters, so that a log line
    /// names a session without handing out the ID that opens it.
    public var description: String { "\(application)#\(id.prefix(4))…" }
}

/// What a store keeps for a session: its items and its timeout.
public struct SessionStateStoreData: Sendable {
    public var items: SessionItems
    /// Minutes.
    public var timeout: Int
    /// The static objects of an ASP.NET session (global.asax `<object scope="session">`) as
    /// ASP.NET serialized them; kept and written back unchanged.
    package var dotNetStaticObjects: [UInt8]?

    public init(items: SessionItems = SessionItems(), timeout: Int) {
        self.items = items
        self.timeout = timeout
    }
}

/// Identifies one holder of a session's exclusive lock ("lock cookie"); a new one per acquire.
public struct LockID: Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int

    public init(_ rawValue: Int) { self.rawValue = rawValue }

    public var description: String { "\(rawValue)" }
}

/// `SessionStateActions`: `initializeItem` when the item was created uninitialized and this is
/// its first read (the session counts as new).
public enum SessionStateActions: Sendable, Hashable {
    case none
    case initializeItem
}

/// The answer of `getItem`/`getItemExclusive`.
public enum StoreLookup: Sendable {
    /// The item; `lockID` is the lock taken (exclusive reads only).
    case found(SessionStateStoreData, lockID: LockID?, actions: SessionStateActions)
    /// Another request holds the lock: since how long, and its lock.
    case locked(lockAge: Duration, lockID: LockID)
    case notFound
}

/// Why a session ended.
public enum SessionEndReason: String, Sendable {
    case expired
    case abandoned
}

/// A store that cannot do what was asked, and why: the host answers `unavailable` and
/// `timeout` with 503 and `Retry-After` (the request may succeed later), the others with an
/// error page.
public struct SessionStoreError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The store cannot be reached (refused, reset, closed, name not found).
        case unavailable
        /// The store did not answer in time.
        case timeout
        /// The stored session cannot be read.
        case corrupt
        /// A write was refused because this request no longer holds the session's lock (it was
        /// broken and taken by another request); nothing was saved.
        case lockLost
        /// The store refused the request (too large, full, a protocol error).
        case refused
        /// The store's settings are wrong.
        case configuration
    }

    public var kind: Kind
    /// What happened, for logs (never a password or a raw session ID).
    public var message: String
    /// The error underneath, if any.
    public var underlying: (any Error & Sendable)?

    public init(_ kind: Kind, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.kind = kind
        self.message = message
        self.underlying = underlying
    }

    /// Whether the request may succeed if tried again later (503 with `Retry-After`).
    public var isTransient: Bool { kind == .unavailable || kind == .timeout }

    public var description: String { message }
}

/// A session-state store: ASP.NET's `SessionStateStoreProviderBase`. The request pipeline calls
/// it on worker threads and may block; an out-of-process store does its I/O in these calls.
///
/// Locking contract: `getItemExclusive` takes the lock when it is free and answers `.locked`
/// when another request holds it; `setAndReleaseItemExclusive`, `releaseItemExclusive` and
/// `removeItem` act only when given the current holder's `LockID` (a broken lock's old holder
/// is ignored).
public protocol SessionStateStore: Sendable {
    /// Registers the handler of ended sessions (`Session_End`); returns whether this store calls
    /// it (only stores that see expiry happen can).
    func setItemExpireCallback(_ callback: @escaping @Sendable (SessionKey, SessionStateStoreData, SessionEndReason) -> Void) -> Bool

    /// Reads the item without locking (read-only requests); refreshes its expiry.
    func getItem(_ key: SessionKey) throws(SessionStoreError) -> StoreLookup
    /// Reads the item and takes its lock (read-write requests); refreshes its expiry.
    func getItemExclusive(_ key: SessionKey) throws(SessionStoreError) -> StoreLookup
    /// Unlocks without saving (nothing changed, or the handler failed). Also breaks a stale lock
    /// when given the stale holder's ID.
    func releaseItemExclusive(_ key: SessionKey, lockID: LockID) throws(SessionStoreError)
    /// Saves and unlocks; `newItem` inserts a session the store has not seen (no lock then).
    func setAndReleaseItemExclusive(_ key: SessionKey, data: SessionStateStoreData, lockID: LockID?, newItem: Bool) throws(SessionStoreError)
    /// Deletes the item (Abandon); with a nil lock only when nobody holds it. `data` is the
    /// session as the abandoning request left it, for Session_End (nil: the stored copy).
    func removeItem(_ key: SessionKey, lockID: LockID?, data: SessionStateStoreData?) throws(SessionStoreError)
    /// Refreshes the expiry of a session a request did not need to read.
    func resetItemTimeout(_ key: SessionKey) throws(SessionStoreError)
    /// Inserts an empty item that the next read reports as new (`.initializeItem`); never
    /// replaces an existing one.
    func createUninitializedItem(_ key: SessionKey, timeout: Int) throws(SessionStoreError)
    /// Whether any application has a live session with this ID (an ID counts as known then).
    func containsSession(id: String) throws(SessionStoreError) -> Bool
    /// Blocks until the lock `lockID` on `key` may have been released or `deadline` passes.
    /// Out-of-process stores poll (the default); an in-process store wakes at the release.
    func waitForRelease(_ key: SessionKey, lockID: LockID, deadline: ContinuousClock.Instant)
    /// Whether a request whose session cannot be read because the store is down or slow runs
    /// anyway, with an empty session that is never written back (Microsoft's Redis provider's
    /// `throwOnError="false"`); false (the default): it gets 503 with `Retry-After`.
    var failsOpen: Bool { get }

    /// Where the store keeps its sessions, for the status page and metrics: `memory`, a host
    /// and port, a file, a database; never a password. Default: the type's name.
    var statusLocation: String { get }

    /// Sessions the store holds now, where it knows without scanning (InProc); nil otherwise.
    var liveSessionCount: Int? { get }
}

extension SessionStateStore {
    public var failsOpen: Bool { false }
    public var statusLocation: String { String(describing: type(of: self)) }
    public var liveSessionCount: Int? { nil }

    public func createNewStoreData(timeout: Int) -> SessionStateStoreData {
        SessionStateStoreData(timeout: timeout)
    }

    /// Polls every 500 ms, ASP.NET's interval.
    public func waitForRelease(_ key: SessionKey, lockID: LockID, deadline: ContinuousClock.Instant) {
        let wake = min(deadline, ContinuousClock.now + .milliseconds(500))
        let remaining = wake - ContinuousClock.now
        if remaining > .zero { Thread.sleep(forTimeInterval: Double(remaining.components.seconds) + Double(remaining.components.attoseconds) / 1e18) }
    }
}
