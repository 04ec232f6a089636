import Dispatch
import Foundation
import Logging
import Testing

@testable import SessionState

/// A domain over an in-process store, recording Session_End.
struct DomainFixture {
    let clock: ManualSessionClock?
    let store: InProcSessionStore
    let observed: ObservedStore
    let domain: SessionDomain
    let ended = Recorder<EndedSession>()

    init(manualClock: Bool = false, queueLimit: Int = 50, hasStartHandler: Bool = false, reportsEnd: Bool = true) {
        let clock = manualClock ? ManualSessionClock() : nil
        self.clock = clock
        store = clock.map { InProcSessionStore(clock: $0) } ?? InProcSessionStore()
        observed = ObservedStore(store, reportsEnd: reportsEnd)
        let ended = ended
        domain = SessionDomain(
            name: "ASP.NET", store: observed, queueLimit: queueLimit, hasStartHandler: hasStartHandler,
            onEnd: { ended.append($0) }, logger: Logger(label: "SessionStateTests"))
    }

    static let executionTimeout = Duration.seconds(110)

    func key() -> SessionKey { SessionKey(application: "/app", id: ASPNETSessionID.generate()) }

    /// Puts a session into the store as an earlier request would have.
    func seed(_ key: SessionKey, _ pairs: KeyValuePairs<String, SessionValue> = ["seed": .int(1)], timeout: Int = 20) {
        try? store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(items: items(pairs), timeout: timeout), lockID: nil, newItem: true)
    }

    func acquire(_ key: SessionKey, exclusive: Bool = true) throws -> SessionDomain.Acquired? {
        try domain.acquire(key, exclusive: exclusive, executionTimeout: Self.executionTimeout)
    }

    func session(_ contents: SessionContents, mode: ASPNETSessionMode = .inProc, id: String = ASPNETSessionID.generate()) -> ASPNETSession {
        ASPNETSession(contents: contents, sessionID: id, mode: mode, cookieMode: .useCookies, isCookieless: false)
    }

    /// Whether the session is stored and unlocked (a fresh exclusive read gets the lock).
    func isStoredAndUnlocked(_ key: SessionKey) -> Bool {
        let lookup = store.getItemExclusive(key)
        guard let lock = lookup.lockID else { return false }
        store.releaseItemExclusive(key, lockID: lock)
        return true
    }
}

struct SessionDomainAcquireTests {
    @Test func aMissingSessionIsNil() throws {
        let fixture = DomainFixture()
        #expect(try fixture.acquire(fixture.key()) == nil)
        #expect(try fixture.acquire(fixture.key(), exclusive: false) == nil)
        #expect(fixture.domain.raisesEnd)
        #expect(fixture.domain.name == "ASP.NET")
        #expect(fixture.domain.queueLimit == 50)
    }

    @Test func acquireReturnsTheDataAndTheLock() throws {
        let fixture = DomainFixture()
        let key = fixture.key()
        fixture.seed(key, ["a": .string("x")], timeout: 33)
        let exclusive = try #require(try fixture.acquire(key))
        #expect(exclusive.lockID != nil)
        #expect(!exclusive.initialize)
        #expect(exclusive.data.timeout == 33)
        #expect(exclusive.data.items["A"].map { same($0, .string("x")) } == true)
        fixture.store.releaseItemExclusive(key, lockID: exclusive.lockID!)
        let shared = try #require(try fixture.acquire(key, exclusive: false))
        #expect(shared.lockID == nil)

        let fresh = fixture.key()
        fixture.store.createUninitializedItem(fresh, timeout: 20)
        #expect(try fixture.acquire(fresh)?.initialize == true)
    }

