import Dispatch
import Foundation
import Locking
import Synchronization

/// One worker thread as the scheduler sees it.
final class WorkerSlot: Sendable {
    /// When the request being served started, in `WorkerScheduler.now()` nanoseconds; 0 while
    /// the thread waits for a connection.
    let servingSince = Atomic<Int64>(0)
    /// Whether the thread holds one of the `activeLimit` turns (counted in `active`). Changed
    /// only under the scheduler's lock; the watchdog and `willBlock` take it away from a thread
    /// that blocks, and `requestEnded` or `takeTurn` give one back.
    let hasTurn = Atomic<Bool>(false)
    /// Signalled when a benched thread gets a turn (or the server stops).
    let turn = DispatchSemaphore(value: 0)
}

/// Lets only a few worker threads take connections at a time, and adds threads from the rest of
/// the pool only when those block.
///
/// With every thread waiting in `epoll_wait`, each connection that becomes readable wakes a
/// sleeping thread, even when the threads already running would take it a moment later: on a
/// small machine most of the time then goes to switching between threads. So only `activeLimit`
/// threads (about one per core) wait for connections; the others sleep on a bench, most recently
/// benched first (their stacks are still warm). A handler may block, though (a session lock, a
/// store, an async handler): a watchdog checks every millisecond while requests run, and a
/// thread whose request has run for longer than `blockedAfter` stops counting, and a benched
/// thread takes its turn. When the long request ends, its thread goes back to the bench if the
/// turns are taken. `--threads` is still the number of requests that can be served at once.
/// This is the scheme Go's runtime uses for goroutines blocked in system calls.
final class WorkerScheduler: @unchecked Sendable {
    let activeLimit: Int
    private let slots: [WorkerSlot]
    private let state = Locked(State())
    private let blockedAfter: Int64
    private let watchdogStopped = Atomic<Bool>(false)

    private struct State {
        /// Threads whose turn counts against `activeLimit`.
        var active = 0
        /// Sleeping threads, the most recently benched last.
        var bench: [WorkerSlot] = []
        var stopped = false
    }

    /// How long a request may run before its thread is presumed blocked.
    static let defaultBlockedAfter = Duration.milliseconds(2)

    init(threadCount: Int, activeLimit: Int, blockedAfter: Duration = defaultBlockedAfter) {
        slots = (0..<threadCount).map { _ in WorkerSlot() }
        self.activeLimit = max(1, min(activeLimit, threadCount))
        let parts = blockedAfter.components
        self.blockedAfter = parts.seconds * 1_000_000_000 + parts.attoseconds / 1_000_000_000
    }

    /// One core's worth of threads per core, at least two (so one long request never leaves the
    /// connections unwatched for a whole watchdog period).
    static var defaultActiveLimit: Int { max(2, ProcessInfo.processInfo.activeProcessorCount) }

    func slot(_ index: Int) -> WorkerSlot { slots[index] }

    /// Waits until `slot` may take connections; false once the server stops.
    func takeTurn(_ slot: WorkerSlot) -> Bool {
        let granted = state.withLock { state -> Bool? in
            if state.stopped { return false }
            if slot.hasTurn.load(ordering: .sequentiallyConsistent) { return true }
            if state.active < activeLimit {
                state.active += 1
                slot.hasTurn.store(true, ordering: .sequentiallyConsistent)
                return true
            }
            state.bench.append(slot)
            return nil
        }
        if let granted { return granted }
        // Whoever signals has counted the turn and set `hasTurn` (or stopped the server).
        slot.turn.wait()
        return state.withLock { !$0.stopped }
    }

    /// Marks the start of a request on `slot`'s thread.
    func requestStarted(_ slot: WorkerSlot) {
        slot.servingSince.store(Self.now(), ordering: .relaxed)
    }

