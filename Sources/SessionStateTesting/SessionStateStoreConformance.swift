public import SessionState
import Foundation
import Testing

/// The contract every `SessionStateStore` keeps (ASP.NET's `SessionStateStoreProviderBase` as
/// SessionHost's pipeline relies on it), as checks a store's own tests call:
///
/// ```swift
/// @Test func conformance() throws {
///     try SessionStateStoreConformance(store: MyStore(...)).checkAll()
/// }
/// ```
///
/// Every check uses fresh session IDs, so the checks may share one store (and one server).
/// Expiry needs a clock the test controls: pass `advanceClock` for stores that measure time
/// with an injected `SessionClock` (InProc); without it the expiry checks are skipped.
public struct SessionStateStoreConformance: Sendable {
    public let store: any SessionStateStore
    /// Moves the store's clock forward (nil: the store's clock cannot be moved from the test).
    public let advanceClock: (@Sendable (Duration) -> Void)?
    /// The application the checks' sessions belong to.
    public let application: String

    public init(store: any SessionStateStore, application: String = "/LM/W3SVC/1/ROOT/conformance", advanceClock: (@Sendable (Duration) -> Void)? = nil) {
        self.store = store
        self.application = application
        self.advanceClock = advanceClock
    }

    /// Runs every check.
    public func checkAll() throws {
        try newItemsAreFoundUnlockedAndClean()
        try theExclusiveLockIsReportedToOtherReaders()
        try aStaleHoldersWriteIsRefused()
        try uninitializedItemsAreNewOnTheirFirstReadOnly()
        try removeNeedsTheHoldersLock()
        try resetAndUnknownSessionsAreHarmless()
        try aWaiterReturnsWhenTheLockIsReleased()
        try valuesOfEveryKindRoundTrip()
        if advanceClock != nil { try expirySlidesOnEveryAccess() }
    }

    func key(_ id: String = ASPNETSessionID.generate()) -> SessionKey {
        SessionKey(application: application, id: id)
    }

    func data(_ value: Int, timeout: Int = 20) -> SessionStateStoreData {
        var items = SessionItems()
        items["v"] = .int(value)
        return SessionStateStoreData(items: items, timeout: timeout)
    }

    func value(_ lookup: StoreLookup) -> Int? {
        guard case .found(let data, _, _) = lookup, case .int(let value)? = data.items["v"] else { return nil }
        return value
    }

    func lockID(_ lookup: StoreLookup) -> LockID? {
        guard case .found(_, let lockID, _) = lookup else { return nil }
        return lockID
    }

    func holder(_ lookup: StoreLookup) -> LockID? {
        guard case .locked(_, let lockID) = lookup else { return nil }
        return lockID
    }

    func isNotFound(_ lookup: StoreLookup) -> Bool {
        if case .notFound = lookup { return true }
        return false
    }

    // MARK: Checks