    @Test(arguments: [true, false])
    func aSecondRequestWaitsForTheLockAndThenGetsIt(secondIsExclusive: Bool) throws {
        let fixture = DomainFixture()
        let key = fixture.key()
        fixture.seed(key)
        let first = try #require(try fixture.acquire(key))
        let firstLock = try #require(first.lockID)

        let started = DispatchSemaphore(value: 0)
        let result = Recorder<Result<LockID?, SessionDomain.AcquireError>>()
        let done = spawn {
            started.signal()
            do throws(SessionDomain.AcquireError) {
                let acquired = try fixture.domain.acquire(key, exclusive: secondIsExclusive, executionTimeout: DomainFixture.executionTimeout)
                result.append(.success(acquired?.lockID))
            } catch {
                result.append(.failure(error))
            }
        }
        #expect(started.wait(seconds: 5))
        #expect(fixture.observed.waitStarted.wait(seconds: 5)) // it found the lock and waits
        #expect(!done.wait(seconds: 0.1))
        #expect(result.count == 0)

        let contents = fixture.domain.contents(of: first, readOnly: false, rule: ASPNETSession.timeoutRule(mode: .inProc))
        #expect(try fixture.domain.release(key, contents: contents, lockID: firstLock, storeHadItem: true, exclusive: true, failed: false) == .unchanged)
        #expect(done.wait(seconds: 5))
        guard case .success(let lock)? = result.all.first else {
            Issue.record("second acquire: \(result.all)")
            return
        }
        if secondIsExclusive {
            #expect(lock != nil && lock != firstLock)
        } else {
            #expect(lock == nil)
        }
    }

    @Test func waitersBeyondTheQueueLimitAreRefused() throws {
        let fixture = DomainFixture(queueLimit: 2)
        let key = fixture.key()
        fixture.seed(key)
        let holder = try #require(try fixture.acquire(key)?.lockID)

        let got = Recorder<LockID>()
        func waiter() -> DispatchSemaphore {
            spawn {
                guard let lock = try? fixture.domain.acquire(key, exclusive: true, executionTimeout: DomainFixture.executionTimeout)?.lockID else { return }
                got.append(lock)
                fixture.store.releaseItemExclusive(key, lockID: lock)
            }
        }

        // Two waiters queue up (each is counted before it starts waiting).
        let first = waiter()
        #expect(fixture.observed.waitStarted.wait(seconds: 5))
        let second = waiter()
        #expect(fixture.observed.waitStarted.wait(seconds: 5))

        // The third is refused at once, exclusive or not.
        for exclusive in [true, false] {
            let error = #expect(throws: SessionDomain.AcquireError.self) {
                _ = try fixture.domain.acquire(key, exclusive: exclusive, executionTimeout: DomainFixture.executionTimeout)
            }
            guard case .queueLimitExceeded? = error else {
                Issue.record("expected queueLimitExceeded, got \(String(describing: error))")
                continue
            }
            #expect(error?.description == "The request queue limit of the session is exceeded.")
        }
        // Other sessions are not affected.
        let other = fixture.key()
        fixture.seed(other)
        #expect(try fixture.acquire(other) != nil)

        fixture.store.releaseItemExclusive(key, lockID: holder)
        #expect(first.wait(seconds: 5))
        #expect(second.wait(seconds: 5))
        #expect(got.count == 2)
        #expect(Set(got.all + [holder]).count == 3)

