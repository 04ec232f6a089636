import Locking
public import Foundation


/// What a handler needs of a session domain.
public enum SessionAccess: String, Sendable, Hashable, Comparable {
    /// No session: nothing is read, locked or created (the session's expiry is still refreshed).
    case none
    /// Read, without the lock; waits while a writer holds it. Changes are refused.
    case readOnly
    /// Read and write, holding the session's exclusive lock for the whole request.
    case readWrite

    public static func < (lhs: SessionAccess, rhs: SessionAccess) -> Bool {
        let order: [SessionAccess] = [.none, .readOnly, .readWrite]
        return order.firstIndex(of: lhs)! < order.firstIndex(of: rhs)!
    }
}

/// A session operation that cannot be done.
public enum SessionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A change to a session the request holds read-only.
    case readOnly
    /// A timeout out of range; the message is the one ASP.NET (or ASP) gives.
    case invalidTimeout(String)
    /// Use after the request released the session.
    case released

    public var description: String {
        switch self {
        case .readOnly: "The session is read-only in this request (the handler or pages/@enableSessionState asked for ReadOnly); changes are not allowed."
        case .invalidTimeout(let message): message
        case .released: "The session was released at the end of its request and can no longer be used."
        }
    }
}

/// The values and state of one session during one request. Shared by both domains' session
/// objects; safe to use from any thread.
public final class SessionContents: Sendable {
    struct State {
        var items: SessionItems
        var timeout: Int
        var timeoutChanged = false
        var abandoned = false
        var released = false
        var readOnly: Bool
    }

    let isNew: Bool
    let timeoutRange: ClosedRange<Int>
    let timeoutMessage: @Sendable (Int) -> String
    let state: Locked<State>

    init(data: SessionStateStoreData, isNew: Bool, isReadOnly: Bool, timeoutRange: ClosedRange<Int>, timeoutMessage: @escaping @Sendable (Int) -> String) {
        self.isNew = isNew
        self.timeoutRange = timeoutRange
        self.timeoutMessage = timeoutMessage
        state = Locked(State(items: data.items, timeout: data.timeout, readOnly: isReadOnly))
    }

    func read<T>(_ body: (State) -> T) -> T {
        state.withLock { body($0) }
    }

    func change(_ body: (inout State) -> Void) throws(SessionError) {
        let outcome: SessionError? = state.withLock { state in
            if state.released { return .released }
            if state.readOnly { return .readOnly }
            body(&state)
            return nil
        }
        if let outcome { throw outcome }
    }

    var isReadOnly: Bool { state.withLock { $0.readOnly } }

    /// Runs `body` with the session writable (Session_Start may write in a read-only request).
    package func writable(_ body: () -> Void) {
        let wasReadOnly = state.withLock { state in
            defer { state.readOnly = false }
            return state.readOnly
        }
        body()
        state.withLock { $0.readOnly = wasReadOnly }
    }

    /// The state the release step works from; the session cannot be used afterwards.
    func finish() -> State {
        state.withLock { state in
            state.released = true
            return state
        }
    }
}

/// The API both session domains share: typed values, keys, timeout and abandon. Keys compare
/// ignoring case.
public protocol SessionObject: AnyObject, Sendable {
    var contents: SessionContents { get }
}

extension SessionObject {
    /// Whether the session started in this request.
    public var isNewSession: Bool { contents.isNew }
    /// Whether this request holds it read-only.
    public var isReadOnly: Bool { contents.isReadOnly }
    public var count: Int { contents.read { $0.items.count } }
    public var keys: [String] { contents.read { $0.items.keys } }
    /// The items in the order they were first set.
    public var elements: [(key: String, value: SessionValue)] { contents.read { $0.items.elements } }
    /// Whether `abandon()` was called in this request.
    public var isAbandoned: Bool { contents.read { $0.abandoned } }

    /// Minutes of inactivity after which the session ends.
    public var timeout: Int { contents.read { $0.timeout } }

    /// Changes this session's timeout (kept for the session from now on).
    public func setTimeout(_ minutes: Int) throws(SessionError) {
        guard contents.timeoutRange.contains(minutes) else { throw .invalidTimeout(contents.timeoutMessage(minutes)) }
        try contents.change { state in
            if state.timeout != minutes {
                state.timeout = minutes
                state.timeoutChanged = true
            }
        }
    }

    public subscript(key: String) -> SessionValue? {
        contents.read { $0.items[key] }
    }

    public func set(_ key: String, _ value: SessionValue) throws(SessionError) {
        try contents.change { $0.items[key] = value }
    }

