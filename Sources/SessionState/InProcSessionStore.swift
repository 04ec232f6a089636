import Locking
import Dispatch
import Synchronization

/// Sessions in this process's memory (`mode="InProc"`, and every classic ASP session).
///
/// Items are kept as values, never serialized. The store is split into shards by session ID,
/// each behind its own lock, so requests of different sessions rarely contend. Expiry is
/// sliding: every access moves a session's expiry time, without touching the schedule; each
/// session has one entry in its shard's min-heap, and when that entry comes due the sweep either
/// expires the session or re-schedules it at its current expiry. Sweeping therefore costs work
/// in proportion to sessions that come due, never a scan of all sessions.
public final class InProcSessionStore: SessionStateStore {
    static let shardCount = 32

    private let shards: [ShardBox]
    private let clock: any SessionClock
    private let nextLock = Atomic<Int>(0)
    private let nextGeneration = Atomic<UInt64>(0)
    private let expireCallback = Locked<(@Sendable (SessionKey, SessionStateStoreData, SessionEndReason) -> Void)?>(nil)

    public init(clock: any SessionClock = SystemSessionClock()) {
        self.clock = clock
        shards = (0..<Self.shardCount).map { _ in ShardBox() }
    }

    struct Entry {
        var data: SessionStateStoreData
        var expiresAt: Duration
        /// When the heap will look at this entry next.
        var scheduledAt: Duration
        /// Tells this entry's heap node from those of a removed entry under the same key.
        var generation: UInt64
        var lock: LockID?
        var lockedAt: Duration = .zero
        var uninitialized = false
        /// Requests waiting for the lock, first come first served. A release wakes the first; a
        /// woken request that reads without locking wakes the next in turn. So readers go on
        /// together and writers one at a time, without waking everyone at every release.
        var waiters: [DispatchSemaphore] = []

        mutating func wakeNext() {
            if !waiters.isEmpty { waiters.removeFirst().signal() }
        }

        /// The session is gone: every waiter finds out.
        mutating func wakeAll() {
            for waiter in waiters { waiter.signal() }
            waiters.removeAll()
        }
    }

    struct Shard {
        var entries: [SessionKey: Entry] = [:]
        /// The applications with a session under each ID (nearly always one).
        var applicationsByID: [String: [String]] = [:]
        /// Sessions per application.
        var countByApplication: [String: Int] = [:]
        var schedule = ExpiryHeap()

        mutating func insert(_ key: SessionKey, _ entry: Entry) {
            if entries.updateValue(entry, forKey: key) == nil {
                applicationsByID[key.id, default: []].append(key.application)
                countByApplication[key.application, default: 0] += 1
            }
            schedule.push(ExpiryHeap.Node(at: entry.scheduledAt, key: key, generation: entry.generation))
        }

        mutating func remove(_ key: SessionKey) -> Entry? {
            guard var entry = entries.removeValue(forKey: key) else { return nil }
            entry.wakeAll()
            if let applications = applicationsByID[key.id], applications.count > 1 {
                applicationsByID[key.id] = applications.filter { $0 != key.application }
            } else {
                applicationsByID[key.id] = nil
            }
            if let count = countByApplication[key.application], count > 1 { countByApplication[key.application] = count - 1 } else { countByApplication[key.application] = nil }
            return entry
        }
    }

    final class ShardBox: Sendable {
        let state = Locked(Shard())
    }

    private func shard(_ id: String) -> ShardBox {
        var hasher = Hasher()
        hasher.combine(id)
        return shards[Int(UInt(bitPattern: hasher.finalize()) % UInt(Self.shardCount))]
    }

    private func newEntry(_ data: SessionStateStoreData, now: Duration) -> Entry {
        let expiresAt = now + .seconds(Int64(data.timeout) * 60)
        return Entry(data: data, expiresAt: expiresAt, scheduledAt: expiresAt, generation: nextGeneration.wrappingAdd(1, ordering: .relaxed).newValue)
    }

    /// Slides the expiry; re-schedules only when the timeout got shorter than the schedule.
    private static func touch(_ entry: inout Entry, _ key: SessionKey, now: Duration, shard: inout Shard, generation: () -> UInt64) {
        entry.expiresAt = now + .seconds(Int64(entry.data.timeout) * 60)
        if entry.expiresAt < entry.scheduledAt {
            entry.generation = generation()
            entry.scheduledAt = entry.expiresAt
            shard.schedule.push(ExpiryHeap.Node(at: entry.scheduledAt, key: key, generation: entry.generation))
        }
    }

    private func generation() -> UInt64 { nextGeneration.wrappingAdd(1, ordering: .relaxed).newValue }

    // MARK: SessionStateStore

