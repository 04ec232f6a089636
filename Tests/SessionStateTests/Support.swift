import Locking
import Dispatch
import Foundation
import Synchronization
import Testing
@testable import SessionState

/// A deterministic generator (SplitMix64) so that random-looking tests replay exactly.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Collects values from any thread.
final class Recorder<Value: Sendable>: Sendable {
    private let values = Locked<[Value]>([])

    func append(_ value: Value) { values.withLock { $0.append(value) } }
    var all: [Value] { values.withLock { $0 } }
    var count: Int { values.withLock { $0.count } }
}

/// One end of a session as a store's expire callback reports it.
struct EndCall: Sendable {
    var key: SessionKey
    var data: SessionStateStoreData
    var reason: SessionEndReason
}

/// A store's expire callback that records every call.
func recordEnds(of store: InProcSessionStore) -> Recorder<EndCall> {
    let recorder = Recorder<EndCall>()
    #expect(store.setItemExpireCallback { key, data, reason in recorder.append(EndCall(key: key, data: data, reason: reason)) })
    return recorder
}

/// Runs `body` on a new thread (never on the test's cooperative pool, since helpers block); the
/// semaphore is signalled when it returns.
@discardableResult
func spawn(_ body: @escaping @Sendable () -> Void) -> DispatchSemaphore {
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        body()
        done.signal()
    }
    return done
}

extension DispatchSemaphore {
    /// Waits at most `seconds`; true when signalled.
    func wait(seconds: Double) -> Bool {
        wait(timeout: .now() + seconds) == .success
    }
}

/// Items built from literal pairs.
func items(_ pairs: KeyValuePairs<String, SessionValue>) -> SessionItems {
    var items = SessionItems()
    for (key, value) in pairs { items[key] = value }
    return items
}

/// Whether two values are the same, bit for bit where floating point is involved.
func same(_ lhs: SessionValue, _ rhs: SessionValue) -> Bool {
    switch (lhs, rhs) {
    case (.string(let a), .string(let b)): a == b && Array(a.utf8) == Array(b.utf8)
    case (.int(let a), .int(let b)): a == b
    case (.double(let a), .double(let b)): a.bitPattern == b.bitPattern
    case (.bool(let a), .bool(let b)): a == b
    case (.date(let a), .date(let b)): a.timeIntervalSinceReferenceDate.bitPattern == b.timeIntervalSinceReferenceDate.bitPattern
    case (.data(let a), .data(let b)): a == b
    case (.encoded(let a), .encoded(let b)): a == b
    default: false
    }
}

/// The lookup's data, when found.
extension StoreLookup {
    var data: SessionStateStoreData? {
        if case .found(let data, _, _) = self { return data }
        return nil
    }

    var lockID: LockID? {
        if case .found(_, let lockID, _) = self { return lockID }
        return nil
    }

    var actions: SessionStateActions? {
        if case .found(_, _, let actions) = self { return actions }
        return nil
    }

    var isNotFound: Bool {
        if case .notFound = self { return true }
        return false
    }

    /// (lock age, holder) when locked by someone else.
    var locked: (age: Duration, holder: LockID)? {
        if case .locked(let age, let holder) = self { return (age, holder) }
        return nil
    }
}

/// A store that delegates to an in-process store and signals whenever a request starts waiting
/// for a lock (a waiter is then counted in the domain's queue), and can pretend not to report
/// expiry (as out-of-process stores).
final class ObservedStore: SessionStateStore {
    let inner: InProcSessionStore
    let reportsEnd: Bool
    /// Signalled at the start of every `waitForRelease`.
    let waitStarted = DispatchSemaphore(value: 0)

    init(_ inner: InProcSessionStore, reportsEnd: Bool = true) {
        self.inner = inner
        self.reportsEnd = reportsEnd
    }

    func setItemExpireCallback(_ callback: @escaping @Sendable (SessionKey, SessionStateStoreData, SessionEndReason) -> Void) -> Bool {
        guard reportsEnd else { return false }
        return inner.setItemExpireCallback(callback)
    }

    func getItem(_ key: SessionKey) -> StoreLookup { inner.getItem(key) }
    func getItemExclusive(_ key: SessionKey) -> StoreLookup { inner.getItemExclusive(key) }
    func releaseItemExclusive(_ key: SessionKey, lockID: LockID) { inner.releaseItemExclusive(key, lockID: lockID) }
    func setAndReleaseItemExclusive(_ key: SessionKey, data: SessionStateStoreData, lockID: LockID?, newItem: Bool) throws(SessionStoreError) {
        try inner.setAndReleaseItemExclusive(key, data: data, lockID: lockID, newItem: newItem)
    }
    func removeItem(_ key: SessionKey, lockID: LockID?, data: SessionStateStoreData?) { inner.removeItem(key, lockID: lockID, data: data) }
    func resetItemTimeout(_ key: SessionKey) { inner.resetItemTimeout(key) }
    func createUninitializedItem(_ key: SessionKey, timeout: Int) { inner.createUninitializedItem(key, timeout: timeout) }
    func containsSession(id: String) -> Bool { inner.containsSession(id: id) }

    func waitForRelease(_ key: SessionKey, lockID: LockID, deadline: ContinuousClock.Instant) {
        waitStarted.signal()
        inner.waitForRelease(key, lockID: lockID, deadline: deadline)
    }
}

extension Duration {
    static func minutes(_ minutes: Int) -> Duration { .seconds(minutes * 60) }
}

struct Cart: Codable, Sendable, Equatable {
    var lines: [String]
    var total: Double
    var note: String?
}
