import Glibc

/// Wakes the requests of this process that wait for a session's lock when it is released: by
/// this process (at once) or by another worker (PostgreSQL `NOTIFY`, through the listener).
/// A release seen shortly before a waiter starts waiting wakes it at once too, since it may
/// have happened between the waiter's read and its wait. A pthread mutex and condition, which
/// the thread sanitizer sees.
final class ReleaseSignal: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// When each session was last released (pruned to the last few seconds).
    private var recent: [String: ContinuousClock.Instant] = [:]
    /// A release that old or newer counts as one the waiter may have missed.
    static let missWindow: Duration = .milliseconds(500)

    init() {
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

    func released(_ ids: [String]) {
        guard !ids.isEmpty else { return }
        let now = ContinuousClock.now
        pthread_mutex_lock(mutex)
        if recent.count > 10_000 { recent = recent.filter { now - $0.value < .seconds(2) } }
        for id in ids { recent[id] = now }
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    /// When `id` was last released, if lately.
    func lastRelease(of id: String) -> ContinuousClock.Instant? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return recent[id]
    }

    /// Returns when `id` is released or at `deadline`.
    func wait(for id: String, until deadline: ContinuousClock.Instant) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        let start = ContinuousClock.now
        if let last = recent[id], start - last < Self.missWindow { return }
        while ContinuousClock.now < deadline {
            if let last = recent[id], last >= start { return }
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
