import Synchronization
import Testing
@testable import SessionStateServer

/// A clock the tests move by hand, in seconds.
final class ManualClock: Sendable {
    let seconds = Atomic<Int64>(1_000)
    func advance(_ by: Int64) { seconds.wrappingAdd(by, ordering: .relaxed) }
    var now: @Sendable () -> Int64 { { [self] in seconds.load(ordering: .relaxed) } }
}

/// aspnet_state's semantics (`StateApplication`), operation by operation.
struct StateTableTests {
    let clock = ManualClock()
    let table: StateTable

    init() {
        table = StateTable(limits: .init(maxItemSize: 1000, maxTotalSize: 10_000), now: clock.now, localTicks: { 638_000_000_000_000_000 })
    }

    static let ok = StateTable.Answer.ok(item: nil, timeout: nil, lockCookie: nil, initialize: false)

    @Test func aMissingItemIsNotFound() {
        #expect(table.get("k", acquire: false) == .notFound)
        #expect(table.get("k", acquire: true) == .notFound)
        #expect(table.release("k", lockCookie: 1) == .notFound)
        #expect(table.remove("k", lockCookie: nil) == .notFound)
        #expect(table.resetTimeout("k") == .notFound)
    }

    @Test func putThenGetAndTheLockCycle() {
        #expect(table.put("k", item: [1, 2], timeout: 20, lockCookie: 0, uninitialized: false) == Self.ok)
        #expect(table.get("k", acquire: false) == .ok(item: [1, 2], timeout: 20, lockCookie: nil, initialize: false))
        // Acquire: the lock cookie goes from 1 (new item) to 2.
        #expect(table.get("k", acquire: true) == .ok(item: [1, 2], timeout: 20, lockCookie: 2, initialize: false))
        clock.advance(7)
        let held = StateTable.Answer.locked(.init(cookie: 2, dateTicks: 638_000_000_000_000_000, ageSeconds: 7))
        #expect(table.get("k", acquire: false) == held)
        #expect(table.get("k", acquire: true) == held)
        // Release with the wrong cookie: 423; with the right one: unlocked.
        #expect(table.release("k", lockCookie: 1) == held)
        #expect(table.release("k", lockCookie: 2) == Self.ok)
        #expect(table.release("k", lockCookie: 2) == Self.ok)  // not locked: 200
        #expect(table.get("k", acquire: true) == .ok(item: [1, 2], timeout: 20, lockCookie: 3, initialize: false))
    }

    @Test func putOnALockedItemNeedsItsCookie() {
        _ = table.put("k", item: [1], timeout: 20, lockCookie: 0, uninitialized: false)
        _ = table.get("k", acquire: true)  // cookie 2
        guard case .locked = table.put("k", item: [9], timeout: 20, lockCookie: nil, uninitialized: false) else { Issue.record("no cookie accepted"); return }
        guard case .locked = table.put("k", item: [9], timeout: 20, lockCookie: 1, uninitialized: false) else { Issue.record("wrong cookie accepted"); return }
        #expect(table.put("k", item: [3], timeout: 30, lockCookie: 2, uninitialized: false) == Self.ok)
        // The PUT unlocked it and took the new timeout.
        #expect(table.get("k", acquire: false) == .ok(item: [3], timeout: 30, lockCookie: nil, initialize: false))
    }

    /// aspnet_state overwrites an unlocked item whatever cookie comes with the PUT (a writer whose
    /// lock was broken overwrites the next holder's changes). SessionHost's strict PUT refuses it.
    @Test func theStrictPutRefusesAWriterWhoseLockWasTaken() {
        _ = table.put("k", item: [1], timeout: 20, lockCookie: 0, uninitialized: false)
        _ = table.get("k", acquire: true)  // A holds cookie 2
        _ = table.release("k", lockCookie: 2)  // broken by a waiter (ReleaseItemExclusive)
        _ = table.get("k", acquire: true)  // B holds cookie 3 …
        _ = table.put("k", item: [2], timeout: 20, lockCookie: 3, uninitialized: false)  // … and saves
        // A's late write: aspnet_state would take it; the strict form refuses it.
        guard case .locked(let info) = table.put("k", item: [9], timeout: 20, lockCookie: 2, uninitialized: false, strictLockCookie: true) else {
            Issue.record("the strict PUT accepted a stale cookie"); return
        }
        #expect(info.cookie == 3)
        #expect(table.get("k", acquire: false) == .ok(item: [2], timeout: 20, lockCookie: nil, initialize: false))
        #expect(table.put("k", item: [9], timeout: 20, lockCookie: 2, uninitialized: false) == Self.ok)
    }

