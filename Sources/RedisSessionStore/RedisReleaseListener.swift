import Foundation
import Locking
import Logging
import SessionState

/// Listens, on a connection of its own, for the releases other workers publish (the release
/// scripts `PUBLISH` on the store's channel only when a request waits) and wakes this process's
/// waiters. Started by the first wait; reconnects by itself. Pub/sub loses messages while
/// disconnected: waiters poll every 500 ms anyway, so a lost message only delays one.
final class RedisReleaseListener: Sendable {
    private let configuration: RedisStoreConfiguration
    private let channel: String
    private let signal: ReleaseSignal
    private let logger: Logger
    private let state = Locked(State.idle)

    private enum State {
        case idle
        case running
        case stopped
    }

    init(configuration: RedisStoreConfiguration, channel: String, signal: ReleaseSignal, logger: Logger) {
        self.configuration = configuration
        self.channel = channel
        self.signal = signal
        self.logger = logger
    }

    /// Starts the listening thread, once.
    func start() {
        let starts = state.withLock { state -> Bool in
            guard case .idle = state else { return false }
            state = .running
            return true
        }
        guard starts else { return }
        let thread = Thread { [self] in listen() }
        thread.name = "redis-session-release"
        thread.start()
    }

    /// Ends the thread within a second.
    func stop() {
        state.withLock { $0 = .stopped }
    }

    private var isStopped: Bool {
        state.withLock { if case .stopped = $0 { true } else { false } }
    }

    private func listen() {
        var failures = 0
        while !isStopped {
            do {
                // Waits one second at a time, to notice stop().
                let connection = try RedisSession.open(configuration, operationTimeout: .seconds(1))
                guard case .array = try connection.command("SUBSCRIBE", channel) else {
                    throw SessionStoreError(.refused, "Redis did not confirm the subscription to \(channel)")
                }
                failures = 0
                while !isStopped {
                    guard let push = try connection.nextPush() else { continue }
                    deliver(push)
                }
            } catch {
                failures += 1
                if failures == 1 { logger.debug("the Redis release listener lost its connection; waiters poll until it is back", metadata: ["error": "\(error)"]) }
                Thread.sleep(forTimeInterval: 1)
            }
        }
    }

    /// `["message", channel, "<app>_<id> <lock>"]`.
    private func deliver(_ push: RedisReply) {
        guard case .array(let parts) = push, parts.count == 3, parts[0].text == "message", let payload = parts[2].text,
              let space = payload.lastIndex(of: " "), let cookie = Int(payload[payload.index(after: space)...])
        else { return }
        signal.released([(id: String(payload[..<space]), cookie: cookie)])
    }
}
