import Foundation
import Logging
import Synchronization
import WebConfiguration

/// The check of the whole configuration tree at startup, on a thread of its own so that the
/// worker serves meanwhile (URLs not yet checked are resolved on demand, as always). Every
/// error it finds is logged.
final class StartupCheck: Sendable {
    private let store: ConfigurationStore
    private let pause: Duration
    private let logger: Logger
    private let stopped = Atomic<Bool>(false)

    init(store: ConfigurationStore, pause: Duration, logger: Logger) {
        self.store = store
        self.pause = pause
        self.logger = logger
    }

    func start() {
        Thread.detachNewThread { [self] in run() }
    }

    /// Stops the check before its next path (at shutdown).
    func stop() {
        stopped.store(true, ordering: .relaxed)
    }

    private func run() {
        logger.info("configuration check started", metadata: ["config-dir": "\(store.directory)"])
        let start = ContinuousClock.now
        let pause = pause
        let errors = store.check { [self] in
            if pause > .zero { Thread.sleep(forTimeInterval: Double(pause.components.seconds) + Double(pause.components.attoseconds) / 1e18) }
            return !stopped.load(ordering: .relaxed)
        }
        for error in errors {
            logger.error("invalid configuration: \(error)")
        }
        if stopped.load(ordering: .relaxed) {
            logger.info("configuration check stopped at shutdown")
            return
        }
        let elapsed = (ContinuousClock.now - start).components
        let milliseconds = elapsed.seconds * 1000 + elapsed.attoseconds / 1_000_000_000_000_000
        if errors.isEmpty {
            logger.info("configuration check finished in \(milliseconds) ms: no errors")
        } else {
            logger.error("configuration check finished in \(milliseconds) ms: \(errors.count) configuration errors; the URLs they affect get the configuration-error page (500.19) until they are fixed")
        }
    }
}