        // The queue emptied: two new waiters are admitted again.
        let holder2 = try #require(try fixture.acquire(key)?.lockID)
        while fixture.observed.waitStarted.wait(timeout: .now()) == .success {} // drain earlier signals
        let third = waiter()
        #expect(fixture.observed.waitStarted.wait(seconds: 5))
        let fourth = waiter()
        #expect(fixture.observed.waitStarted.wait(seconds: 5))
        fixture.store.releaseItemExclusive(key, lockID: holder2)
        #expect(third.wait(seconds: 5))
        #expect(fourth.wait(seconds: 5))
        #expect(got.count == 4)
    }

    @Test(arguments: [Duration.seconds(110), .seconds(111), .seconds(3600)])
    func aLockOlderThanTheExecutionTimeoutIsBroken(age: Duration) throws {
        let fixture = DomainFixture(manualClock: true)
        let key = fixture.key()
        fixture.seed(key, ["v": .int(1)])
        let stale = try #require(try fixture.acquire(key)?.lockID)
        fixture.clock!.advance(by: age)

        let start = ContinuousClock.now
        let acquired = try #require(try fixture.acquire(key))
        #expect(ContinuousClock.now - start < .seconds(2)) // no waiting
        let lock = try #require(acquired.lockID)
        #expect(lock != stale)

        // The old holder's save is discarded.
        let contents = fixture.domain.contents(of: acquired, readOnly: false, rule: ASPNETSession.timeoutRule(mode: .inProc))
        let staleData = SessionStateStoreData(items: items(["v": .int(99)]), timeout: 20)
        let lost = #expect(throws: SessionStoreError.self) { try fixture.store.setAndReleaseItemExclusive(key, data: staleData, lockID: stale, newItem: false) }
        #expect(lost?.kind == .lockLost)
        #expect(fixture.store.getItem(key).locked?.holder == lock)
        #expect(try fixture.domain.release(key, contents: contents, lockID: lock, storeHadItem: true, exclusive: true, failed: false) == .unchanged)
        #expect(fixture.store.getItem(key).data?.items["v"].map { same($0, .int(1)) } == true)
    }

    @Test func aReadOnlyRequestAlsoBreaksAStaleLock() throws {
        let fixture = DomainFixture(manualClock: true)
        let key = fixture.key()
        fixture.seed(key)
        _ = try fixture.acquire(key)
        fixture.clock!.advance(by: .seconds(200))
        let acquired = try #require(try fixture.acquire(key, exclusive: false))
        #expect(acquired.lockID == nil)
        #expect(fixture.isStoredAndUnlocked(key))
    }
}

