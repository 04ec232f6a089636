import Locking
package import Logging

/// The request-independent half of a session domain's pipeline (ASP.NET's
/// `SessionStateModule` without the HTTP): acquiring a session from its store with ASP.NET's
/// locking rules, and the release decision table. The host adds IDs, cookies and URLs.
package final class SessionDomain: Sendable {
    /// "ASP.NET" or "ASP", for logs.
    package let name: String
    package let store: any SessionStateStore
    /// Requests that may wait for one session's lock at once; more get `queueLimitExceeded`.
    package let queueLimit: Int
    /// Whether a Session_Start handler exists: new sessions are then always kept.
    package let hasStartHandler: Bool
    private let endHandler: (@Sendable (EndedSession) -> Void)?
    /// Whether the store reports ended sessions (only then is Session_End raised).
    package let raisesEnd: Bool
    private let waiting = Locked<[SessionKey: Int]>([:])
    private let logger: Logger
    /// Lock waits, refusals, broken locks and store calls, for the status page and metrics.
    package let counters = SessionDomainCounters()

    package init(
        name: String, store: any SessionStateStore, queueLimit: Int = 50, hasStartHandler: Bool,
        onEnd: (@Sendable (EndedSession) -> Void)?, logger: Logger
    ) {
        self.name = name
        self.store = store
        self.queueLimit = queueLimit
        self.hasStartHandler = hasStartHandler
        self.logger = logger
        endHandler = onEnd
        let domainName = name
        let endLogger = logger
        raisesEnd = store.setItemExpireCallback { key, data, reason in
            endLogger.debug("\(domainName) session ended", metadata: ["session": "\(key)", "reason": "\(reason.rawValue)"])
            onEnd?(EndedSession(key: key, items: data.items, timeout: data.timeout, reason: reason))
        }
    }

    package enum AcquireError: Error, Sendable, CustomStringConvertible {
        case queueLimitExceeded
        case store(SessionStoreError)

        package var description: String {
            switch self {
            case .queueLimitExceeded: "The request queue limit of the session is exceeded."
            case .store(let error): "The session-state store failed: \(error.message)"
            }
        }
    }

    /// A session read from the store.
    package struct Acquired: Sendable {
        package var data: SessionStateStoreData
        /// The lock taken (read-write requests).
        package var lockID: LockID?
        /// The item was created uninitialized: the session counts as new.
        package var initialize: Bool
    }

    /// Reads `key`, taking its lock when `exclusive`. While another request holds the lock it
    /// waits (woken at the release by in-process stores); a lock held longer than
    /// `executionTimeout` is broken, with a warning. Nil: the store has no such session.
    package func acquire(_ key: SessionKey, exclusive: Bool, executionTimeout: Duration) throws(AcquireError) -> Acquired? {
        var queued = false
        var waitedSince: ContinuousClock.Instant?
        defer {
            if queued { waiting.withLock { $0[key] = ($0[key] ?? 1) > 1 ? $0[key]! - 1 : nil } }
            if let waitedSince {
                counters.lockWaits.wrappingAdd(1, ordering: .relaxed)
                counters.lockWaitNanoseconds.wrappingAdd(SessionDomainCounters.nanoseconds(.now - waitedSince), ordering: .relaxed)
            }
        }
        while true {
            let lookup: StoreLookup
            do {
                lookup = try counters.measure { () throws(SessionStoreError) -> StoreLookup in
                    exclusive ? try store.getItemExclusive(key) : try store.getItem(key)
                }
            } catch { throw .store(error) }
            switch lookup {
            case .found(let data, let lockID, let actions):
                return Acquired(data: data, lockID: lockID, initialize: actions == .initializeItem)
            case .notFound:
                return nil
            case .locked(let lockAge, let holder):
                if lockAge >= executionTimeout {
                    logger.warning("\(name) session lock held for \(lockAge) (over the execution timeout of \(executionTimeout)): breaking it; the holder's changes will be discarded", metadata: [
                        "session": "\(key)", "lock": "\(holder)",
                    ])
                    counters.staleLocksBroken.wrappingAdd(1, ordering: .relaxed)
                    do { try measure { () throws(SessionStoreError) in try store.releaseItemExclusive(key, lockID: holder) } } catch { throw .store(error) }
                    continue
                }
                if !queued {
                    let admitted = waiting.withLock { waiting in
                        let count = (waiting[key] ?? 0) + 1
                        guard count <= queueLimit else { return false }
                        waiting[key] = count
                        return true
                    }
                    guard admitted else {
                        counters.queueLimitRefusals.wrappingAdd(1, ordering: .relaxed)
                        throw .queueLimitExceeded
                    }
                    queued = true
                }
                if waitedSince == nil { waitedSince = .now }
                BlockingHint.willBlock()
                store.waitForRelease(key, lockID: holder, deadline: .now + (executionTimeout - lockAge))
            }
        }
    }

    /// Runs one call of the host's to this domain's store, counted in `counters`.
    package func measure<T>(_ call: () throws(SessionStoreError) -> T) throws(SessionStoreError) -> T {
        try counters.measure(call)
    }

    /// What the release step did.
    package enum ReleaseOutcome: Sendable, Hashable {
        /// A new session nobody used: not stored (ASP.NET's rule); a cookie issued for it should
        /// be withdrawn.
        case discardedNew
        case saved
        /// Unlocked without saving, or nothing to do (read-only).
        case unchanged
        case abandoned
    }

    /// ASP.NET's ReleaseRequestState table. `storeHadItem`: the session came from the store
    /// (not created in this request); `failed`: the handler threw, so changes are discarded.
    package func release(
        _ key: SessionKey, contents: SessionContents, lockID: LockID?, storeHadItem: Bool, exclusive: Bool, failed: Bool
    ) throws(SessionStoreError) -> ReleaseOutcome {
        let state = contents.finish()
        let data = SessionStateStoreData(items: state.items, timeout: state.timeout)
        if state.abandoned {
            if storeHadItem {
                try measure { () throws(SessionStoreError) in try store.removeItem(key, lockID: lockID, data: data) }
            } else if raisesEnd {
                endHandler?(EndedSession(key: key, items: data.items, timeout: data.timeout, reason: .abandoned))
            }
            return .abandoned
        }
        if contents.isNew, !storeHadItem, !state.items.isDirty, !hasStartHandler {
            return .discardedNew
        }
        let keep = exclusive || (contents.isNew && !storeHadItem && hasStartHandler)
        if keep, !failed, contents.isNew || state.items.isDirty || state.timeoutChanged {
            do {
                try measure { () throws(SessionStoreError) in try store.setAndReleaseItemExclusive(key, data: data, lockID: lockID, newItem: !storeHadItem) }
            } catch {
                // Not saved (a value that cannot be serialized, a store that refused or failed):
                // the lock is given back, or every later request of the session would wait for
                // the execution timeout. A lost lock is someone else's now.
                if error.kind != .lockLost, let lockID, storeHadItem {
                    do { try measure { () throws(SessionStoreError) in try store.releaseItemExclusive(key, lockID: lockID) } } catch {
                        logger.warning("\(name) session lock could not be released after a failed save", metadata: ["session": "\(key)", "error": "\(error)"])
                    }
                }
                throw error
            }
            return .saved
        }
        if let lockID, storeHadItem {
            try measure { () throws(SessionStoreError) in try store.releaseItemExclusive(key, lockID: lockID) }
        }
        return .unchanged
    }

    /// Ends a session that the store could not give this request (a store that fails open, see
    /// `SessionStateStore.failsOpen`) without writing anything. True when the handler changed it:
    /// those changes are lost, and the caller says so.
    package func discardDetached(_ contents: SessionContents) -> Bool {
        let state = contents.finish()
        return state.items.isDirty || state.timeoutChanged || state.abandoned
    }

    /// A new session's contents (`CreateNewStoreData`).
    package func newContents(timeout: Int, readOnly: Bool, rule: (ClosedRange<Int>, @Sendable (Int) -> String)) -> SessionContents {
        SessionContents(data: store.createNewStoreData(timeout: timeout), isNew: true, isReadOnly: readOnly, timeoutRange: rule.0, timeoutMessage: rule.1)
    }

    /// The contents of a session read from the store.
    package func contents(of acquired: Acquired, readOnly: Bool, rule: (ClosedRange<Int>, @Sendable (Int) -> String)) -> SessionContents {
        SessionContents(data: acquired.data, isNew: acquired.initialize, isReadOnly: readOnly, timeoutRange: rule.0, timeoutMessage: rule.1)
    }
}

/// A session that ended (Session_End / Session_OnEnd): what it held, read-only.
public struct EndedSession: Sendable {
    public var key: SessionKey
    public var items: SessionItems
    public var timeout: Int
    public var reason: SessionEndReason
}
