import Dispatch
import Locking
import SessionState

/// The connections of one PostgreSQL database, and group commit for the statements of
/// concurrent requests.
///
/// A request's session statement (take the lock and read, save and unlock, …) is queued; at
/// most `slots` batches are in flight at once, each on a connection of its own. A request that
/// finds a slot free leads a batch: its own statement and up to `batchLimit - 1` queued ones go
/// to the server as one libpq pipeline, which the server runs in one transaction: one round
/// trip, one commit and one WAL flush for all of them, where each on its own would pay for each
/// (on a 2-core machine the statements of eight requests cost the database about what two did
/// singly: Benchmarks/README.md). Every statement is still atomic on its own terms (each touches
/// one session row), and none is answered before the commit has. When the queue is empty a
/// request runs alone, with no added wait; under load the queue fills while the slots' batches
/// are out, and the batches grow.
///
/// Rows are locked in the order of their stored ids within every batch, so two concurrent
/// batches cannot deadlock on sessions they share. A statement that fails on its own (anything
/// but a lost connection or a timeout) rolls back its batch; the batch's statements are then
/// run again one by one, so one request's failure is never another's.
final class PostgresPipeline: Sendable {
    /// Batches in flight at once (each on its own connection): two, so that one batch is
    /// sent while another is answered (and one slow statement does not hold up every request);
    /// more only shrink the batches, and the database then spends more per request (the
    /// benchmark's counter: 0.57 transactions per request with 4, 0.24 with 2, and 1.12× against
    /// 0.91× php-fpm+redis; Benchmarks/README.md).
    static let defaultSlots = 2
    /// Statements per batch, at most.
    static let batchLimit = 32

    /// The connections (at most `Max Pool Size`), for batches and for the rare operations
    /// that use a connection on their own (`withConnection`).
    let connections: SessionTablePool<PostgresConnection>
    private let slots: Int
    private let waitLimit: Duration
    private let queue = Locked(Queue())

    private struct Queue {
        var waiting: [Submission] = []
        /// Requests leading a batch now.
        var leaders = 0
    }

    /// One request's statement, waiting for its batch.
    private final class Submission: Sendable {
        let statement: PostgresStatement
        /// The stored id of the session row it touches (the batch's lock order).
        let key: String
        let state = Locked(State())
        let wake = DispatchSemaphore(value: 0)

        struct State {
            var result: Result<[[PostgresField]], SessionStoreError>?
            /// A finished leader handed its slot to this request: it leads the next batch.
            var leads = false
        }

        init(_ statement: PostgresStatement, key: String) {
            self.statement = statement
            self.key = key
        }

        func finish(_ result: Result<[[PostgresField]], SessionStoreError>) {
            state.withLock { $0.result = result }
            wake.signal()
        }
    }

    init(maxOpen: Int, waitLimit: Duration, slots: Int = PostgresPipeline.defaultSlots,
         connect: @escaping @Sendable () throws(SessionStoreError) -> PostgresConnection) {
        connections = SessionTablePool(maxOpen: maxOpen, waitLimit: waitLimit, connect: connect)
        // One connection stays for the rare operations when the pool allows.
        self.slots = max(1, min(slots, maxOpen - 1))
        self.waitLimit = waitLimit
    }

    /// Statements waiting for a batch now.
    var queued: Int { queue.withLock { $0.waiting.count } }

    /// Runs `statement`, which touches the session row `key`, in the next batch; returns after
    /// the batch has committed. Waits for a batch at most the command timeout (twice, when
    /// its batch is already out).
    func execute(_ statement: PostgresStatement, key: String) throws(SessionStoreError) -> [[PostgresField]] {
        let submission = Submission(statement, key: key)
        let leads = queue.withLock { queue -> Bool in
            if queue.leaders < slots {
                queue.leaders += 1
                return true
            }
            queue.waiting.append(submission)
            return false
        }
        if !leads, case .answered(let result) = awaitTurn(submission) { return try result.get() }
        lead(with: submission)
        guard let result = submission.state.withLock({ $0.result }) else {
            throw SessionStoreError(.refused, "a pipelined statement was left without an answer")
        }
        return try result.get()
    }

    /// Waits until a queued submission is answered or handed the lead (never `.waiting`).
    private func awaitTurn(_ submission: Submission) -> WaitOutcome {
        BlockingHint.willBlock()
        var waits = 0
        while true {
            let timedOut = submission.wake.wait(timeout: .now() + waitLimit.dispatchInterval) == .timedOut
            if timedOut { waits += 1 }
            let outcome = waitOutcome(of: submission, timedOut: timedOut, waits: waits)
            if case .waiting = outcome { continue }
            return outcome
        }
    }

    private enum WaitOutcome {
        case waiting
        case leads
        case answered(Result<[[PostgresField]], SessionStoreError>)
    }

