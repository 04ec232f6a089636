import CEpoll
import Foundation
import Locking
import Logging
import Synchronization

/// One accepted connection. It belongs to the pool while parked and to one worker thread while
/// that thread reads or serves it; the hand-over goes through the pool's locks.
final class PooledConnection: @unchecked Sendable {
    let fd: Int32
    /// Names the connection in epoll events (file descriptors are reused, identifiers are not).
    let identifier: UInt64
    var reader: RequestReader
    /// When a parked connection that stalled inside a request is closed; nil while idle.
    var deadline: ContinuousClock.Instant?
    /// What is logged when it is closed at the deadline.
    var stall = ""
    /// Whether it stalled in a request body (else in a request head), for the counters.
    var stalledInBody = false
    /// Whether its descriptor is in the epoll set (a connection read at once after accept is not
    /// until it is first parked).
    var registered = false

    init(fd: Int32, identifier: UInt64, reader: RequestReader) {
        self.fd = fd
        self.identifier = identifier
        self.reader = reader
    }
}

/// Accepts connections and parks them in epoll while they wait for bytes, so that an idle
/// kept-alive connection (or one stalled inside a request) holds no thread.
///
/// The worker threads wait on the pool's epoll instance themselves (leader/followers, no
/// dispatcher thread): each `next()` returns one connection that became readable, accepting new
/// ones on the way. Every connection is registered one-shot, so exactly one thread gets it;
/// after a request it is parked again. Connections stalled inside a request are closed at
/// their deadline; past `maxConnections` new connections wait in the listen backlog.
final class ConnectionPool: @unchecked Sendable {
    private let epoll: Int32
    private let wake: Int32
    private let listenFD: Int32
    private let logger: Logger
    private let maxConnections: Int
    private let makeReader: @Sendable () -> RequestReader
    /// The parked connections, by identifier, in shards so that threads parking and taking
    /// connections rarely meet on a lock.
    private let shards = (0..<64).map { _ in Locked([UInt64: PooledConnection]()) }
    /// Connections open (parked or being served).
    private let open = Atomic<Int>(0)
    /// Whether the listening socket is out of the epoll set; changed only under `acceptState`.
    private let acceptPaused = Atomic<Bool>(false)
    private let acceptState = Locked(AcceptState())
    private let nextIdentifier = Atomic<UInt64>(2)
    private let stopped = Atomic<Bool>(false)
    /// When deadlines are next checked, in nanoseconds of `ContinuousClock` since `origin`.
    private let nextCheck = Atomic<Int64>(0)
    private let origin = ContinuousClock.now
    /// Connections closed because a request head, or body, stalled past its timeout.
    let headTimeouts = Atomic<UInt64>(0)
    let bodyTimeouts = Atomic<UInt64>(0)

    private static let listenIdentifier: UInt64 = 0
    private static let wakeIdentifier: UInt64 = 1
    /// How often deadlines are checked.
    private static let tickMilliseconds: Int32 = 100

    /// Why accepting is paused, and when the limit was last reported.
    private struct AcceptState {
        /// Out of descriptors since then: accepting resumes on the next deadline check.
        var outOfDescriptorsSince: ContinuousClock.Instant?
        var lastLimitWarning: ContinuousClock.Instant?
    }

    private func shard(_ identifier: UInt64) -> Locked<[UInt64: PooledConnection]> {
        shards[Int(identifier % UInt64(shards.count))]
    }

    init(listenFD: Int32, maxConnections: Int, logger: Logger, makeReader: @escaping @Sendable () -> RequestReader) throws(FastCGIServerError) {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        wake = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        self.listenFD = listenFD
        self.maxConnections = maxConnections
        self.logger = logger
        self.makeReader = makeReader
        guard epoll >= 0, wake >= 0 else { throw .cannotListen(address: .inherited(fd: listenFD), reason: "epoll: \(errnoText())") }
        _ = fcntl(listenFD, F_SETFL, fcntl(listenFD, F_GETFL) | O_NONBLOCK)
        // Level-triggered and never read: once written, it wakes every waiting thread.
        arm(wake, identifier: Self.wakeIdentifier, operation: EPOLL_CTL_ADD, oneShot: false)
        arm(listenFD, identifier: Self.listenIdentifier, operation: EPOLL_CTL_ADD, oneShot: false)
    }