    public func newItemsAreFoundUnlockedAndClean() throws {
        let key = key()
        #expect(isNotFound(try store.getItem(key)))
        #expect(isNotFound(try store.getItemExclusive(key)))
        var items = SessionItems()
        items["Name"] = .string("alice")
        items["n"] = .int(4)
        try store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(items: items, timeout: 25), lockID: nil, newItem: true)
        guard case .found(let stored, let lock, let actions) = try store.getItem(key) else {
            Issue.record("a new item is not found")
            return
        }
        #expect(stored.timeout == 25)
        #expect(stored.items.keys == ["Name", "n"])
        #expect(stored.items.isDirty == false)
        #expect(lock == nil)
        #expect(actions == .none)
        // Another application's session under the same ID is another session.
        #expect(isNotFound(try store.getItem(SessionKey(application: application + "/other", id: key.id))))
    }

    public func theExclusiveLockIsReportedToOtherReaders() throws {
        let key = key()
        try store.setAndReleaseItemExclusive(key, data: data(1), lockID: nil, newItem: true)
        let first = try #require(lockID(try store.getItemExclusive(key)))
        #expect(holder(try store.getItemExclusive(key)) == first)
        #expect(holder(try store.getItem(key)) == first)  // read-only readers wait too
        // A release by anyone but the holder changes nothing.
        try store.releaseItemExclusive(key, lockID: LockID(first.rawValue + 1000))
        #expect(holder(try store.getItem(key)) == first)
        try store.releaseItemExclusive(key, lockID: first)
        let second = try #require(lockID(try store.getItemExclusive(key)))
        #expect(second != first)
        // The old holder's release is ignored.
        try store.releaseItemExclusive(key, lockID: first)
        #expect(holder(try store.getItem(key)) == second)
        // Saving unlocks.
        try store.setAndReleaseItemExclusive(key, data: data(2), lockID: second, newItem: false)
        #expect(value(try store.getItem(key)) == 2)
        #expect(lockID(try store.getItem(key)) == nil)
    }

    /// A holder whose lock was broken (by a waiter, after the execution timeout) and taken by
    /// another request must not overwrite that request's changes, and must learn that it did
    /// not save (`lockLost`), never believe it did.
    public func aStaleHoldersWriteIsRefused() throws {
        let key = key()
        try store.setAndReleaseItemExclusive(key, data: data(1), lockID: nil, newItem: true)
        let stale = try #require(lockID(try store.getItemExclusive(key)))
        try store.releaseItemExclusive(key, lockID: stale)  // broken
        let current = try #require(lockID(try store.getItemExclusive(key)))
        // While the new holder holds it.
        #expect(throws: SessionStoreError.self) { try store.setAndReleaseItemExclusive(key, data: data(9), lockID: stale, newItem: false) }
        #expect(holder(try store.getItem(key)) == current)
        try store.setAndReleaseItemExclusive(key, data: data(5), lockID: current, newItem: false)
        // After the new holder saved and released.
        let error = #expect(throws: SessionStoreError.self) { try store.setAndReleaseItemExclusive(key, data: data(9), lockID: stale, newItem: false) }
        #expect(error?.kind == .lockLost)
        #expect(value(try store.getItem(key)) == 5)
    }

    public func uninitializedItemsAreNewOnTheirFirstReadOnly() throws {
        let key = key()
        try store.createUninitializedItem(key, timeout: 20)
        // Never replaces an existing item.
        try store.createUninitializedItem(key, timeout: 30)
        guard case .found(let first, let lock, let actions) = try store.getItemExclusive(key) else {
            Issue.record("an uninitialized item is not found")
            return
        }
        #expect(actions == .initializeItem)
        #expect(first.items.count == 0)
        #expect(first.timeout == 20)
        try store.setAndReleaseItemExclusive(key, data: data(3), lockID: lock, newItem: false)
        guard case .found(_, _, let later) = try store.getItem(key) else {
            Issue.record("the item is gone after its first save")
            return
        }
        #expect(later == .none)
        #expect(value(try store.getItem(key)) == 3)
        // An existing session is not replaced by an uninitialized one.
        try store.createUninitializedItem(key, timeout: 20)
        #expect(value(try store.getItem(key)) == 3)
    }

    public func removeNeedsTheHoldersLock() throws {
        let key = key()
        try store.setAndReleaseItemExclusive(key, data: data(8), lockID: nil, newItem: true)
        let lock = try #require(lockID(try store.getItemExclusive(key)))
        // Not the holder: nothing is removed (a store may say so with lockLost).
        do { try store.removeItem(key, lockID: LockID(lock.rawValue + 1), data: nil) } catch where error.kind == .lockLost {}
        #expect(holder(try store.getItem(key)) == lock)
        try store.removeItem(key, lockID: lock, data: nil)
        #expect(isNotFound(try store.getItem(key)))
        // An unlocked session is removed without a lock.
        let other = self.key()
        try store.setAndReleaseItemExclusive(other, data: data(1), lockID: nil, newItem: true)
        try store.removeItem(other, lockID: nil, data: nil)
        #expect(isNotFound(try store.getItem(other)))
    }

    public func resetAndUnknownSessionsAreHarmless() throws {
        let unknown = key()
        try store.resetItemTimeout(unknown)
        try store.releaseItemExclusive(unknown, lockID: LockID(1))
        try store.removeItem(unknown, lockID: nil, data: nil)
        #expect(isNotFound(try store.getItem(unknown)))
        let key = key()
        try store.setAndReleaseItemExclusive(key, data: data(4), lockID: nil, newItem: true)
        try store.resetItemTimeout(key)
        #expect(value(try store.getItem(key)) == 4)
    }

    /// `waitForRelease` returns once the holder releases (at the latest at its deadline), and at
    /// once when the lock is already gone.
    public func aWaiterReturnsWhenTheLockIsReleased() throws {
        let key = key()
        try store.setAndReleaseItemExclusive(key, data: data(1), lockID: nil, newItem: true)
        let lock = try #require(lockID(try store.getItemExclusive(key)))
        let store = self.store
        let released = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            do { try store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(timeout: 20), lockID: lock, newItem: false) } catch {
                Issue.record("the holder's save failed: \(error)")
            }
        }
        released.start()
        // The deadline is far: returning before it means the release was seen (a polling store
        // returns after its poll interval, also well before).
        let start = ContinuousClock.now
        store.waitForRelease(key, lockID: lock, deadline: .now + .seconds(30))
        #expect(ContinuousClock.now - start < .seconds(29))
        var lookup = try store.getItemExclusive(key)
        // A polling store may return before the release: wait again as the pipeline would.
        var rounds = 0
        while holder(lookup) != nil, rounds < 100 {
            store.waitForRelease(key, lockID: lock, deadline: .now + .seconds(30))
            lookup = try store.getItemExclusive(key)
            rounds += 1
        }
        let next = try #require(lockID(lookup))
        try store.releaseItemExclusive(key, lockID: next)
        // No lock: returns at once.
        let quick = ContinuousClock.now
        store.waitForRelease(key, lockID: next, deadline: .now + .seconds(30))
        #expect(ContinuousClock.now - quick < .seconds(29))
    }

    public func valuesOfEveryKindRoundTrip() throws {
        let key = key()
        var items = SessionItems()
        items["string"] = .string("grüße ✓")
        items["int"] = .int(-42)
        items["big"] = .int(1 << 40)
        items["double"] = .double(2.5)
        items["bool"] = .bool(true)
        items["date"] = .date(Date(timeIntervalSince1970: 1_700_000_000))
        items["data"] = .data(Data([0, 1, 255]))
        items["codable"] = .codable(["a", "b"])
        try store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(items: items, timeout: 20), lockID: nil, newItem: true)
        guard case .found(let back, _, _) = try store.getItem(key) else {
            Issue.record("the item is not found")
            return
        }
        #expect(back.items.keys == items.keys)
        if case .string(let text)? = back.items["string"] { #expect(text == "grüße ✓") } else { Issue.record("string") }
        if case .int(let number)? = back.items["int"] { #expect(number == -42) } else { Issue.record("int") }
        if case .int(let number)? = back.items["big"] { #expect(number == 1 << 40) } else { Issue.record("big") }
        if case .double(let number)? = back.items["double"] { #expect(number == 2.5) } else { Issue.record("double") }
        if case .bool(let flag)? = back.items["bool"] { #expect(flag) } else { Issue.record("bool") }
        if case .date(let date)? = back.items["date"] { #expect(date == Date(timeIntervalSince1970: 1_700_000_000)) } else { Issue.record("date") }
        if case .data(let bytes)? = back.items["data"] { #expect(bytes == Data([0, 1, 255])) } else { Issue.record("data") }
        #expect(back.items["codable"]?.decoded(as: [String].self) == ["a", "b"])
    }

    public func expirySlidesOnEveryAccess() throws {
        guard let advanceClock else { return }
        let key = key()
        try store.setAndReleaseItemExclusive(key, data: data(1, timeout: 1), lockID: nil, newItem: true)
        advanceClock(.seconds(50))
        try store.resetItemTimeout(key)
        advanceClock(.seconds(50))
        #expect(value(try store.getItem(key)) == 1)
        advanceClock(.seconds(61))
        #expect(isNotFound(try store.getItem(key)))
    }
}