    /// Where a waiting submission stands. Decided under the queue's lock, where submissions
    /// leave the queue and are handed the lead: one still queued after a timeout leaves it
    /// (nothing was sent); one in a batch that has not answered after a second timeout is
    /// given up (whether it took effect is unknown).
    private func waitOutcome(of submission: Submission, timedOut: Bool, waits: Int) -> WaitOutcome {
        queue.withLock { queue -> WaitOutcome in
            let state = submission.state.withLock { $0 }
            if state.leads { return .leads }
            if let result = state.result { return .answered(result) }
            guard timedOut else { return .waiting }
            if let index = queue.waiting.firstIndex(where: { $0 === submission }) {
                queue.waiting.remove(at: index)
                return .answered(.failure(PipelineFailure.nothingSent(SessionStoreError(
                    .timeout, "the session database's connections stayed busy for the command timeout"))))
            }
            guard waits >= 2 else { return .waiting }
            return .answered(.failure(SessionStoreError(.timeout, "the session database did not answer a batch of statements within the command timeout")))
        }
    }

    /// Runs a batch of `own` and the queued statements, then hands the slot to the first
    /// request still waiting (which leads the next batch), or gives it back.
    private func lead(with own: Submission) {
        let batch = queue.withLock { queue -> [Submission] in
            let taken = queue.waiting.prefix(Self.batchLimit - 1)
            queue.waiting.removeFirst(taken.count)
            return [own] + taken
        }
        run(batch)
        let next = queue.withLock { queue -> Submission? in
            guard !queue.waiting.isEmpty else {
                queue.leaders -= 1
                return nil
            }
            let next = queue.waiting.removeFirst()
            // Under the queue's lock, so that a waiter timing out sees it (`waitOutcome`).
            next.state.withLock { $0.leads = true }
            return next
        }
        next?.wake.signal()
    }

    private func run(_ batch: [Submission]) {
        // The lock order: by stored id (ties keep their order).
        let order = batch.indices.sorted { (batch[$0].key, $0) < (batch[$1].key, $1) }
        let results = run(order.map { batch[$0].statement })
        for (position, index) in order.enumerated() { batch[index].finish(results[position]) }
    }

    private func run(_ statements: [PostgresStatement]) -> [Result<[[PostgresField]], SessionStoreError>] {
        let lease: SessionTablePool<PostgresConnection>.Lease
        do throws(SessionStoreError) { lease = try connections.acquire() } catch {
            return Array(repeating: .failure(PipelineFailure.nothingSent(error)), count: statements.count)
        }
        defer { connections.release(lease) }
        switch lease.connection.execute(pipeline: statements) {
        case .completed(let results):
            return results
        case .notSent(let error):
            return Array(repeating: .failure(PipelineFailure.nothingSent(error)), count: statements.count)
        case .failed(let error):
            return Array(repeating: .failure(lease.reused ? PipelineFailure.onKeptConnection(error) : error), count: statements.count)
        case .rolledBack(let failedIndex, let error):
            // One statement's own failure undid the others: each again on its own (the one
            // that timed out keeps its timeout: it would only wait again).
            return statements.indices.map { index in
                if index == failedIndex, error.kind == .timeout || statements.count == 1 { return .failure(error) }
                switch lease.connection.execute(pipeline: [statements[index]]) {
                case .completed(let results): return results.first ?? .success([])
                case .notSent(let error): return .failure(PipelineFailure.nothingSent(error))
                case .rolledBack(_, let error), .failed(let error): return .failure(error)
                }
            }
        }
    }

    /// Runs `body` on a connection of its own (the rare operations: schema checks, functions,
    /// the sweeper).
    func withConnection<T>(_ body: (PostgresConnection) throws(SessionStoreError) -> T) throws(SessionStoreError) -> T {
        let lease = try connections.acquire()
        defer { connections.release(lease) }
        return try body(lease.connection)
    }

    /// Closes the kept connections.
    func drain() {
        connections.drain()
    }
}

/// Why a pipelined statement failed, for the store's retry rule (`SQLSessionStateStore.perform`),
/// carried as the error's `underlying`.
struct PipelineFailure: Error, Sendable {
    /// Nothing reached the database (no connection, or none fit to use): repeating the
    /// operation cannot change anything.
    var nothingSent = false
    /// It failed on a connection kept from earlier use, which may have broken meanwhile.
    var onKeptConnection = false
    var underlying: (any Error & Sendable)?

    static func nothingSent(_ error: SessionStoreError) -> SessionStoreError {
        marked(error) { $0.nothingSent = true }
    }

    static func onKeptConnection(_ error: SessionStoreError) -> SessionStoreError {
        marked(error) { $0.onKeptConnection = true }
    }

    private static func marked(_ error: SessionStoreError, _ change: (inout PipelineFailure) -> Void) -> SessionStoreError {
        var failure = (error.underlying as? PipelineFailure) ?? PipelineFailure(underlying: error.underlying)
        change(&failure)
        var marked = error
        marked.underlying = failure
        return marked
    }
}
