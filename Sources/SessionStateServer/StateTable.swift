import Foundation
import Locking

/// A request waiting for a session's lock; `notify` runs once, on the thread that released it.
package final class UnlockWaiter: Sendable {
    let notify: @Sendable () -> Void

    package init(notify: @escaping @Sendable () -> Void) {
        self.notify = notify
    }
}

/// The sessions a state server holds, by key, with ASP.NET's state-server semantics (the
/// `StateApplication` of `aspnet_state`): a lock per session with a lock cookie, sliding expiry,
/// the "uninitialized item" flag. Every operation on one session is atomic (one lock per shard).
///
/// The items are opaque bytes: the server knows nothing of their format. Memory is bounded: one
/// item by `maxItemSize`, all of them (keys included) by `maxTotalSize`.
package final class StateTable: Sendable {
    package struct Limits: Sendable {
        package var maxItemSize: Int
        package var maxTotalSize: Int

        package init(maxItemSize: Int, maxTotalSize: Int) {
            self.maxItemSize = maxItemSize
            self.maxTotalSize = maxTotalSize
        }
    }

    /// Where a lock stands, as the 423 answer reports it.
    package struct LockInfo: Sendable, Equatable {
        package var cookie: Int
        /// When it was taken, in local-time .NET ticks (`DateTime.Now.Ticks`), as aspnet_state reports it.
        package var dateTicks: Int64
        /// Whole seconds since it was taken.
        package var ageSeconds: Int
    }

    package enum Answer: Sendable, Equatable {
        /// 200 with the item (nil for answers without a body); `lockCookie` when a lock was
        /// taken, `initialize` when the item was created uninitialized and this is its first read.
        case ok(item: [UInt8]?, timeout: Int?, lockCookie: Int?, initialize: Bool)
        case notFound
        case locked(LockInfo)
        /// The item (or all items together) would exceed the limits.
        case tooLarge(String)
    }

    private struct Entry {
        var item: [UInt8]
        var timeout: Int
        var expires: Int64
        var locked = false
        var lockCookie: Int
        var lockDateTicks: Int64 = 0
        var lockedAt: Int64 = 0
        var uninitialized: Bool
        var size: Int { item.count + 64 }
    }

    private struct Shard {
        var entries: [String: Entry] = [:]
        /// Requests waiting for a session's lock (SessionHost's wake-up extension).
        var waiters: [String: [UnlockWaiter]] = [:]

        /// The waiters of `key`, removed: the session was unlocked or removed.
        mutating func wake(_ key: String) -> [UnlockWaiter] {
            waiters.removeValue(forKey: key) ?? []
        }
    }

    private let shards = (0..<32).map { _ in Locked(Shard()) }
    private let total = Locked(0)
    private let limits: Limits
    /// Monotonic seconds (injectable for tests).
    private let now: @Sendable () -> Int64
    /// Local-time .NET ticks now.
    private let localTicks: @Sendable () -> Int64

    package init(limits: Limits, now: @escaping @Sendable () -> Int64 = StateTable.monotonicSeconds, localTicks: @escaping @Sendable () -> Int64 = StateTable.localTicksNow) {
        self.limits = limits
        self.now = now
        self.localTicks = localTicks
    }

    private func shard(_ key: String) -> Locked<Shard> {
        var hasher = Hasher()
        hasher.combine(key)
        return shards[Int(UInt(bitPattern: hasher.finalize()) % UInt(shards.count))]
    }

    /// Reads the entry under `key` if it exists and has not expired (an expired one is removed).
    private func live(_ shard: inout Shard, _ key: String, at time: Int64) -> Entry? {
        guard let entry = shard.entries[key] else { return nil }
        if entry.expires <= time {
            shard.entries[key] = nil
            release(bytes: entry.size + key.utf8.count)
            return nil
        }
        return entry
    }

    private func lockInfo(_ entry: Entry, at time: Int64) -> LockInfo {
        LockInfo(cookie: entry.lockCookie, dateTicks: entry.lockDateTicks, ageSeconds: Int(max(0, time - entry.lockedAt)))
    }

    /// GET, with or without `Exclusive: acquire`.
    package func get(_ key: String, acquire: Bool) -> Answer {
        let time = now()
        return shard(key).withLock { shard -> Answer in
            guard var entry = live(&shard, key, at: time) else { return .notFound }
            if entry.locked { return .locked(lockInfo(entry, at: time)) }
            entry.expires = time + Int64(entry.timeout) * 60
            let initialize = entry.uninitialized
            entry.uninitialized = false
            var cookie: Int?
            if acquire {
                entry.lockCookie += 1
                entry.locked = true
                entry.lockedAt = time
                entry.lockDateTicks = localTicks()
                cookie = entry.lockCookie
            }
            shard.entries[key] = entry
            return .ok(item: entry.item, timeout: entry.timeout, lockCookie: cookie, initialize: initialize)
        }
    }

    /// GET with `Exclusive: release`.
    package func release(_ key: String, lockCookie: Int) -> Answer {
        let time = now()
        var woken: [UnlockWaiter] = []
        defer { for waiter in woken { waiter.notify() } }
        return shard(key).withLock { shard -> Answer in
            guard var entry = live(&shard, key, at: time) else { return .notFound }
            guard entry.locked else { return .ok(item: nil, timeout: nil, lockCookie: nil, initialize: false) }
            guard entry.lockCookie == lockCookie else { return .locked(lockInfo(entry, at: time)) }
            entry.locked = false
            entry.expires = time + Int64(entry.timeout) * 60
            shard.entries[key] = entry
            woken = shard.wake(key)
            return .ok(item: nil, timeout: nil, lockCookie: nil, initialize: false)
        }
    }

    /// Registers `waiter` to be notified once when the lock on `key` is released or the
    /// session goes away. False (nothing registered) when it is not locked now: the caller
    /// retries at once.
    package func whenUnlocked(_ key: String, _ waiter: UnlockWaiter) -> Bool {
        let time = now()
        return shard(key).withLock { shard in
            guard let entry = live(&shard, key, at: time), entry.locked else { return false }
            shard.waiters[key, default: []].append(waiter)
            return true
        }
    }

    /// Forgets `waiter` (its wait ended).
    package func cancelWait(_ key: String, _ waiter: UnlockWaiter) {
        shard(key).withLock { shard in
            shard.waiters[key]?.removeAll { $0 === waiter }
            if shard.waiters[key]?.isEmpty == true { shard.waiters[key] = nil }
        }
    }

    /// PUT. `uninitialized` (ExtraFlags 1) inserts only when the key is absent.
    /// `strictLockCookie` (SessionHost's extension): an existing item is replaced only by the
    /// holder of its current lock cookie, even when it is no longer locked, so a writer whose
    /// lock was broken and taken by another request cannot overwrite that request's changes.
    package func put(_ key: String, item: [UInt8], timeout: Int, lockCookie: Int?, uninitialized: Bool, strictLockCookie: Bool = false) -> Answer {
        let time = now()
        guard item.count <= limits.maxItemSize else {
            return .tooLarge("the item is \(item.count) bytes; this server accepts at most \(limits.maxItemSize) (--max-item-size)")
        }
        var woken: [UnlockWaiter] = []
        defer { for waiter in woken { waiter.notify() } }
        return shard(key).withLock { shard -> Answer in
            let existing = live(&shard, key, at: time)
            if let existing {
                if uninitialized { return .ok(item: nil, timeout: nil, lockCookie: nil, initialize: false) }
                if existing.locked, existing.lockCookie != lockCookie { return .locked(lockInfo(existing, at: time)) }
                if strictLockCookie, !existing.locked, existing.lockCookie != lockCookie { return .locked(lockInfo(existing, at: time)) }
            }
            let added = item.count - (existing?.item.count ?? -key.utf8.count - 64)
            guard reserve(bytes: added) else {
                return .tooLarge("the server holds its limit of \(limits.maxTotalSize) bytes of sessions (--max-memory)")
            }
            var entry = existing ?? Entry(item: [], timeout: timeout, expires: 0, lockCookie: 1, uninitialized: uninitialized)
            entry.item = item
            entry.timeout = timeout
            entry.expires = time + Int64(timeout) * 60
            entry.locked = false
            // A session stored for real is no longer new (an uninitialized one only until then).
            if existing != nil { entry.uninitialized = false }
            shard.entries[key] = entry
            woken = shard.wake(key)
            return .ok(item: nil, timeout: nil, lockCookie: nil, initialize: false)
        }
    }

    /// DELETE.
    package func remove(_ key: String, lockCookie: Int?, strictLockCookie: Bool = false) -> Answer {
        let time = now()
        var woken: [UnlockWaiter] = []
        defer { for waiter in woken { waiter.notify() } }
        return shard(key).withLock { shard -> Answer in
            guard let entry = live(&shard, key, at: time) else { return .notFound }
            if entry.locked, entry.lockCookie != lockCookie { return .locked(lockInfo(entry, at: time)) }
            if strictLockCookie, let lockCookie, !entry.locked, entry.lockCookie != lockCookie { return .locked(lockInfo(entry, at: time)) }
            shard.entries[key] = nil
            woken = shard.wake(key)
            release(bytes: entry.size + key.utf8.count)
            return .ok(item: nil, timeout: nil, lockCookie: nil, initialize: false)
        }
    }

    /// HEAD: slides the expiry.
    package func resetTimeout(_ key: String) -> Answer {
        let time = now()
        return shard(key).withLock { shard -> Answer in
            guard var entry = live(&shard, key, at: time) else { return .notFound }
            entry.expires = time + Int64(entry.timeout) * 60
            shard.entries[key] = entry
            return .ok(item: nil, timeout: nil, lockCookie: nil, initialize: false)
        }
    }

    /// Removes expired sessions; returns how many.
    @discardableResult
    package func removeExpired() -> Int {
        let time = now()
        var removed = 0
        for shard in shards {
            var woken: [UnlockWaiter] = []
            let freed = shard.withLock { shard -> Int in
                var freed = 0
                for (key, entry) in shard.entries where entry.expires <= time {
                    shard.entries[key] = nil
                    woken += shard.wake(key)
                    freed += entry.size + key.utf8.count
                    removed += 1
                }
                return freed
            }
            release(bytes: freed)
            for waiter in woken { waiter.notify() }
        }
        return removed
    }

    package struct Statistics: Sendable, Equatable {
        /// Sessions held (expired ones not yet swept included).
        package var sessions: Int
        /// Their bytes, as counted against `maxTotalSize`.
        package var bytes: Int
        /// Sessions locked now.
        package var locked: Int = 0
    }

    /// Counts the locked sessions by walking each shard under its lock: the status page pays for
    /// it when asked (a few milliseconds per million sessions), not every lock and release.
    package var statistics: Statistics {
        var sessions = 0
        var locked = 0
        for shard in shards {
            shard.withLock { state in
                sessions += state.entries.count
                locked += state.entries.values.count { $0.locked }
            }
        }
        return Statistics(sessions: sessions, bytes: total.withLock { $0 }, locked: locked)
    }

    private func reserve(bytes: Int) -> Bool {
        total.withLock { total in
            guard bytes <= 0 || total + bytes <= limits.maxTotalSize else { return false }
            total += bytes
            return true
        }
    }

    private func release(bytes: Int) {
        total.withLock { $0 -= bytes }
    }

    package static func monotonicSeconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec)
    }

    /// `DateTime.Now.Ticks`: 100 ns units since 0001-01-01 in local time.
    package static func localTicksNow() -> Int64 {
        let now = Date()
        let offset = TimeZone.current.secondsFromGMT(for: now)
        return 621_355_968_000_000_000 + Int64((now.timeIntervalSince1970 + Double(offset)) * 10_000_000)
    }
}
