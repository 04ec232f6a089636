import Synchronization

/// What the state server counted since it started, for its status page: requests by operation,
/// lock conflicts, lock waits (the wake-up extension) and refusals. Relaxed atomic adds on the
/// event loops, read at scrape time.
package final class StateServerCounters: Sendable {
    let reads = Atomic<UInt64>(0)
    let exclusiveReads = Atomic<UInt64>(0)
    let releases = Atomic<UInt64>(0)
    let writes = Atomic<UInt64>(0)
    let removals = Atomic<UInt64>(0)
    let timeoutResets = Atomic<UInt64>(0)
    /// Reads that found the session locked by another client.
    let lockConflicts = Atomic<UInt64>(0)
    let notFound = Atomic<UInt64>(0)
    /// Writes refused because the item or the memory limit was exceeded (507).
    let tooLarge = Atomic<UInt64>(0)
    /// Lock waits of the wake-up extension, and those that ran out before the release.
    let waits = Atomic<UInt64>(0)
    let waitsTimedOut = Atomic<UInt64>(0)
    /// Connections closed after a malformed request.
    let malformed = Atomic<UInt64>(0)

    package init() {}

    func count(_ operation: StateRequest.Operation) {
        switch operation {
        case .get(let acquire, _, _):
            if acquire { exclusiveReads.wrappingAdd(1, ordering: .relaxed) } else { reads.wrappingAdd(1, ordering: .relaxed) }
        case .release: releases.wrappingAdd(1, ordering: .relaxed)
        case .put: writes.wrappingAdd(1, ordering: .relaxed)
        case .delete: removals.wrappingAdd(1, ordering: .relaxed)
        case .head: timeoutResets.wrappingAdd(1, ordering: .relaxed)
        }
    }

    func count(_ answer: StateTable.Answer) {
        switch answer {
        case .ok: break
        case .notFound: notFound.wrappingAdd(1, ordering: .relaxed)
        case .locked: lockConflicts.wrappingAdd(1, ordering: .relaxed)
        case .tooLarge: tooLarge.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// The operations by name, for the status page.
    var operations: [String: UInt64] {
        ["get": reads.load(ordering: .relaxed), "getExclusive": exclusiveReads.load(ordering: .relaxed),
         "release": releases.load(ordering: .relaxed), "put": writes.load(ordering: .relaxed),
         "remove": removals.load(ordering: .relaxed), "resetTimeout": timeoutResets.load(ordering: .relaxed)]
    }
}