    /// Marks the end of a request; false when the thread has no turn now (it was taken while
    /// the request blocked, and none is free): the thread finishes what its connection holds,
    /// then waits in `takeTurn`.
    func requestEnded(_ slot: WorkerSlot) -> Bool {
        // Sequentially consistent with the watchdog's store-then-load: either this load sees the
        // turn taken, or the watchdog sees the request over and gives the turn back.
        slot.servingSince.store(0, ordering: .sequentiallyConsistent)
        if slot.hasTurn.load(ordering: .sequentiallyConsistent) { return true }
        return state.withLock { state in
            if slot.hasTurn.load(ordering: .sequentiallyConsistent) { return true }
            guard state.active < activeLimit, !state.stopped else { return false }
            state.active += 1
            slot.hasTurn.store(true, ordering: .sequentiallyConsistent)
            return true
        }
    }

    /// `slot`'s thread is about to block inside its request (I/O, a lock wait): its turn goes to
    /// a benched thread now, as the watchdog would after `blockedAfter`. The thread finishes its
    /// request without a turn and goes back through `requestEnded`.
    func willBlock(_ slot: WorkerSlot) {
        guard slot.servingSince.load(ordering: .relaxed) != 0, slot.hasTurn.load(ordering: .relaxed) else { return }
        let woken = state.withLock { state -> WorkerSlot? in
            guard !state.stopped, slot.hasTurn.load(ordering: .sequentiallyConsistent) else { return nil }
            slot.hasTurn.store(false, ordering: .sequentiallyConsistent)
            state.active -= 1
            return promoteBenched(&state)
        }
        woken?.turn.signal()
    }

    /// Gives a free turn to the most recently benched thread (under the lock); the caller
    /// signals it after unlocking.
    private func promoteBenched(_ state: inout State) -> WorkerSlot? {
        guard state.active < activeLimit, let next = state.bench.popLast() else { return nil }
        state.active += 1
        next.hasTurn.store(true, ordering: .sequentiallyConsistent)
        return next
    }

    /// Wakes every benched thread so that it can exit.
    func stop() {
        watchdogStopped.store(true, ordering: .relaxed)
        let benched = state.withLock { state -> [WorkerSlot] in
            state.stopped = true
            defer { state.bench = [] }
            return state.bench
        }
        for slot in benched { slot.turn.signal() }
    }

    /// Runs the watchdog on its own thread until `stop()`.
    func startWatchdog() {
        let thread = Thread { [self] in
            var busy = false
            while !watchdogStopped.load(ordering: .relaxed) {
                // Every millisecond while requests run; idle, rarely (the first request that
                // blocks after a quiet spell waits up to this long for a replacement thread).
                usleep(busy ? 1_000 : 20_000)
                busy = checkForBlockedThreads()
            }
        }
        thread.name = "fcgi-watchdog"
        thread.start()
    }

    /// Takes the turn of every thread whose request has run longer than `blockedAfter` and
    /// gives it to a benched thread. Returns whether any request is running.
    private func checkForBlockedThreads() -> Bool {
        let now = Self.now()
        var running = false
        var blocked: [WorkerSlot] = []
        for slot in slots {
            let since = slot.servingSince.load(ordering: .relaxed)
            guard since != 0 else { continue }
            running = true
            if now - since > blockedAfter, slot.hasTurn.load(ordering: .relaxed) { blocked.append(slot) }
        }
        guard !blocked.isEmpty else { return running }
        let woken = state.withLock { state -> [WorkerSlot] in
            guard !state.stopped else { return [] }
            for slot in blocked where slot.hasTurn.load(ordering: .sequentiallyConsistent) {
                slot.hasTurn.store(false, ordering: .sequentiallyConsistent)
                // Checked again after the store: the request may have ended (or a new one begun)
                // since the scan; then the thread keeps its turn.
                let since = slot.servingSince.load(ordering: .sequentiallyConsistent)
                if since == 0 || now - since <= blockedAfter {
                    slot.hasTurn.store(true, ordering: .sequentiallyConsistent)
                } else {
                    state.active -= 1
                }
            }
            var woken: [WorkerSlot] = []
            while let next = promoteBenched(&state) { woken.append(next) }
            return woken
        }
        for slot in woken { slot.turn.signal() }
        return running
    }

    /// Monotonic nanoseconds (never 0 on a running system).
    static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }
}
