import Dispatch
import Foundation
import Testing
@testable import SessionState
import SessionStateTesting

struct InProcSessionStoreTests {
    let clock = ManualSessionClock()
    let store: InProcSessionStore
    let ends: Recorder<EndCall>

    init() {
        store = InProcSessionStore(clock: clock)
        ends = recordEnds(of: store)
    }

    static func key(_ id: String = ASPNETSessionID.generate(), app: String = "/") -> SessionKey {
        SessionKey(application: app, id: id)
    }

    /// Inserts a new session holding `value` under "v".
    func insert(_ key: SessionKey, timeout: Int = 20, value: Int = 1) {
        try? store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(items: items(["v": .int(value)]), timeout: timeout), lockID: nil, newItem: true)
    }

    func value(_ key: SessionKey) -> Int? {
        guard case .int(let value)? = store.getItem(key).data?.items["v"] else { return nil }
        return value
    }

    // MARK: Basics

    @Test func aNewItemIsFoundWithItsDataUnlockedAndClean() {
        let key = Self.key()
        #expect(store.getItem(key).isNotFound)
        #expect(store.getItemExclusive(key).isNotFound)
        var data = SessionStateStoreData(items: items(["Name": .string("alice"), "n": .int(3)]), timeout: 25)
        #expect(data.items.isDirty)
        data.items["n"] = .int(4)
        try? store.setAndReleaseItemExclusive(key, data: data, lockID: nil, newItem: true)
        let found = store.getItem(key)
        let stored = found.data
        #expect(stored?.timeout == 25)
        #expect(stored?.items.keys == ["Name", "n"])
        #expect(stored?.items["n"].map { same($0, .int(4)) } == true)
        #expect(stored?.items.isDirty == false)
        #expect(found.lockID == nil)
        #expect(found.actions == SessionStateActions.none)
        #expect(store.count == 1)
        #expect(ends.count == 0)
    }

    @Test func applicationsAreSeparateButShareTheIDSpace() {
        let id = ASPNETSessionID.generate()
        let root = Self.key(id, app: "/")
        let shop = Self.key(id, app: "/shop")
        #expect(!store.containsSession(id: id))
        insert(root, value: 1)
        #expect(store.containsSession(id: id))
        #expect(store.getItem(shop).isNotFound)
        insert(shop, value: 2)
        #expect(value(root) == 1 && value(shop) == 2)
        #expect(store.count(application: "/") == 1)
        #expect(store.count(application: "/shop") == 1)
        #expect(store.count(application: "/other") == 0)
        #expect(store.count == 2)

        insert(Self.key(app: "/shop"))
        #expect(store.count(application: "/shop") == 2)

        store.removeItem(root, lockID: nil, data: nil)
        #expect(store.containsSession(id: id)) // still in /shop
        #expect(store.count(application: "/") == 0)
        store.removeItem(shop, lockID: nil, data: nil)
        #expect(!store.containsSession(id: id))
        #expect(store.count(application: "/shop") == 1)
        #expect(store.count == 1)
    }

    // MARK: Expiry

    @Test func accessSlidesTheExpiryAndUntouchedSessionsExpireAtTheirTimeout() {
        let touched = Self.key()
        let untouched = Self.key()
        insert(touched, value: 1)
        insert(untouched, value: 2)

        clock.advance(by: .minutes(19))
        #expect(value(touched) == 1) // touch at 19 min: now due at 39 min
        #expect(store.removeExpiredItems() == 0)

        clock.advance(by: .seconds(59)) // 19:59
        #expect(store.removeExpiredItems() == 0)
        #expect(store.count == 2)

        clock.advance(by: .seconds(1)) // 20:00: the untouched one's time is up
        #expect(store.getItem(untouched).isNotFound) // gone for readers even before the sweep
        #expect(store.removeExpiredItems() == 1)
        #expect(store.count == 1)
        #expect(!store.containsSession(id: untouched.id))
        #expect(ends.count == 1)
        #expect(ends.all.first?.key == untouched)
        #expect(ends.all.first?.reason == .expired)
        #expect(ends.all.first?.data.items["v"].map { same($0, .int(2)) } == true)
        #expect(ends.all.first?.data.timeout == 20)

        clock.advance(by: .minutes(2)) // 22:00: past the first 20 minutes of the touched one
        #expect(store.removeExpiredItems() == 0)
        #expect(value(touched) == 1) // touch at 22: due at 42

        clock.advance(by: .minutes(20))
        #expect(store.removeExpiredItems() == 1)
        #expect(store.removeExpiredItems() == 0)
        #expect(store.count == 0)
        #expect(ends.count == 2) // each exactly once
        #expect(ends.all.map(\.reason) == [.expired, .expired])
    }

    enum Touch: String, CaseIterable, Sendable {
        case getItem, getItemExclusiveAndRelease, resetItemTimeout, setAndRelease
    }

    @Test(arguments: Touch.allCases)
    func everyAccessRefreshesTheExpiry(touch: Touch) {
        let key = Self.key()
        insert(key)
        clock.advance(by: .minutes(15))
        switch touch {
        case .getItem: _ = store.getItem(key)
        case .getItemExclusiveAndRelease:
            guard let lock = store.getItemExclusive(key).lockID else { Issue.record("no lock"); return }
            store.releaseItemExclusive(key, lockID: lock)
        case .resetItemTimeout: store.resetItemTimeout(key)
        case .setAndRelease:
            let lookup = store.getItemExclusive(key)
            try? store.setAndReleaseItemExclusive(key, data: lookup.data!, lockID: lookup.lockID, newItem: false)
        }
        clock.advance(by: .minutes(15)) // 30 min: 15 after the touch
        #expect(store.removeExpiredItems() == 0)
        #expect(store.count == 1)
        clock.advance(by: .minutes(5)) // 35 min: 20 after the touch
        #expect(store.removeExpiredItems() == 1)
        #expect(ends.count == 1)
    }

    @Test func aLockedSessionDoesNotExpireUntilReleased() {
        let key = Self.key()
        insert(key, timeout: 1)
        let lock = store.getItemExclusive(key).lockID!
        clock.advance(by: .minutes(5))
        #expect(store.removeExpiredItems() == 0)
        #expect(store.getItem(key).locked?.holder == lock)
        store.releaseItemExclusive(key, lockID: lock) // the release refreshes: due 1 min later
        clock.advance(by: .seconds(59))
        #expect(store.removeExpiredItems() == 0)
        clock.advance(by: .seconds(1))
        #expect(store.removeExpiredItems() == 1)
        #expect(ends.all.map(\.reason) == [.expired])
    }

    @Test func aShorterTimeoutExpiresAtTheNewEarlierTime() {
        let key = Self.key()
        insert(key, timeout: 20)
        clock.advance(by: .minutes(1))
        let lookup = store.getItemExclusive(key)
        var data = lookup.data!
        data.timeout = 5
        try? store.setAndReleaseItemExclusive(key, data: data, lockID: lookup.lockID, newItem: false)
        #expect(store.getItem(key).data?.timeout == 5) // this read is at 1 min too
        clock.advance(by: .minutes(5) - .seconds(1)) // 5:59
        #expect(store.removeExpiredItems() == 0)
        clock.advance(by: .seconds(1)) // 6:00
        #expect(store.removeExpiredItems() == 1)
        #expect(ends.all.first?.data.timeout == 5)
    }

    @Test func aLongerTimeoutOutlivesTheOldSchedule() {
        let key = Self.key()
        insert(key, timeout: 20)
        clock.advance(by: .minutes(1))
        let lookup = store.getItemExclusive(key)
        var data = lookup.data!
        data.timeout = 60
        try? store.setAndReleaseItemExclusive(key, data: data, lockID: lookup.lockID, newItem: false)
        clock.advance(by: .minutes(20)) // 21: the old 20-minute schedule has passed
        #expect(store.removeExpiredItems() == 0)
        #expect(store.count == 1)
        clock.advance(by: .minutes(40) - .seconds(1)) // 60:59
        #expect(store.removeExpiredItems() == 0)
        clock.advance(by: .seconds(1)) // 61:00
        #expect(store.removeExpiredItems() == 1)
    }

    @Test func tenThousandSessionsExpireExactlyAsAModelSays() {
        var random = SplitMix64(seed: 20_240_611)
        var expiresAt: [SessionKey: Duration] = [:]
        var timeouts: [SessionKey: Int] = [:]
        let applications = ["/", "/shop", "/admin"]
        for _ in 0..<10_000 {
            let key = Self.key(app: applications.randomElement(using: &random)!)
            let timeout = Int.random(in: 1...120, using: &random)
            insert(key, timeout: timeout)
            expiresAt[key] = .minutes(timeout)
            timeouts[key] = timeout
        }
        var now = Duration.zero
        var endedSoFar = 0
        for round in 0..<12 {
            let step = Duration.seconds(Int.random(in: 1...900, using: &random))
            clock.advance(by: step)
            now += step
            let expected = Set(expiresAt.filter { $0.value <= now }.keys)
            let ended = store.removeExpiredItems()
            let reported = ends.all.dropFirst(endedSoFar)
            endedSoFar = ends.count
            #expect(ended == expected.count, "round \(round)")
            #expect(Set(reported.map(\.key)) == expected, "round \(round)")
            #expect(reported.allSatisfy { $0.reason == .expired && $0.data.timeout == timeouts[$0.key] })
            for key in expected { expiresAt[key] = nil }
            #expect(store.count == expiresAt.count)
            for application in applications {
                #expect(store.count(application: application) == expiresAt.keys.count { $0.application == application })
            }

            // Touch a random quarter of the survivors (some with a new timeout).
            for key in expiresAt.keys where Int.random(in: 0..<4, using: &random) == 0 {
                switch Int.random(in: 0..<3, using: &random) {
                case 0:
                    #expect(store.getItem(key).data != nil)
                case 1:
                    store.resetItemTimeout(key)
                default:
                    let lookup = store.getItemExclusive(key)
                    guard var data = lookup.data else { Issue.record("\(key) missing"); continue }
                    data.timeout = Int.random(in: 1...60, using: &random)
                    timeouts[key] = data.timeout
                    try? store.setAndReleaseItemExclusive(key, data: data, lockID: lookup.lockID, newItem: false)
                }
                expiresAt[key] = now + .minutes(timeouts[key]!)
            }
        }
        // Far in the future everything has ended, each exactly once.
        clock.advance(by: .minutes(200))
        store.removeExpiredItems()
        #expect(store.count == 0)
        #expect(ends.count == 10_000)
        #expect(Set(ends.all.map(\.key)).count == 10_000)
    }

    // MARK: Uninitialized items

    @Test func anUninitializedItemIsNewOnItsFirstReadOnly() {
        let key = Self.key()
        store.createUninitializedItem(key, timeout: 30)
        #expect(store.containsSession(id: key.id))
        let first = store.getItemExclusive(key)
        #expect(first.actions == .initializeItem)
        #expect(first.data?.timeout == 30)
        #expect(first.data?.items.count == 0)
        store.releaseItemExclusive(key, lockID: first.lockID!)
        #expect(store.getItem(key).actions == SessionStateActions.none)
        #expect(store.getItemExclusive(key).actions == SessionStateActions.none)
    }

    @Test func aReadOnlyFirstReadAlsoConsumesTheInitializeFlag() {
        let key = Self.key()
        store.createUninitializedItem(key, timeout: 20)
        #expect(store.getItem(key).actions == .initializeItem)
        #expect(store.getItem(key).actions == SessionStateActions.none)
    }

    @Test func anUninitializedItemExpiresSilently() {
        let key = Self.key()
        store.createUninitializedItem(key, timeout: 20)
        clock.advance(by: .minutes(20))
        #expect(store.removeExpiredItems() == 0) // not an ended session
        #expect(store.count == 0)
        #expect(!store.containsSession(id: key.id))
        #expect(ends.count == 0)
    }

    @Test func createUninitializedItemNeverReplacesALiveItem() {
        let key = Self.key()
        insert(key, value: 42)
        store.createUninitializedItem(key, timeout: 5)
        let lookup = store.getItem(key)
        #expect(lookup.actions == SessionStateActions.none)
        #expect(lookup.data?.timeout == 20)
        #expect(value(key) == 42)

        // Nor a second uninitialized one (its flag and timeout stay).
        let other = Self.key()
        store.createUninitializedItem(other, timeout: 7)
        store.createUninitializedItem(other, timeout: 9)
        #expect(store.getItem(other).data?.timeout == 7)
        #expect(store.count == 2)
    }

    @Test func createUninitializedItemNeverReplacesALockedItemEvenPastItsExpiry() {
        // A long request holds the lock beyond the timeout: the session is still live.
        let key = Self.key()
        insert(key, timeout: 1, value: 5)
        let lock = store.getItemExclusive(key).lockID!
        clock.advance(by: .minutes(3))
        store.createUninitializedItem(key, timeout: 20)
        #expect(store.getItem(key).locked?.holder == lock)
        var data = SessionStateStoreData(items: items(["v": .int(6)]), timeout: 1)
        data.items["w"] = .int(7)
        try? store.setAndReleaseItemExclusive(key, data: data, lockID: lock, newItem: false)
        #expect(value(key) == 6) // the holder's write was kept
        #expect(ends.count == 0)
    }

    @Test func anExpiredSessionReplacedBeforeTheSweepStillEnds() {
        // Cookie mode: the same ID comes back after expiry, before the sweep ran.
        let key = Self.key()
        insert(key, value: 9)
        clock.advance(by: .minutes(20))
        store.createUninitializedItem(key, timeout: 20)
        #expect(ends.count == 1)
        #expect(ends.all.first?.reason == .expired)
        #expect(ends.all.first?.data.items["v"].map { same($0, .int(9)) } == true)
        #expect(store.getItem(key).actions == .initializeItem)
        #expect(store.removeExpiredItems() == 0)
        #expect(ends.count == 1)
        #expect(store.count(application: "/") == 1)
    }

    @Test func aNewItemOverAnExpiredOneEndsItAsExpiredAndOverALiveOneAsAbandoned() {
        let expired = Self.key()
        let live = Self.key()
        insert(expired, timeout: 10, value: 1)
        insert(live, timeout: 30, value: 2)
        clock.advance(by: .minutes(10))
        insert(expired, value: 3)
        insert(live, value: 4)
        #expect(ends.all.map(\.reason) == [.expired, .abandoned])
        #expect(ends.all.map(\.key) == [expired, live])
        #expect(value(expired) == 3 && value(live) == 4)
        #expect(store.count == 2)
    }

    // MARK: Locking

    @Test func theExclusiveLockIsReportedToEveryOtherReaderWithItsAge() throws {
        let key = Self.key()
        insert(key)
        let first = store.getItemExclusive(key)
        let lock = try #require(first.lockID)
        #expect(first.data != nil)

        let second = store.getItemExclusive(key)
        #expect(second.locked?.holder == lock)
        #expect(second.locked?.age == .zero)
        clock.advance(by: .seconds(7))
        #expect(store.getItemExclusive(key).locked?.age == .seconds(7))
        clock.advance(by: .milliseconds(500))
        #expect(store.getItem(key).locked?.age == .milliseconds(7500)) // read-only readers wait too
        #expect(store.getItem(key).locked?.holder == lock)

        store.releaseItemExclusive(key, lockID: LockID(lock.rawValue + 1000)) // not the holder's: ignored
        #expect(store.getItem(key).locked?.holder == lock)

        store.releaseItemExclusive(key, lockID: lock)
        let next = store.getItemExclusive(key)
        let nextLock = try #require(next.lockID)
        #expect(nextLock != lock)
        #expect(store.getItem(key).locked?.age == .zero)
        store.releaseItemExclusive(key, lockID: lock) // the old holder again: ignored
        #expect(store.getItem(key).locked?.holder == nextLock)
    }

    @Test func locksAreDistinctAcrossSessions() {
        var locks = Set<LockID>()
        for _ in 0..<100 {
            let key = Self.key()
            insert(key)
            locks.insert(store.getItemExclusive(key).lockID!)
        }
        #expect(locks.count == 100)
    }

    @Test func aStaleHoldersWriteIsLost() {
        let key = Self.key()
        insert(key, value: 1)
        let stale = store.getItemExclusive(key).lockID!
        clock.advance(by: .seconds(120))
        store.releaseItemExclusive(key, lockID: stale) // a waiter breaks the lock

        // While nobody holds it.
        #expect(throws: SessionStoreError.self) { try store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(items: items(["v": .int(2)]), timeout: 20), lockID: stale, newItem: false) }
        #expect(value(key) == 1)

        // While someone else holds it.
        let current = store.getItemExclusive(key).lockID!
        #expect(throws: SessionStoreError.self) { try store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(items: items(["v": .int(3)]), timeout: 20), lockID: stale, newItem: false) }
        #expect(store.getItem(key).locked?.holder == current)
        #expect(throws: SessionStoreError.self) { try store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(items: items(["v": .int(4)]), timeout: 20), lockID: nil, newItem: false) }
        #expect(store.getItem(key).locked?.holder == current)
        try? store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(items: items(["v": .int(5)]), timeout: 20), lockID: current, newItem: false)
        #expect(value(key) == 5)
        #expect(store.getItem(key).lockID == nil)
    }

    @Test func removeItemEndsTheSessionAsAbandonedOnlyForTheHolder() {
        let key = Self.key()
        insert(key, value: 8)
        let lock = store.getItemExclusive(key).lockID!
        store.removeItem(key, lockID: nil, data: nil) // locked: a lock-less remove is ignored
        store.removeItem(key, lockID: LockID(lock.rawValue + 1), data: nil) // not the holder
        #expect(store.count == 1)
        #expect(ends.count == 0)
        store.removeItem(key, lockID: lock, data: nil)
        #expect(store.count == 0)
        #expect(store.getItem(key).isNotFound)
        #expect(ends.count == 1)
        #expect(ends.all.first?.reason == .abandoned)
        #expect(ends.all.first?.key == key)
        #expect(ends.all.first?.data.items["v"].map { same($0, .int(8)) } == true)
        store.removeItem(key, lockID: lock, data: nil)
        clock.advance(by: .minutes(60))
        #expect(store.removeExpiredItems() == 0)
        #expect(ends.count == 1)

        // Unlocked (read-only Abandon): removed with a nil lock.
        let other = Self.key()
        insert(other)
        store.removeItem(other, lockID: nil, data: nil)
        #expect(store.count == 0)
        #expect(ends.all.map(\.reason) == [.abandoned, .abandoned])
    }

    @Test func removingAnUninitializedItemRaisesNoEnd() {
        let key = Self.key()
        store.createUninitializedItem(key, timeout: 20)
        store.removeItem(key, lockID: nil, data: nil)
        #expect(store.count == 0)
        #expect(ends.count == 0)
    }

    @Test func withoutACallbackNothingIsCalledAndExpiryStillWorks() {
        let plain = InProcSessionStore(clock: clock)
        let key = Self.key()
        try? plain.setAndReleaseItemExclusive(key, data: SessionStateStoreData(timeout: 1), lockID: nil, newItem: true)
        clock.advance(by: .minutes(1))
        #expect(plain.removeExpiredItems() == 1)
        #expect(plain.count == 0)
    }

    // MARK: Waiting for a lock

    enum Release: String, CaseIterable, Sendable {
        case releaseItemExclusive, setAndReleaseItemExclusive, removeItem
    }

    @Test(arguments: Release.allCases)
    func aWaiterWakesWhenTheLockIsReleased(release: Release) throws {
        let store = InProcSessionStore() // real time
        let key = Self.key()
        try? store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(timeout: 20), lockID: nil, newItem: true)
        let lock = store.getItemExclusive(key).lockID!
        let started = DispatchSemaphore(value: 0)
        let returnedAt = Recorder<ContinuousClock.Instant>()
        let deadline = ContinuousClock.now + .seconds(5)
        let done = spawn {
            started.signal()
            store.waitForRelease(key, lockID: lock, deadline: deadline)
            returnedAt.append(.now)
        }
        #expect(started.wait(seconds: 5))
        // Still blocked: nothing released yet and the deadline is seconds away.
        #expect(!done.wait(seconds: 0.2))
        #expect(returnedAt.count == 0)
        let releasedAt = ContinuousClock.now
        switch release {
        case .releaseItemExclusive: store.releaseItemExclusive(key, lockID: lock)
        case .setAndReleaseItemExclusive: try? store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(timeout: 20), lockID: lock, newItem: false)
        case .removeItem: store.removeItem(key, lockID: lock, data: nil)
        }
        #expect(done.wait(seconds: 10))
        let returned = try #require(returnedAt.all.first)
        #expect(returned < deadline, "woke \(returned - releasedAt) after the release")
        #expect(returned - releasedAt < .seconds(2))
    }

    @Test func aWaiterReturnsAtTheDeadlineWhenNobodyReleases() {
        let store = InProcSessionStore()
        let key = Self.key()
        try? store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(timeout: 20), lockID: nil, newItem: true)
        let lock = store.getItemExclusive(key).lockID!
        let start = ContinuousClock.now
        store.waitForRelease(key, lockID: lock, deadline: start + .milliseconds(300))
        let waited = ContinuousClock.now - start
        #expect(waited >= .milliseconds(290))
        #expect(waited < .seconds(3))
        #expect(store.getItem(key).locked?.holder == lock)
        // A later release with the timed-out waiter still registered is harmless.
        store.releaseItemExclusive(key, lockID: lock)
        #expect(store.getItemExclusive(key).lockID != nil)
    }

    @Test func waitingForALockThatIsGoneReturnsAtOnce() {
        let store = InProcSessionStore()
        let key = Self.key()
        try? store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(timeout: 20), lockID: nil, newItem: true)
        let lock = store.getItemExclusive(key).lockID!
        store.releaseItemExclusive(key, lockID: lock)
        let start = ContinuousClock.now
        store.waitForRelease(key, lockID: lock, deadline: start + .seconds(5)) // released already
        store.waitForRelease(Self.key(), lockID: lock, deadline: start + .seconds(5)) // no such session
        let other = store.getItemExclusive(key).lockID!
        store.waitForRelease(key, lockID: lock, deadline: start + .seconds(5)) // someone else's lock now
        #expect(ContinuousClock.now - start < .seconds(2))
        store.releaseItemExclusive(key, lockID: other)
    }
}

/// The store contract every store's tests check (SessionStateTesting), on InProc.
struct InProcConformanceTests {
    @Test func inProcKeepsTheStoreContract() throws {
        let clock = ManualSessionClock()
        let store = InProcSessionStore(clock: clock)
        try SessionStateStoreConformance(store: store, advanceClock: { clock.advance(by: $0) }).checkAll()
    }
}
