import Glibc

/// Wakes the requests of this process that wait for a session's lock when it is released: by
/// this process (at once) or by another worker (PostgreSQL `NOTIFY`, Redis pub/sub, through
/// the store's listener). Shared by the out-of-process stores.
/// Releases are kept with the lock cookie they released, so a waiter for holder N returns at
/// once when N's release came between its read and its wait, and keeps waiting while only
/// older holders' releases are seen. A pthread mutex and condition, which the thread sanitizer
/// sees.
package final class ReleaseSignal: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Each session's last release seen: the lock cookie released, and when (pruned to the last
    /// minute when the table grows).
    private var recent: [String: Release] = [:]
    /// Whether a later holder always has a larger cookie (PostgreSQL's and SQLite's counters):
    /// then a release of a later holder also means the earlier one's lock is gone. Without that
    /// (Redis's lock values are local-time ticks) releases are matched by value.
    private let orderedCookies: Bool

    package struct Release {
        package var cookie: Int
        package var at: ContinuousClock.Instant
    }

    package init(orderedCookies: Bool = true) {
        self.orderedCookies = orderedCookies
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// `releases`: stored session ids and the lock cookies released.
    package func released(_ releases: [(id: String, cookie: Int)]) {
        guard !releases.isEmpty else { return }
        let now = ContinuousClock.now
        pthread_mutex_lock(mutex)
        if recent.count > 10_000 { recent = recent.filter { now - $0.value.at < .seconds(60) } }
        for release in releases where !orderedCookies || (recent[release.id]?.cookie ?? .min) <= release.cookie {
            recent[release.id] = Release(cookie: release.cookie, at: now)
        }
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    /// The last release of `id` seen, if any.
    package func lastRelease(of id: String) -> Release? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return recent[id]
    }

    /// Returns when the lock `holder` of `id` (or, with ordered cookies, a later one) is
    /// released, or at `deadline`. Without ordered cookies, any release of `id` after the wait
    /// began also ends it (the caller looks again).
    package func wait(for id: String, holder: Int, until deadline: ContinuousClock.Instant) {
        let start = ContinuousClock.now
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while ContinuousClock.now < deadline {
            if let last = recent[id], orderedCookies ? last.cookie >= holder : last.cookie == holder || last.at >= start { return }
            var limit = Self.monotonicTime(after: deadline - .now)
            pthread_cond_timedwait(condition, mutex, &limit)
        }
    }

    private static func monotonicTime(after delay: Duration) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let nanoseconds = Int(now.tv_nsec) + Int(delay.components.attoseconds / 1_000_000_000)
        return timespec(tv_sec: now.tv_sec + Int(delay.components.seconds) + nanoseconds / 1_000_000_000, tv_nsec: nanoseconds % 1_000_000_000)
    }
}
