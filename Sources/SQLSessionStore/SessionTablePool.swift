import Dispatch
import Locking
import SessionState

/// A connection a pool keeps between uses.
protocol PooledConnection: AnyObject {
    /// Whether the connection can be used again (after a statement).
    var isUsable: Bool { get }
    /// Whether a kept connection may be used (before a statement; may look at its socket).
    var isAlive: Bool { get }
}

/// The connections of one database: kept between requests, at most `maxOpen` in use at once
/// (ADO.NET's `Max Pool Size`; a request that finds none free waits up to the command timeout),
/// checked before reuse and dropped when broken.
final class SessionTablePool<Connection: PooledConnection>: Sendable {
    /// A connection out of the pool, and whether it was kept from earlier use (one that may
    /// have broken meanwhile).
    struct Lease: @unchecked Sendable {
        var connection: Connection
        var reused: Bool
    }

    private let connect: @Sendable () throws(SessionStoreError) -> Connection
    private let idle: Locked<[Lease]>
    private let permits: DispatchSemaphore
    private let maxOpen: Int
    private let waitLimit: Duration

    init(maxOpen: Int, waitLimit: Duration, connect: @escaping @Sendable () throws(SessionStoreError) -> Connection) {
        self.maxOpen = maxOpen
        self.waitLimit = waitLimit
        self.connect = connect
        idle = Locked([])
        permits = DispatchSemaphore(value: maxOpen)
    }

    /// A usable connection: a kept one, else a new one.
    func acquire() throws(SessionStoreError) -> Lease {
        if permits.wait(timeout: .now()) == .timedOut {
            BlockingHint.willBlock()
            guard permits.wait(timeout: .now() + waitLimit.dispatchInterval) == .success else {
                throw SessionStoreError(.timeout, "all \(maxOpen) connections to the session database stayed busy for the command timeout (Max Pool Size)")
            }
        }
        while let kept = idle.withLock({ $0.popLast() }) {
            if kept.connection.isAlive { return kept }
        }
        do {
            return Lease(connection: try connect(), reused: false)
        } catch {
            permits.signal()
            throw error
        }
    }

    /// Gives a connection back; a broken one is closed.
    func release(_ lease: Lease) {
        if lease.connection.isUsable {
            var kept = lease
            kept.reused = true
            idle.withLock { $0.append(kept) }
        }
        permits.signal()
    }

    /// Closes the kept connections (configuration change, shutdown, a database that restarted).
    func drain() {
        idle.withLock { $0.removeAll() }
    }
}

extension Duration {
    /// The duration for a Dispatch wait, in whole milliseconds (at least one).
    var dispatchInterval: DispatchTimeInterval {
        .milliseconds(max(1, Int(components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)))
    }
}