/// ASP.NET's `SessionStateModule.OnReleaseState` decisions (README, Sessions).
struct SessionDomainReleaseTests {
    enum Start: Sendable { case new, existing, uninitialized }

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var start: Start
        var readOnly = false
        var hasStartHandler = false
        var failed = false
        var act: @Sendable (ASPNETSession) throws -> Void = { _ in }
        var outcome: SessionDomain.ReleaseOutcome
        /// The items in the store afterwards (nil: not stored).
        var stored: [String: SessionValue]?
        var storedTimeout = 20
        /// Session_End calls (all with reason abandoned).
        var ends = 0

        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "new, unused", start: .new, outcome: .discardedNew, stored: nil),
        Case(name: "new, only read", start: .new, act: { _ = $0["x"]; _ = $0.keys }, outcome: .discardedNew, stored: nil),
        Case(name: "new, only the timeout changed", start: .new, act: { try $0.setTimeout(30) }, outcome: .discardedNew, stored: nil),
        Case(name: "new, written", start: .new, act: { try $0.set("a", 1) }, outcome: .saved, stored: ["a": .int(1)]),
        Case(name: "new, written then removed", start: .new, act: { try $0.set("a", 1); try $0.remove("a") }, outcome: .saved, stored: [:]),
        Case(name: "new, written, handler failed", start: .new, failed: true, act: { try $0.set("a", 1) }, outcome: .unchanged, stored: nil),
        Case(name: "new with Session_Start", start: .new, hasStartHandler: true, outcome: .saved, stored: [:]),
        Case(name: "new read-only with Session_Start", start: .new, readOnly: true, hasStartHandler: true, outcome: .saved, stored: [:]),
        Case(name: "new read-only", start: .new, readOnly: true, outcome: .discardedNew, stored: nil),
        Case(name: "new, abandoned", start: .new, act: { try $0.set("a", 1); $0.abandon() }, outcome: .abandoned, stored: nil, ends: 1),
        Case(name: "existing, unchanged", start: .existing, outcome: .unchanged, stored: ["seed": .int(1)]),
        Case(name: "existing, only read", start: .existing, act: { _ = $0.int("seed"); _ = $0.elements }, outcome: .unchanged, stored: ["seed": .int(1)]),
        Case(name: "existing, timeout set to its value", start: .existing, act: { try $0.setTimeout(20) }, outcome: .unchanged, stored: ["seed": .int(1)]),
        Case(name: "existing, written", start: .existing, act: { try $0.set("b", "x") }, outcome: .saved, stored: ["seed": .int(1), "b": .string("x")]),
        Case(name: "existing, removeAll", start: .existing, act: { try $0.removeAll() }, outcome: .saved, stored: [:]),
        Case(name: "existing, only the timeout changed", start: .existing, act: { try $0.setTimeout(45) }, outcome: .saved, stored: ["seed": .int(1)], storedTimeout: 45),
        Case(name: "existing, written, handler failed", start: .existing, failed: true, act: { try $0.set("b", "x"); try $0.setTimeout(45) }, outcome: .unchanged, stored: ["seed": .int(1)]),
        Case(name: "existing, abandoned", start: .existing, act: { $0.abandon() }, outcome: .abandoned, stored: nil, ends: 1),
        Case(name: "existing, abandoned, handler failed", start: .existing, failed: true, act: { $0.abandon() }, outcome: .abandoned, stored: nil, ends: 1),
        Case(name: "existing read-only", start: .existing, readOnly: true, act: { _ = $0.int("seed") }, outcome: .unchanged, stored: ["seed": .int(1)]),
        Case(name: "existing read-only, abandoned", start: .existing, readOnly: true, act: { $0.abandon() }, outcome: .abandoned, stored: nil, ends: 1),
        Case(name: "uninitialized item, unused", start: .uninitialized, outcome: .saved, stored: [:]),
        Case(name: "uninitialized item, written", start: .uninitialized, act: { try $0.set("u", true) }, outcome: .saved, stored: ["u": .bool(true)]),
        Case(name: "uninitialized item, abandoned", start: .uninitialized, act: { $0.abandon() }, outcome: .abandoned, stored: nil, ends: 1),
    ]

    @Test(arguments: cases)
    func releaseFollowsTheDecisionTable(test: Case) throws {
        let fixture = DomainFixture(hasStartHandler: test.hasStartHandler)
        let key = fixture.key()
        let rule = ASPNETSession.timeoutRule(mode: .inProc)
        let contents: SessionContents
        var lockID: LockID?
        switch test.start {
        case .new:
            contents = fixture.domain.newContents(timeout: 20, readOnly: test.readOnly, rule: rule)
        case .existing, .uninitialized:
            if test.start == .existing { fixture.seed(key) } else { fixture.store.createUninitializedItem(key, timeout: 20) }
            let acquired = try #require(try fixture.acquire(key, exclusive: !test.readOnly))
            #expect(acquired.initialize == (test.start == .uninitialized))
            lockID = acquired.lockID
            #expect((lockID == nil) == test.readOnly)
            contents = fixture.domain.contents(of: acquired, readOnly: test.readOnly, rule: rule)
        }
        let session = fixture.session(contents)
        #expect(session.isNewSession == (test.start != .existing))
        #expect(session.isReadOnly == test.readOnly)
        try test.act(session)

        let outcome = try fixture.domain.release(
            key, contents: contents, lockID: lockID, storeHadItem: test.start != .new, exclusive: !test.readOnly, failed: test.failed)
        #expect(outcome == test.outcome)

        if let expected = test.stored {
            let data = try #require(fixture.store.getItem(key).data, "not stored, or still locked")
            #expect(data.items.keys.sorted() == expected.keys.sorted())
            for (name, value) in expected {
                #expect(data.items[name].map { same($0, value) } == true, "\(name)")
            }
            #expect(data.timeout == test.storedTimeout)
            #expect(fixture.isStoredAndUnlocked(key)) // the lock was released
        } else {
            #expect(fixture.store.getItem(key).isNotFound)
            #expect(fixture.store.count == 0)
        }
        #expect(fixture.ended.count == test.ends)
        #expect(fixture.ended.all.allSatisfy { $0.reason == .abandoned && $0.key == key })

        // The session cannot be used after its release.
        #expect(throws: SessionError.released) { try session.set("late", 1) }
        #expect(throws: SessionError.released) { try session.removeAll() }
    }

    @Test func anAbandonedSessionKeepsItsValuesUntilTheRequestEnds() throws {
        let fixture = DomainFixture()
        let key = fixture.key()
        fixture.seed(key, ["cart": .string("3 books")])
        let acquired = try #require(try fixture.acquire(key))
        let session = fixture.session(fixture.domain.contents(of: acquired, readOnly: false, rule: ASPNETSession.timeoutRule(mode: .inProc)))
        session.abandon()
        #expect(session.isAbandoned)
        #expect(session.string("cart") == "3 books")
        try session.set("more", 1)
        #expect(session.int("more") == 1)
        #expect(try fixture.domain.release(key, contents: session.contents, lockID: acquired.lockID, storeHadItem: true, exclusive: true, failed: false) == .abandoned)
        let end = try #require(fixture.ended.all.first)
        #expect(end.reason == .abandoned)
        #expect(end.timeout == 20)
        #expect(end.items["cart"].map { same($0, .string("3 books")) } == true)
        // Session_End sees what the abandoning request left, as ASP.NET InProc's handler does.
        #expect(end.items["more"].map { same($0, .int(1)) } == true)
        #expect(!fixture.store.containsSession(id: key.id))
    }

    @Test func abandoningANewSessionRaisesSessionEndOnlyWhenTheStoreReportsEnds() throws {
        for reportsEnd in [true, false] {
            let fixture = DomainFixture(reportsEnd: reportsEnd)
            #expect(fixture.domain.raisesEnd == reportsEnd)
            let key = fixture.key()
            let contents = fixture.domain.newContents(timeout: 15, readOnly: false, rule: ASPNETSession.timeoutRule(mode: .inProc))
            let session = fixture.session(contents)
            try session.set("x", "y")
            session.abandon()
            #expect(try fixture.domain.release(key, contents: contents, lockID: nil, storeHadItem: false, exclusive: true, failed: false) == .abandoned)
            #expect(fixture.ended.count == (reportsEnd ? 1 : 0))
            if reportsEnd {
                #expect(fixture.ended.all.first?.key == key)
                #expect(fixture.ended.all.first?.timeout == 15)
                #expect(fixture.ended.all.first?.items["x"].map { same($0, .string("y")) } == true)
            }
            #expect(fixture.store.count == 0)
        }
    }

    @Test func expiryReachesTheEndHandlerThroughTheDomain() throws {
        let fixture = DomainFixture(manualClock: true)
        let key = fixture.key()
        let contents = fixture.domain.newContents(timeout: 1, readOnly: false, rule: ASPNETSession.timeoutRule(mode: .inProc))
        try fixture.session(contents).set("k", 5)
        #expect(try fixture.domain.release(key, contents: contents, lockID: nil, storeHadItem: false, exclusive: true, failed: false) == .saved)
        fixture.clock!.advance(by: .minutes(1))
        #expect(fixture.store.removeExpiredItems() == 1)
        let end = try #require(fixture.ended.all.first)
        #expect(end.reason == .expired)
        #expect(end.key == key)
        #expect(end.items["k"].map { same($0, .int(5)) } == true)
    }
}