    public func setItemExpireCallback(_ callback: @escaping @Sendable (SessionKey, SessionStateStoreData, SessionEndReason) -> Void) -> Bool {
        expireCallback.withLock { $0 = callback }
        return true
    }

    public func getItem(_ key: SessionKey) -> StoreLookup {
        get(key, exclusive: false)
    }

    public func getItemExclusive(_ key: SessionKey) -> StoreLookup {
        get(key, exclusive: true)
    }

    private func get(_ key: SessionKey, exclusive: Bool) -> StoreLookup {
        let now = clock.now
        return shard(key.id).state.withLock { shard in
            guard var entry = shard.entries[key], entry.expiresAt > now || entry.lock != nil else { return .notFound }
            Self.touch(&entry, key, now: now, shard: &shard, generation: generation)
            defer { shard.entries[key] = entry }
            if let holder = entry.lock {
                return .locked(lockAge: now - entry.lockedAt, lockID: holder)
            }
            let actions: SessionStateActions = entry.uninitialized ? .initializeItem : .none
            entry.uninitialized = false
            var lock: LockID?
            if exclusive {
                lock = LockID(nextLock.wrappingAdd(1, ordering: .relaxed).newValue)
                entry.lock = lock
                entry.lockedAt = now
            } else {
                entry.wakeNext()
            }
            return .found(entry.data, lockID: lock, actions: actions)
        }
    }

    public func releaseItemExclusive(_ key: SessionKey, lockID: LockID) {
        let now = clock.now
        shard(key.id).state.withLock { shard in
            guard var entry = shard.entries[key], entry.lock == lockID else { return }
            entry.lock = nil
            entry.wakeNext()
            Self.touch(&entry, key, now: now, shard: &shard, generation: generation)
            shard.entries[key] = entry
        }
    }

    /// Saves and unlocks. Throws `lockLost` (and saves nothing) when `lockID` no longer holds the
    /// lock: it was broken and the session taken, or released, by another request. ASP.NET's
    /// InProc store drops such a write silently.
    public func setAndReleaseItemExclusive(_ key: SessionKey, data: SessionStateStoreData, lockID: LockID?, newItem: Bool) throws(SessionStoreError) {
        let now = clock.now
        var stored = data
        stored.items.markClean()
        var lost = false
        let replaced: (entry: Entry, reason: SessionEndReason)? = shard(key.id).state.withLock { shard in
            if newItem {
                let old = shard.remove(key)
                shard.insert(key, newEntry(stored, now: now))
                // An expired entry the sweep had not reached yet ended by expiry, not by Abandon.
                return old.map { ($0, $0.expiresAt > now || $0.lock != nil ? .abandoned : .expired) }
            }
            guard var entry = shard.entries[key], entry.lock != nil, entry.lock == lockID else {
                lost = true
                return nil
            }
            entry.data = stored
            entry.lock = nil
            entry.wakeNext()
            Self.touch(&entry, key, now: now, shard: &shard, generation: generation)
            shard.entries[key] = entry
            return nil
        }
        if lost {
            throw SessionStoreError(.lockLost, "the session's lock was broken and taken by another request (or the session ended): this request's changes were not saved")
        }
        // A session replaced by a new one under the same key ended (it cannot normally exist:
        // new items get new IDs).
        if let replaced, !replaced.entry.uninitialized { notifyEnded([(key, replaced.entry.data)], reason: replaced.reason) }
    }

    public func removeItem(_ key: SessionKey, lockID: LockID?, data: SessionStateStoreData?) {
        let removed: Entry? = shard(key.id).state.withLock { shard in
            guard let entry = shard.entries[key], entry.lock == lockID else { return nil }
            return shard.remove(key)
        }
        // Session_End sees what the abandoning request left (as ASP.NET's InProc handler does).
        if let removed, !removed.uninitialized { notifyEnded([(key, data ?? removed.data)], reason: .abandoned) }
    }

    public func resetItemTimeout(_ key: SessionKey) {
        let now = clock.now
        shard(key.id).state.withLock { shard in
            guard var entry = shard.entries[key], entry.expiresAt > now else { return }
            Self.touch(&entry, key, now: now, shard: &shard, generation: generation)
            shard.entries[key] = entry
        }
    }

    public func createUninitializedItem(_ key: SessionKey, timeout: Int) {
        let now = clock.now
        let replaced: Entry? = shard(key.id).state.withLock { shard in
            // A locked entry is live even past its expiry (as `get` treats it).
            if let existing = shard.entries[key], existing.expiresAt > now || existing.lock != nil { return nil }
            var entry = newEntry(SessionStateStoreData(timeout: timeout), now: now)
            entry.uninitialized = true
            let old = shard.remove(key)
            shard.insert(key, entry)
            return old
        }
        // An expired session the sweep had not reached yet still ends (Session_End).
        if let replaced, !replaced.uninitialized { notifyEnded([(key, replaced.data)], reason: .expired) }
    }

