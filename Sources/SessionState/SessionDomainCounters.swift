import Synchronization

/// What a session domain counted since the worker started: the status page's and metrics'
/// numbers for one domain and store. Counted with relaxed atomics on the request path (a few
/// nanoseconds each), read at scrape time.
package final class SessionDomainCounters: Sendable {
    /// Requests that found the session locked and waited for it.
    let lockWaits = Atomic<UInt64>(0)
    /// Their time waiting, in nanoseconds.
    let lockWaitNanoseconds = Atomic<UInt64>(0)
    /// Requests refused because too many already waited for the session (503).
    let queueLimitRefusals = Atomic<UInt64>(0)
    /// Locks held past the execution timeout and broken.
    let staleLocksBroken = Atomic<UInt64>(0)
    /// Store calls, failed store calls, and the store calls' total time in nanoseconds.
    let storeCalls = Atomic<UInt64>(0)
    let storeErrors = Atomic<UInt64>(0)
    let storeNanoseconds = Atomic<UInt64>(0)

    package init() {}

    /// Runs one store call, counting it, its time and its failure.
    func measure<T>(_ call: () throws(SessionStoreError) -> T) throws(SessionStoreError) -> T {
        let start = ContinuousClock.now
        defer {
            storeCalls.wrappingAdd(1, ordering: .relaxed)
            storeNanoseconds.wrappingAdd(Self.nanoseconds(ContinuousClock.now - start), ordering: .relaxed)
        }
        do {
            return try call()
        } catch {
            storeErrors.wrappingAdd(1, ordering: .relaxed)
            throw error
        }
    }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        let parts = duration.components
        return UInt64(max(0, parts.seconds)) * 1_000_000_000 + UInt64(max(0, parts.attoseconds / 1_000_000_000))
    }

    package var snapshot: SessionDomainStatistics {
        SessionDomainStatistics(
            lockWaits: lockWaits.load(ordering: .relaxed), lockWaitSeconds: Double(lockWaitNanoseconds.load(ordering: .relaxed)) / 1e9,
            queueLimitRefusals: queueLimitRefusals.load(ordering: .relaxed), staleLocksBroken: staleLocksBroken.load(ordering: .relaxed),
            storeCalls: storeCalls.load(ordering: .relaxed), storeErrors: storeErrors.load(ordering: .relaxed),
            storeSeconds: Double(storeNanoseconds.load(ordering: .relaxed)) / 1e9)
    }
}

/// One domain's counters at one moment.
package struct SessionDomainStatistics: Sendable, Hashable {
    package var lockWaits: UInt64
    package var lockWaitSeconds: Double
    package var queueLimitRefusals: UInt64
    package var staleLocksBroken: UInt64
    package var storeCalls: UInt64
    package var storeErrors: UInt64
    package var storeSeconds: Double
}