    deinit {
        _ = Glibc.close(epoll)
        _ = Glibc.close(wake)
    }

    /// The next connection with bytes to read; nil once the pool is stopped.
    func next() -> PooledConnection? {
        var event = epoll_event()
        while !stopped.load(ordering: .acquiring) {
            let count = epoll_wait(epoll, &event, 1, Self.tickMilliseconds)
            checkDeadlinesIfDue()
            if count < 0 {
                if errno == EINTR { continue }
                logger.error("epoll_wait failed", metadata: ["error": "\(errnoText())"])
                return nil
            }
            guard count == 1 else { continue }
            switch event.data.u64 {
            case Self.listenIdentifier:
                // The web server writes a request right after connecting: this thread reads the
                // first new connection at once instead of waiting for epoll to report it.
                if let first = acceptAll() { return first }
            case Self.wakeIdentifier: return nil
            default:
                if let connection = shard(event.data.u64).withLock({ $0.removeValue(forKey: event.data.u64) }) {
                    return connection
                }
            }
        }
        return nil
    }

    /// Parks `connection` until it is readable (or its deadline passes).
    func park(_ connection: PooledConnection) {
        if connection.reader.isIdle { connection.reader.releaseBufferIfEmpty() }
        let operation = connection.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD
        connection.registered = true
        // In the table before it is armed, so a readiness event always finds it; armed under
        // the shard's lock, so `stop` cannot close the descriptor in between.
        let parked = shard(connection.identifier).withLock { table -> Bool in
            guard !stopped.load(ordering: .acquiring) else { return false }
            table[connection.identifier] = connection
            arm(connection.fd, identifier: connection.identifier, operation: operation, oneShot: true)
            return true
        }
        if !parked { close(connection) }
    }

    /// Closes a connection a worker is done with.
    func close(_ connection: PooledConnection) {
        connection.reader.deallocate()
        _ = Glibc.close(connection.fd)
        open.wrappingSubtract(1, ordering: .sequentiallyConsistent)
        if acceptPaused.load(ordering: .sequentiallyConsistent) { resumeAccepting() }
    }

    /// Takes the listening socket out of the epoll set (at `maxConnections`, or out of
    /// descriptors). The flag and the epoll set change together under one lock, and the count
    /// is checked again there, so a connection closing meanwhile cannot leave accepting stopped.
    private func pauseAccepting(outOfDescriptors: Bool) {
        let warning = acceptState.withLock { state -> String? in
            guard !acceptPaused.load(ordering: .sequentiallyConsistent) else { return nil }
            guard outOfDescriptors || open.load(ordering: .sequentiallyConsistent) >= maxConnections else { return nil }
            acceptPaused.store(true, ordering: .sequentiallyConsistent)
            _ = epoll_ctl(epoll, EPOLL_CTL_DEL, listenFD, nil)
            if outOfDescriptors { state.outOfDescriptorsSince = .now }
            guard state.lastLimitWarning.map({ .now - $0 >= .seconds(60) }) ?? true else { return nil }
            state.lastLimitWarning = .now
            return outOfDescriptors
                ? "out of file descriptors; accepting pauses for \(Self.tickMilliseconds) ms"
                : "\(maxConnections) connections open (--max-connections); new ones wait in the listen backlog"
        }
        if let warning { logger.warning("\(warning)") }
    }