    public func containsSession(id: String) -> Bool {
        let now = clock.now
        return shard(id).state.withLock { shard in
            // Live sessions only: one that expired but the sweep has not reached yet is no more
            // known than one already swept (else its ID would be adopted for up to a sweep interval).
            (shard.applicationsByID[id] ?? []).contains { application in
                shard.entries[SessionKey(application: application, id: id)].map { $0.expiresAt > now || $0.lock != nil } ?? false
            }
        }
    }

    public func waitForRelease(_ key: SessionKey, lockID: LockID, deadline: ContinuousClock.Instant) {
        let waiter = DispatchSemaphore(value: 0)
        let waiting = shard(key.id).state.withLock { shard in
            guard var entry = shard.entries[key], entry.lock == lockID else { return false }
            entry.waiters.append(waiter)
            shard.entries[key] = entry
            return true
        }
        guard waiting else { return }
        let remaining = deadline - ContinuousClock.now
        if remaining > .zero {
            let (seconds, attoseconds) = remaining.components
            if waiter.wait(timeout: .now() + .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))) == .success { return }
        }
        // Timed out: leave the queue, so a release does not wake this request instead of a
        // waiting one. If a release took it off the queue meanwhile, this request has the turn
        // and its caller tries again.
        shard(key.id).state.withLock { shard in
            guard var entry = shard.entries[key], let index = entry.waiters.firstIndex(where: { $0 === waiter }) else { return }
            entry.waiters.remove(at: index)
            shard.entries[key] = entry
        }
    }

    // MARK: Beyond the provider contract

    /// Live sessions of `application` (classic ASP's `max`).
    public func count(application: String) -> Int {
        shards.reduce(0) { total, box in total + box.state.withLock { $0.countByApplication[application] ?? 0 } }
    }

    /// Live sessions in all applications.
    public var statusLocation: String { "memory" }
    public var liveSessionCount: Int? { count }

    public var count: Int {
        shards.reduce(0) { total, box in total + box.state.withLock { $0.entries.count } }
    }

    /// Ends the sessions whose time is up and calls the expire callback for each (not for
    /// uninitialized items, as ASP.NET). The host calls this every second.
    @discardableResult
    public func removeExpiredItems() -> Int {
        let now = clock.now
        var ended = 0
        for box in shards {
            let expired: [(SessionKey, SessionStateStoreData)] = box.state.withLock { shard in
                var expired: [(SessionKey, SessionStateStoreData)] = []
                while let node = shard.schedule.first, node.at <= now {
                    shard.schedule.removeFirst()
                    guard var entry = shard.entries[node.key], entry.generation == node.generation else { continue }
                    if entry.expiresAt > now || entry.lock != nil {
                        // Touched since it was scheduled, or a request still holds it: look again
                        // when it could next be due.
                        entry.scheduledAt = max(entry.expiresAt, now + .seconds(1))
                        shard.entries[node.key] = entry
                        shard.schedule.push(ExpiryHeap.Node(at: entry.scheduledAt, key: node.key, generation: entry.generation))
                        continue
                    }
                    if let removed = shard.remove(node.key), !removed.uninitialized { expired.append((node.key, removed.data)) }
                }
                return expired
            }
            ended += expired.count
            notifyEnded(expired, reason: .expired)
        }
        return ended
    }

    private func notifyEnded(_ sessions: [(SessionKey, SessionStateStoreData)], reason: SessionEndReason) {
        guard !sessions.isEmpty, let callback = expireCallback.withLock({ $0 }) else { return }
        for (key, data) in sessions { callback(key, data, reason) }
    }
}

/// A binary min-heap of expiry times.
struct ExpiryHeap {
    struct Node {
        var at: Duration
        var key: SessionKey
        var generation: UInt64
    }

    private var nodes: [Node] = []

    var first: Node? { nodes.first }
    var count: Int { nodes.count }

    mutating func push(_ node: Node) {
        nodes.append(node)
        var child = nodes.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard nodes[child].at < nodes[parent].at else { break }
            nodes.swapAt(child, parent)
            child = parent
        }
    }

    mutating func removeFirst() {
        let last = nodes.removeLast()
        guard !nodes.isEmpty else { return }
        nodes[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < nodes.count else { break }
            let right = left + 1
            let smaller = right < nodes.count && nodes[right].at < nodes[left].at ? right : left
            guard nodes[smaller].at < nodes[parent].at else { break }
            nodes.swapAt(parent, smaller)
            parent = smaller
        }
    }
}