/// Wake-ups of lock waiters by cookie: ordered (a later holder's release frees earlier waiters)
/// and unordered (Redis's tick values: only the holder's own release, or any release after the
/// wait began).
struct ReleaseSignalTests {
    @Test func orderedCookiesFreeEarlierHolders() {
        let signal = ReleaseSignal()
        signal.released([(id: "s", cookie: 200)])
        let start = ContinuousClock.now
        signal.wait(for: "s", holder: 100, until: .now + .seconds(30))
        #expect(ContinuousClock.now - start < .seconds(29))
        // An older release arriving late does not replace the newer one.
        signal.released([(id: "s", cookie: 50)])
        #expect(signal.lastRelease(of: "s")?.cookie == 200)
    }

    @Test func unorderedCookiesMatchByValue() {
        let signal = ReleaseSignal(orderedCookies: false)
        signal.released([(id: "s", cookie: 200)])
        // An earlier release of a larger value is not this holder's: it waits, until its own.
        let releaser = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            signal.released([(id: "s", cookie: 100)])
        }
        releaser.start()
        let start = ContinuousClock.now
        signal.wait(for: "s", holder: 100, until: .now + .seconds(30))
        #expect(ContinuousClock.now - start < .seconds(29))
        #expect(signal.lastRelease(of: "s")?.cookie == 100)
        // Not ordered: a smaller value replaces a larger one.
        signal.released([(id: "s", cookie: 7)])
        #expect(signal.lastRelease(of: "s")?.cookie == 7)
    }
}
