import Foundation
import Glibc
import Locking
import Logging
import SessionState

/// `LISTEN`s for released locks on a dedicated PostgreSQL connection (never a pooled one) and
/// passes them to the `ReleaseSignal`. Started by the first request that waits for a lock.
/// Notifications are only a hint: waiters still poll every 500 ms, so a lost notification (a
/// reconnect, or PgBouncer's transaction pooling, which does not pass them on) only delays.
final class ReleaseListener: Sendable {
    private let target: PostgresTarget
    private let signal: ReleaseSignal
    private let logger: Logger
    private struct State {
        var started = false
        var stopped = false
        var listening = false
    }
    private let state = Locked(State())

    init(target: PostgresTarget, signal: ReleaseSignal, logger: Logger) {
        self.target = target
        self.signal = signal
        self.logger = logger
    }

    /// Starts the listening thread once.
    func start() {
        let start = state.withLock { state -> Bool in
            defer { state.started = true }
            return !state.started && !state.stopped
        }
        guard start else { return }
        let thread = Thread { [self] in run() }
        thread.name = "sessionhost-sql-listen"
        thread.start()
    }

    /// Ends the thread (within a quarter of a second).
    func stop() {
        state.withLock { $0.stopped = true }
    }

    private var stopped: Bool { state.withLock { $0.stopped } }

    /// Whether the listening connection is up.
    var isListening: Bool { state.withLock { $0.listening } }

    private func run() {
        var reported = false
        while !stopped {
            do throws(SessionStoreError) {
                let connection = try PostgresConnection(target: target, statementTimeout: .seconds(10))
                try connection.query("LISTEN \(PostgresSchema.channel)")
                if reported { logger.info("listening for released session locks again", metadata: ["database": "\(target)"]) }
                reported = false
                state.withLock { $0.listening = true }
                defer { state.withLock { $0.listening = false } }
                try listen(on: connection)
            } catch {
                if !reported {
                    logger.warning("cannot listen for released session locks; waiters poll every 500 ms meanwhile", metadata: [
                        "database": "\(target)", "error": "\(error.message)",
                    ])
                    reported = true
                }
                for _ in 0..<4 where !stopped { usleep(250_000) }
            }
        }
    }

    /// A notification's payload: the stored session id and the released lock cookie.
    static func release(_ payload: String) -> (id: String, cookie: Int)? {
        let parts = payload.split(separator: " ")
        guard parts.count == 2, let cookie = Int(parts[1]) else { return nil }
        return (String(parts[0]), cookie)
    }

    private func listen(on connection: PostgresConnection) throws(SessionStoreError) {
        var descriptor = pollfd(fd: connection.socket, events: Int16(POLLIN), revents: 0)
        while !stopped {
            let ready = poll(&descriptor, 1, 250)
            if ready > 0 { signal.released(try connection.notifications().compactMap(Self.release)) }
        }
    }
}