    public func set(_ key: String, _ value: String) throws(SessionError) { try set(key, .string(value)) }
    public func set(_ key: String, _ value: Int) throws(SessionError) { try set(key, .int(value)) }
    public func set(_ key: String, _ value: Double) throws(SessionError) { try set(key, .double(value)) }
    public func set(_ key: String, _ value: Bool) throws(SessionError) { try set(key, .bool(value)) }
    public func set(_ key: String, _ value: Date) throws(SessionError) { try set(key, .date(value)) }
    public func set(_ key: String, _ value: Data) throws(SessionError) { try set(key, .data(value)) }
    /// Any `Codable` value; kept as the value in process, as JSON out of process.
    public func set<T: Codable & Sendable>(_ key: String, codable value: T) throws(SessionError) { try set(key, .codable(value)) }

    public func string(_ key: String) -> String? {
        if case .string(let value)? = self[key] { return value }
        return nil
    }

    public func int(_ key: String) -> Int? {
        if case .int(let value)? = self[key] { return value }
        return nil
    }

    public func double(_ key: String) -> Double? {
        switch self[key] {
        case .double(let value)?: value
        case .int(let value)?: Double(value)
        default: nil
        }
    }

    public func bool(_ key: String) -> Bool? {
        if case .bool(let value)? = self[key] { return value }
        return nil
    }

    public func date(_ key: String) -> Date? {
        if case .date(let value)? = self[key] { return value }
        return nil
    }

    public func data(_ key: String) -> Data? {
        if case .data(let value)? = self[key] { return value }
        return nil
    }

    /// The `Codable` value of type `T` stored under `key`.
    public func value<T: Codable & Sendable>(_ key: String, as type: T.Type) -> T? {
        self[key]?.decoded(as: type)
    }

    public func remove(_ key: String) throws(SessionError) {
        try contents.change { $0.items[key] = nil }
    }

    /// Removes every item (`Session.Clear` / `Contents.RemoveAll`).
    public func removeAll() throws(SessionError) {
        try contents.change { $0.items.removeAll() }
    }

    /// Ends the session once this request is done: the request keeps full access until then;
    /// the next request gets a new session. Allowed in read-only requests too.
    public func abandon() {
        contents.state.withLock { $0.abandoned = true }
    }
}

/// ASP.NET's `SessionStateMode`: where an application's sessions are kept.
public enum ASPNETSessionMode: String, Sendable, Hashable, CaseIterable {
    case off = "Off", inProc = "InProc", stateServer = "StateServer", sqlServer = "SQLServer", custom = "Custom"
}

/// ASP.NET's `HttpCookieMode`: where the session ID travels.
public enum ASPNETCookieMode: String, Sendable, Hashable, CaseIterable {
    case useUri = "UseUri", useCookies = "UseCookies", autoDetect = "AutoDetect", useDeviceProfile = "UseDeviceProfile"
}

/// The ASP.NET session (`HttpSessionState`) of a request.
public final class ASPNETSession: SessionObject {
    public let contents: SessionContents
    /// 24 characters `a–z0–5`.
    public let sessionID: String
    /// Where the session is stored (`sessionState/@mode`).
    public let mode: ASPNETSessionMode
    /// `sessionState/@cookieless`.
    public let cookieMode: ASPNETCookieMode
    /// Whether the ID travels in the URL in this request.
    public let isCookieless: Bool

    package init(contents: SessionContents, sessionID: String, mode: ASPNETSessionMode, cookieMode: ASPNETCookieMode, isCookieless: Bool) {
        self.contents = contents
        self.sessionID = sessionID
        self.mode = mode
        self.cookieMode = cookieMode
        self.isCookieless = isCookieless
    }

    /// The limits of `Session.Timeout` and ASP.NET's messages: 1 … 525 600 minutes (one year)
    /// for InProc and StateServer; other stores accept any positive value.
    package static func timeoutRule(mode: ASPNETSessionMode) -> (ClosedRange<Int>, @Sendable (Int) -> String) {
        let limited = mode == .inProc || mode == .stateServer
        return (1...(limited ? 525_600 : Int(Int32.max)), { minutes in
            if minutes <= 0 { return "The argument to SetTimeout must be greater than 0." }
            // ASP.NET's Timeout is an Int32: only Swift's wider Int can go past it in other modes.
            return limited ? "For InProc and StateServer modes, the session timeout value cannot be larger than one year." : "The session timeout value cannot be larger than \(Int32.max) minutes."
        })
    }
}

/// The classic ASP session (`Session`) of a request (`request.classicSession`).
public final class ClassicASPSession: SessionObject {
    public let contents: SessionContents
    /// `Session.SessionID`: a number (IIS's is a LONG).
    public let sessionID: Int
    /// The 24-letter value of the `ASPSESSIONID…` cookie.
    public let cookieValue: String

    package init(contents: SessionContents, cookieValue: String) {
        self.contents = contents
        self.cookieValue = cookieValue
        sessionID = ASPSessionID.number(of: cookieValue)
    }

    /// `Session.Timeout` in minutes: 1 … 1440, IIS's documented range.
    package static let timeoutRule: (ClosedRange<Int>, @Sendable (Int) -> String) = (1...1440, { minutes in
        "Session.Timeout must be between 1 and 1440 minutes; \(minutes) is not."
    })
}
