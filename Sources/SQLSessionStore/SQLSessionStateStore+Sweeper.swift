import Foundation
import Logging
public import SessionState
import SessionStateSerialization

extension SQLSessionStateStore {
    /// What one sweep did.
    public struct SweepResult: Sendable, Hashable {
        /// Whether this worker held the sweeper's lease (else another worker sweeps).
        public var claimed: Bool
        /// Expired sessions deleted.
        public var deleted: Int
        /// The sweep stopped at its batch limit with expired sessions left.
        public var fellBehind: Bool
    }

    /// ASP.NET's `DeleteExpiredSessions` job without SQL Agent: takes the sweeper's lease (one
    /// worker of the farm sweeps at a time; a lease row, not a session-level lock, so that
    /// PgBouncer's transaction pooling does not break it), then deletes expired sessions in
    /// batches, each with one statement that returns what it deleted, so each session ends
    /// exactly once across the farm. With Session_End on, each deleted session's last data is
    /// handed to the app. `performMaintenance` calls this once per `sweepInterval`.
    public func sweepExpiredSessions(maxBatches: Int = 50) throws(SessionStoreError) -> SweepResult {
        let owner = self.owner
        let lease = configuration.sweepInterval * 2 + .seconds(30)
        let claimed = try perform(idempotent: true) { table throws(SessionStoreError) in try table.claimSweep(owner: owner, lease: lease) }
        guard claimed else { return SweepResult(claimed: false, deleted: 0, fellBehind: false) }
        let callback = sessionEndCallback
        let batch = configuration.sweepBatch
        var deleted = 0
        for _ in 0..<maxBatches {
            let expired = try perform(idempotent: true) { table throws(SessionStoreError) in
                try table.deleteExpired(limit: batch, withItems: callback != nil)
            }
            deleted += expired.count
            if let callback { raiseEnd(expired, callback) }
            if expired.count < batch {
                if deleted > 0 { logger.debug("deleted expired sessions", metadata: ["database": "\(configuration.database)", "count": "\(deleted)"]) }
                return SweepResult(claimed: true, deleted: deleted, fellBehind: false)
            }
        }
        logger.warning("expired sessions are deleted more slowly than they expire: more remain after this sweep's limit", metadata: [
            "database": "\(configuration.database)", "deleted": "\(deleted)", "batches": "\(maxBatches)",
        ])
        return SweepResult(claimed: true, deleted: deleted, fellBehind: true)
    }

    private func raiseEnd(_ expired: [ExpiredSession], _ callback: @Sendable (SessionKey, SessionStateStoreData, SessionEndReason) -> Void) {
        for session in expired {
            guard session.storedID.count > 8 else { continue }
            let suffix = String(session.storedID.suffix(8))
            guard let application = application(ofSuffix: suffix, stored: session.applicationName) else {
                logger.warning("an expired session's application is unknown: no Session_End", metadata: ["suffix": "\(suffix)"])
                continue
            }
            let key = SessionKey(application: application, id: String(session.storedID.dropLast(8)))
            do {
                let data = try ASPNETSessionStateFormat.decode(session.item ?? [], compressed: configuration.compressionEnabled)
                callback(key, data, .expired)
            } catch {
                logger.warning("an expired session cannot be read: no Session_End", metadata: ["session": "\(key)", "error": "\(error.description)"])
            }
        }
    }
}
