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
    /// Batches in flight at once (each on its own connection): enough to keep a database
    /// server's cores and the network busy; more only add backends competing for the same
    /// cores and shrink the batches.
    static let defaultSlots = 4
    /// Statements per batch, at most.
    static let batchLimit = 32

    /// The connections (at most `Max Pool Size`), for batches and for the rare operations
    /// that use a connection on their own (`withConnection`).
    let connections: SessionTablePool<PostgresConnection>
    private let slots: Int
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
        self.slots = max(1, min(slots, maxOpen))
    }

    /// Statements waiting for a batch now.
    var queued: Int { queue.withLock { $0.waiting.count } }

    /// Runs `statement`, which touches the session row `key`, in the next batch; returns after
    /// the batch has committed.
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
        if !leads {
            BlockingHint.willBlock()
            while true {
                submission.wake.wait()
                let state = submission.state.withLock { $0 }
                if state.leads { break }
                if let result = state.result { return try result.get() }
            }
        }
        lead(with: submission)
        guard let result = submission.state.withLock({ $0.result }) else {
            throw SessionStoreError(.refused, "a pipelined statement was left without an answer")
        }
        return try result.get()
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
            return queue.waiting.removeFirst()
        }
        if let next {
            next.state.withLock { $0.leads = true }
            next.wake.signal()
        }
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
            // No connection: nothing reached the database, so any operation may be repeated.
            var unsent = error
            unsent.underlying = NothingSent(underlying: error.underlying)
            return Array(repeating: .failure(unsent), count: statements.count)
        }
        defer { connections.release(lease) }
        switch lease.connection.execute(pipeline: statements) {
        case .completed(let results):
            return results
        case .failed(let error):
            return Array(repeating: .failure(error), count: statements.count)
        case .rolledBack(_, let error) where statements.count == 1:
            return [.failure(error)]
        case .rolledBack:
            // One statement's own failure undid the others: each again on its own.
            return statements.map { statement in
                switch lease.connection.execute(pipeline: [statement]) {
                case .completed(let results): results.first ?? .success([])
                case .rolledBack(_, let error), .failed(let error): .failure(error)
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

/// Marks an operation's error as one that happened before anything was sent (no connection
/// could be had), so that repeating it cannot change anything.
struct NothingSent: Error, Sendable {
    var underlying: (any Error & Sendable)?
}
