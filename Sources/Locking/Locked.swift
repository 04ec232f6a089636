import Glibc

/// A value behind a pthread mutex.
///
/// `Synchronization.Mutex` locks with futexes on Linux, which the thread sanitizer does not see:
/// it reports every contended access inside `withLock` as a race (checked with a 10-line
/// program), so it cannot check code that uses it. The sanitizer does see pthread mutexes, which
/// cost the same when uncontended.
package final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    package init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    package func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