    private func resumeAccepting() {
        acceptState.withLock { state in
            guard acceptPaused.load(ordering: .sequentiallyConsistent), !stopped.load(ordering: .acquiring) else { return }
            if let since = state.outOfDescriptorsSince {
                guard .now - since >= .milliseconds(Int(Self.tickMilliseconds)) else { return }
            } else {
                guard open.load(ordering: .sequentiallyConsistent) < maxConnections else { return }
            }
            state.outOfDescriptorsSince = nil
            acceptPaused.store(false, ordering: .sequentiallyConsistent)
            arm(listenFD, identifier: Self.listenIdentifier, operation: EPOLL_CTL_ADD, oneShot: false)
        }
    }

    /// Stops accepting and closes every parked connection at once; connections being served
    /// are closed by their workers when their request ends.
    func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for shard in shards {
            let connections = shard.withLock { table -> [PooledConnection] in
                defer { table = [:] }
                return Array(table.values)
            }
            for connection in connections { close(connection) }
        }
        _ = eventfd_write(wake, 1)
        _ = epoll_ctl(epoll, EPOLL_CTL_DEL, listenFD, nil)
    }

    /// Accepts what the backlog holds: the first connection is returned to be read at once,
    /// the others are parked.
    private func acceptAll() -> PooledConnection? {
        var first: PooledConnection?
        while true {
            if open.load(ordering: .sequentiallyConsistent) >= maxConnections {
                pauseAccepting(outOfDescriptors: false)
                if acceptPaused.load(ordering: .sequentiallyConsistent) { return first }
                continue
            }
            // The connection does not inherit the listening socket's O_NONBLOCK: writes block (a
            // response goes out whole), reads never wait (MSG_DONTWAIT).
            let fd = accept(listenFD, nil, nil)
            if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            if fd < 0 {
                let code = errno
                if code == EINTR || code == ECONNABORTED { continue }
                if code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM {
                    // The backlog stays readable: without a pause every thread would spin here.
                    logger.error("accept failed", metadata: ["error": "\(errnoText(code))"])
                    pauseAccepting(outOfDescriptors: true)
                }
                return first
            }
            let connection = PooledConnection(fd: fd, identifier: nextIdentifier.wrappingAdd(1, ordering: .relaxed).oldValue, reader: makeReader())
            open.wrappingAdd(1, ordering: .sequentiallyConsistent)
            if first == nil {
                first = connection
            } else {
                park(connection)
            }
        }
    }

    /// One thread at a time, every tick, closes the parked connections past their deadline.
    private func checkDeadlinesIfDue() {
        let elapsed = (ContinuousClock.now - origin).components
        let now = elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000
        let due = nextCheck.load(ordering: .relaxed)
        guard now >= due, nextCheck.compareExchange(expected: due, desired: now + Int64(Self.tickMilliseconds) * 1_000_000, ordering: .relaxed).exchanged else { return }
        closeExpired()
        if acceptPaused.load(ordering: .sequentiallyConsistent) { resumeAccepting() }
    }

    /// Connections open, and of them parked (waiting in epoll for bytes).
    var openCount: Int { open.load(ordering: .relaxed) }
    var parkedCount: Int { shards.reduce(0) { total, shard in total + shard.withLock { $0.count } } }

    private func closeExpired() {
        let now = ContinuousClock.now
        for shard in shards {
            let expired = shard.withLock { table -> [PooledConnection] in
                let due = table.values.filter { $0.deadline.map { $0 <= now } ?? false }
                for connection in due { table[connection.identifier] = nil }
                return due
            }
            for connection in expired {
                if connection.stalledInBody {
                    bodyTimeouts.wrappingAdd(1, ordering: .relaxed)
                } else {
                    headTimeouts.wrappingAdd(1, ordering: .relaxed)
                }
                logger.notice("closing FastCGI connection: \(connection.stall)")
                close(connection)
            }
        }
    }

    private func arm(_ fd: Int32, identifier: UInt64, operation: Int32, oneShot: Bool) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | (oneShot ? EPOLLONESHOT.rawValue : 0)
        event.data.u64 = identifier
        if epoll_ctl(epoll, operation, fd, &event) != 0 {
            logger.error("epoll_ctl failed", metadata: ["error": "\(errnoText())", "fd": "\(fd)"])
        }
    }
}