    /// The strict DELETE, like the strict PUT, refuses a holder whose lock was broken and taken.
    @Test func theStrictRemoveRefusesAStaleHolder() {
        _ = table.put("k", item: [1], timeout: 20, lockCookie: 0, uninitialized: false)
        _ = table.get("k", acquire: true)  // A: cookie 2
        _ = table.release("k", lockCookie: 2)  // broken
        _ = table.get("k", acquire: true)  // B: cookie 3
        _ = table.put("k", item: [2], timeout: 20, lockCookie: 3, uninitialized: false)
        guard case .locked = table.remove("k", lockCookie: 2, strictLockCookie: true) else {
            Issue.record("the strict DELETE removed another request's session"); return
        }
        #expect(table.get("k", acquire: false) == .ok(item: [2], timeout: 20, lockCookie: nil, initialize: false))
        #expect(table.remove("k", lockCookie: 3, strictLockCookie: true) == Self.ok)
    }

    @Test func aStoredItemIsNoLongerUninitialized() {
        _ = table.put("k", item: [0], timeout: 20, lockCookie: nil, uninitialized: true)
        _ = table.put("k", item: [7], timeout: 20, lockCookie: 1, uninitialized: false)
        #expect(table.get("k", acquire: false) == .ok(item: [7], timeout: 20, lockCookie: nil, initialize: false))
    }

    @Test func anUninitializedItemIsFlaggedOnItsFirstReadOnly() {
        #expect(table.put("k", item: [0], timeout: 20, lockCookie: nil, uninitialized: true) == Self.ok)
        // ExtraFlags 1 never overwrites (the race guard).
        #expect(table.put("k", item: [5], timeout: 20, lockCookie: nil, uninitialized: true) == Self.ok)
        #expect(table.get("k", acquire: true) == .ok(item: [0], timeout: 20, lockCookie: 2, initialize: true))
        _ = table.release("k", lockCookie: 2)
        #expect(table.get("k", acquire: false) == .ok(item: [0], timeout: 20, lockCookie: nil, initialize: false))
    }

    @Test func expirySlidesOnEveryAccess() {
        _ = table.put("k", item: [1], timeout: 1, lockCookie: 0, uninitialized: false)
        clock.advance(59)
        #expect(table.resetTimeout("k") == Self.ok)
        clock.advance(59)
        #expect(table.get("k", acquire: false) != .notFound)
        clock.advance(60)
        #expect(table.get("k", acquire: false) == .notFound)
        // The sweep frees what expired.
        _ = table.put("a", item: [1], timeout: 1, lockCookie: 0, uninitialized: false)
        _ = table.put("b", item: [1], timeout: 2, lockCookie: 0, uninitialized: false)
        clock.advance(61)
        #expect(table.removeExpired() == 1)
        #expect(table.statistics.sessions == 1)
    }

    @Test func removeNeedsTheLockCookieOfALockedItem() {
        _ = table.put("k", item: [1], timeout: 20, lockCookie: 0, uninitialized: false)
        _ = table.get("k", acquire: true)
        guard case .locked = table.remove("k", lockCookie: 7) else { Issue.record("removed with a wrong cookie"); return }
        #expect(table.remove("k", lockCookie: 2) == Self.ok)
        #expect(table.get("k", acquire: false) == .notFound)
    }

    @Test func memoryIsBounded() {
        guard case .tooLarge = table.put("big", item: [UInt8](repeating: 0, count: 1001), timeout: 20, lockCookie: 0, uninitialized: false) else {
            Issue.record("an item over --max-item-size was stored"); return
        }
        var stored = 0
        for index in 0..<100 {
            if table.put("k\(index)", item: [UInt8](repeating: 1, count: 900), timeout: 20, lockCookie: 0, uninitialized: false) == Self.ok { stored += 1 }
        }
        #expect(stored == 10)  // 10 000 bytes hold ten of 900 + overhead
        #expect(table.statistics.bytes <= 10_000)
        // Freeing one makes room again.
        _ = table.remove("k0", lockCookie: nil)
        #expect(table.put("again", item: [UInt8](repeating: 1, count: 900), timeout: 20, lockCookie: 0, uninitialized: false) == Self.ok)
    }

    @Test func aWaiterIsNotifiedWhenTheLockGoes() {
        _ = table.put("k", item: [1], timeout: 20, lockCookie: 0, uninitialized: false)
        let notified = Atomic<Int>(0)
        let waiter = UnlockWaiter { notified.wrappingAdd(1, ordering: .relaxed) }
        #expect(!table.whenUnlocked("k", waiter))  // not locked: nothing registered
        _ = table.get("k", acquire: true)
        #expect(table.whenUnlocked("k", waiter))
        #expect(notified.load(ordering: .relaxed) == 0)
        _ = table.release("k", lockCookie: 2)
        #expect(notified.load(ordering: .relaxed) == 1)
        // Once only.
        _ = table.get("k", acquire: true)
        _ = table.release("k", lockCookie: 3)
        #expect(notified.load(ordering: .relaxed) == 1)
        // A cancelled wait is not notified.
        _ = table.get("k", acquire: true)
        #expect(table.whenUnlocked("k", waiter))
        table.cancelWait("k", waiter)
        _ = table.put("k", item: [2], timeout: 20, lockCookie: 4, uninitialized: false)
        #expect(notified.load(ordering: .relaxed) == 1)
    }
}
