import Glibc

/// A URL (or directory) of a site, as the store memoises it.
struct LookupKey: Hashable, Sendable {
    var site: SiteSelector
    var path: String
}

/// A memo bounded in bytes: entries go into a young generation; when it holds half the budget it
/// becomes the old generation (the previous old one is dropped), and an old entry that is used
/// again moves back to the young one. So recently used entries stay, a flood of new keys (a
/// hostile client's unique URLs) displaces at most the budget, and no entry needs a timestamp.
struct BoundedCache<Key: Hashable, Value> {
    private struct Entry {
        var value: Value
        var bytes: Int
    }

    let byteLimit: Int
    private var young: [Key: Entry] = [:]
    private var old: [Key: Entry] = [:]
    private var youngBytes = 0
    private var oldBytes = 0

    init(byteLimit: Int) {
        self.byteLimit = byteLimit
    }

    var count: Int { young.count + old.count }
    var bytes: Int { youngBytes + oldBytes }

    mutating func value(for key: Key) -> Value? {
        if let entry = young[key] { return entry.value }
        guard let entry = old.removeValue(forKey: key) else { return nil }
        oldBytes -= entry.bytes
        insert(entry.value, for: key, bytes: entry.bytes)
        return entry.value
    }

    /// Keeps `value` unless it alone takes more than half the budget.
    mutating func insert(_ value: Value, for key: Key, bytes: Int) {
        guard bytes <= byteLimit / 2 else { return }
        if let previous = young.updateValue(Entry(value: value, bytes: bytes), forKey: key) { youngBytes -= previous.bytes }
        youngBytes += bytes
        if let previous = old.removeValue(forKey: key) { oldBytes -= previous.bytes }
        if youngBytes > byteLimit / 2 {
            old = young
            oldBytes = youngBytes
            young = [:]
            youngBytes = 0
        }
    }

    mutating func removeAll() {
        young = [:]
        old = [:]
        youngBytes = 0
        oldBytes = 0
    }
}

/// Each thread's memo of the lookups it made, per store, so that a repeated lookup takes no lock
/// shared by the threads: the store's generation (an atomic, bumped whenever anything is
/// re-read) tells whether the memo is still good. Threads keep memos of at most a few stores.
final class ThreadLookupCaches {
    private struct Slot {
        var store: UInt64
        var generation: UInt64
        var cache: BoundedCache<LookupKey, ConfigurationStore.Lookup>
    }

    /// Bytes of URLs memoised per thread and store.
    static let byteLimit = 64 * 1024
    private static let storesPerThread = 4

    private var slots: [Slot] = []

    /// The calling thread's memos.
    static var current: ThreadLookupCaches {
        if let existing = pthread_getspecific(key) { return Unmanaged<ThreadLookupCaches>.fromOpaque(existing).takeUnretainedValue() }
        let caches = ThreadLookupCaches()
        // Released by the key's destructor when the thread exits.
        pthread_setspecific(key, Unmanaged.passRetained(caches).toOpaque())
        return caches
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let created = pthread_key_create(&key) { pointer in
            guard let pointer else { return }
            Unmanaged<ThreadLookupCaches>.fromOpaque(pointer).release()
        }
        precondition(created == 0, "pthread_key_create failed: \(created)")
        return key
    }()

    func value(for key: LookupKey, store: UInt64, generation: UInt64) -> ConfigurationStore.Lookup? {
        guard let index = slots.firstIndex(where: { $0.store == store }) else { return nil }
        guard slots[index].generation == generation else {
            slots[index].cache.removeAll()
            slots[index].generation = generation
            return nil
        }
        return slots[index].cache.value(for: key)
    }

    /// Keeps `value`, computed at `generation`, unless the memo already holds a newer generation.
    func insert(_ value: ConfigurationStore.Lookup, for key: LookupKey, store: UInt64, generation: UInt64, bytes: Int) {
        let index: Int
        if let found = slots.firstIndex(where: { $0.store == store }) {
            index = found
        } else {
            if slots.count >= Self.storesPerThread { slots.removeFirst() }
            slots.append(Slot(store: store, generation: generation, cache: BoundedCache(byteLimit: Self.byteLimit)))
            index = slots.count - 1
        }
        if slots[index].generation < generation {
            slots[index].cache.removeAll()
            slots[index].generation = generation
        }
        guard slots[index].generation == generation else { return }
        slots[index].cache.insert(value, for: key, bytes: bytes)
    }
}
