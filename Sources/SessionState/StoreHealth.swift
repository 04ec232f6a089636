import Locking
package import Logging
import Synchronization

/// Logs a store outage once when it begins (with the store's wording, e.g. ASP.NET's), at most
/// once a minute while it lasts, and once when the store answers again; shared by the
/// out-of-process stores.
package final class StoreHealth: Sendable {
    private struct State {
        var failingSince: ContinuousClock.Instant?
        var lastReport: ContinuousClock.Instant?
        var failures = 0
    }

    private let state = Locked(State())
    /// `state.failingSince != nil`, readable without the lock: every answered request asks.
    private let failing = Atomic<Bool>(false)
    private let outageMessage: String
    private let recoveryMessage: String

    package init(outageMessage: String, recoveryMessage: String) {
        self.outageMessage = outageMessage
        self.recoveryMessage = recoveryMessage
    }

    /// Whether the store is failing now (its last request failed).
    package var isFailing: Bool { failing.load(ordering: .acquiring) }

    /// `server`: where the store is, never with a password (made only when logged).
    package func failed(_ error: SessionStoreError, logger: Logger, server: @autoclosure () -> String) {
        let report = state.withLock { state -> Bool in
            let now = ContinuousClock.now
            state.failures += 1
            if state.failingSince == nil {
                state.failingSince = now
                failing.store(true, ordering: .releasing)
            }
            guard state.lastReport.map({ now - $0 >= .seconds(60) }) ?? true else { return false }
            state.lastReport = now
            return true
        }
        guard report else { return }
        logger.error("\(outageMessage)", metadata: ["server": "\(server())", "error": "\(error.message)", "kind": "\(error.kind)"])
    }

    /// After every answered request: cheap unless an outage ends.
    package func succeeded(logger: Logger, server: @autoclosure () -> String) {
        guard failing.load(ordering: .acquiring) else { return }
        let recovered = state.withLock { state -> Outage? in
            guard let since = state.failingSince else { return nil }
            defer {
                state = State()
                failing.store(false, ordering: .releasing)
            }
            return Outage(since: since, failures: state.failures)
        }
        if let recovered {
            logger.notice("\(recoveryMessage)", metadata: [
                "server": "\(server())", "failed-requests": "\(recovered.failures)", "outage": "\(ContinuousClock.now - recovered.since)",
            ])
        }
    }

    private struct Outage {
        var since: ContinuousClock.Instant
        var failures: Int
    }
}
