import CFastCGI
import Locking
import Dispatch
import Foundation
public import Logging
import Synchronization

public struct FastCGIServerConfiguration: Sendable {
    public var listen: ListenAddress
    /// Worker threads: requests served at once. Idle kept-alive connections hold no thread.
    public var threadCount: Int
    /// Larger bodies get 413 (the body is read and discarded so a kept connection stays usable).
    public var maxRequestBodySize: Int
    public var backlog: Int32
    /// A connection that has started a request head and does not complete it within this is
    /// closed.
    public var requestHeadTimeout: Duration
    /// A connection that stalls inside a request body for longer than this is closed.
    public var requestBodyTimeout: Duration
    /// Mode and group of a unix socket the server creates.
    public var socketOwnership: SocketOwnership
    /// Connections open at once; past it new connections wait in the listen backlog.
    public var maxConnections: Int
    /// Threads that wait for connections at once (nil: one per core, at least two); more of the
    /// `threadCount` threads join only while requests block.
    public var activeThreads: Int?

    public init(
        listen: ListenAddress, threadCount: Int = 64, maxRequestBodySize: Int = 10 << 20, backlog: Int32 = 1024,
        requestHeadTimeout: Duration = .seconds(30), requestBodyTimeout: Duration = .seconds(60),
        socketOwnership: SocketOwnership = SocketOwnership(), maxConnections: Int = 4096, activeThreads: Int? = nil
    ) {
        self.activeThreads = activeThreads
        self.socketOwnership = socketOwnership
        self.maxConnections = maxConnections
        self.listen = listen
        self.threadCount = threadCount
        self.maxRequestBodySize = maxRequestBodySize
        self.backlog = backlog
        self.requestHeadTimeout = requestHeadTimeout
        self.requestBodyTimeout = requestBodyTimeout
    }
}

public enum FastCGIServerError: Error, CustomStringConvertible {
    case cannotListen(address: ListenAddress, reason: String)
    case alreadyStarted

    public var description: String {
        switch self {
        case .cannotListen(let address, let reason): "cannot listen on \(address): \(reason)"
        case .alreadyStarted: "the FastCGI server was already started"
        }
    }
}

/// Serves FastCGI responder requests on a pool of dedicated OS threads.
///
/// Connections wait in epoll (`ConnectionPool`) while they have nothing to read; a thread takes
/// one that has, reads and writes its records itself (`RequestReader`, `ConnectionOutput`) and
/// runs the responder for each complete request. So `threadCount` bounds the requests served at
/// once, not the connections, and a connection that is idle or sends slowly holds no thread.
public final class FastCGIServer: Sendable {
    public typealias Responder = @Sendable (FastCGIRequest, inout FastCGIResponseWriter) -> Void

    /// How a stop ended.
    public enum StopOutcome: Sendable, Equatable {
        /// Every in-flight request finished.
        case drained
        /// The grace period ran out with this many requests still running.
        case timedOut(inFlight: Int)
    }

    public let configuration: FastCGIServerConfiguration
    private let logger: Logger
    private let responder: Responder
    private let state = Locked(State())
    /// Read on every request, so kept out of `state`: workers must not contend on one lock.
    private let stopping = Atomic<Bool>(false)

    /// Requests being served now (reported when the grace period runs out).
    private let inFlight = Atomic<Int>(0)
    /// Requests served since the start, and those whose body was over the limit (413).
    private let served = Atomic<UInt64>(0)
    private let bodiesRefused = Atomic<UInt64>(0)

    private struct State {
        var socket: ListeningSocket?
        var pool: ConnectionPool?
        var scheduler: WorkerScheduler?
        var running = 0
        var outcome: StopOutcome?
        var waiters: [CheckedContinuation<StopOutcome, Never>] = []
    }

    public init(configuration: FastCGIServerConfiguration, logger: Logger, responder: @escaping Responder) {
        self.configuration = configuration
        self.logger = logger
        self.responder = responder
    }

    /// Opens the socket and starts the worker threads.
    public func start() throws(FastCGIServerError) {
        FastCGILibrary.initialize()
        Self.raiseFileLimit(to: configuration.maxConnections + 64, logger: logger)
        let socket = try ListeningSocket.open(configuration.listen, backlog: configuration.backlog, ownership: configuration.socketOwnership)
        let threadCount = max(1, configuration.threadCount)
        let scanner = RecordScanner(maxConnections: configuration.maxConnections, maxRequests: threadCount)
        let bodyLimit = configuration.maxRequestBodySize
        let pool: ConnectionPool
        do {
            pool = try ConnectionPool(listenFD: socket.fd, maxConnections: configuration.maxConnections, logger: logger) {
                RequestReader(scanner: scanner, bodyLimit: bodyLimit)
            }
        } catch {
            socket.close()
            throw error
        }
        let started = state.withLock { state -> Bool in
            guard state.socket == nil else { return false }
            state.socket = socket
            state.pool = pool
            state.running = threadCount
            return true
        }
        guard started else {
            socket.close()
            throw .alreadyStarted
        }
        let scheduler = WorkerScheduler(threadCount: threadCount, activeLimit: configuration.activeThreads ?? WorkerScheduler.defaultActiveLimit)
        state.withLock { $0.scheduler = scheduler }
        scheduler.startWatchdog()
        for index in 0..<threadCount {
            let slot = scheduler.slot(index)
            let thread = Thread { [self] in
                Worker(server: self, pool: pool, scheduler: scheduler, slot: slot).run()
            }
            thread.name = "fcgi-worker-\(index)"
            thread.start()
        }
    }

    /// Lets the process hold `count` descriptors (up to the hard limit), so that
    /// `maxConnections` connections can be open at once.
    private static func raiseFileLimit(to count: Int, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(count) else { return }
        let wanted = min(rlim_t(count), limit.rlim_max)
        limit.rlim_cur = wanted
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 || wanted < rlim_t(count) {
            logger.warning("open files limited to \(wanted); --max-connections needs about \(count)")
        }
    }

    /// The TCP port bound, when listening on TCP (useful with port 0).
    public var boundPort: Int? {
        state.withLock { $0.socket?.boundPort }
    }

    /// Stops accepting, lets in-flight requests finish within `gracePeriod`, and closes idle
    /// kept-alive connections. Returns at once; `waitUntilStopped()` reports the outcome.
    public func stop(gracePeriod: Duration) {
        guard !stopping.exchange(true, ordering: .sequentiallyConsistent) else { return }
        let (socket, pool, scheduler) = state.withLock { ($0.socket, $0.pool, $0.scheduler) }
        // Closes the parked connections (idle ones included) at once and wakes the threads
        // waiting for work (in epoll or benched); a request being served finishes, then its
        // connection is closed.
        pool?.stop()
        scheduler?.stop()
        guard let socket else { return }
        socket.stopAccepting()
        logger.info("FastCGI server stopping", metadata: ["grace-period": "\(gracePeriod)"])
        let seconds = Double(gracePeriod.components.seconds) + Double(gracePeriod.components.attoseconds) / 1e18
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            finish(outcome: .timedOut(inFlight: inFlight.load(ordering: .relaxed)))
        }
    }

    /// Waits until every worker thread has exited or the grace period ran out.
    public func waitUntilStopped() async -> StopOutcome {
        await withCheckedContinuation { continuation in
            let outcome: StopOutcome? = state.withLock { state in
                if let outcome = state.outcome { return outcome }
                state.waiters.append(continuation)
                return nil
            }
            if let outcome { continuation.resume(returning: outcome) }
        }
    }

    private func finish(outcome: StopOutcome) {
        let (waiters, socket): ([CheckedContinuation<StopOutcome, Never>], ListeningSocket?) = state.withLock { state in
            guard state.outcome == nil else { return ([], nil) }
            state.outcome = outcome
            defer { state.waiters = [] }
            return (state.waiters, state.socket)
        }
        guard let socket else { return }
        socket.close()
        if case .timedOut(let inFlight) = outcome {
            logger.warning("FastCGI server stopped with requests still running", metadata: ["in-flight": "\(inFlight)"])
        } else {
            logger.info("FastCGI server stopped")
        }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }

    // MARK: Worker bookkeeping

    fileprivate func requestStarted() {
        inFlight.wrappingAdd(1, ordering: .relaxed)
        served.wrappingAdd(1, ordering: .relaxed)
    }

    fileprivate func bodyRefused() {
        bodiesRefused.wrappingAdd(1, ordering: .relaxed)
    }

    /// The transport's numbers now (the host's status page and metrics).
    package var statistics: FastCGIServerStatistics {
        let pool = state.withLock { $0.pool }
        return FastCGIServerStatistics(
            threads: max(1, configuration.threadCount), busyThreads: inFlight.load(ordering: .relaxed),
            connectionsOpen: pool?.openCount ?? 0, connectionsParked: pool?.parkedCount ?? 0,
            requests: served.load(ordering: .relaxed), headTimeouts: pool?.headTimeouts.load(ordering: .relaxed) ?? 0,
            bodyTimeouts: pool?.bodyTimeouts.load(ordering: .relaxed) ?? 0, bodiesRefused: bodiesRefused.load(ordering: .relaxed))
    }

    fileprivate func requestEnded() {
        inFlight.wrappingSubtract(1, ordering: .relaxed)
    }

    fileprivate func workerExited() {
        let last = state.withLock { state in
            state.running -= 1
            return state.running == 0
        }
        if last { finish(outcome: .drained) }
    }

    fileprivate var isStopping: Bool { stopping.load(ordering: .relaxed) }

    fileprivate func serve(_ request: FastCGIRequest, writer: inout FastCGIResponseWriter) {
        responder(request, &writer)
    }

    fileprivate var workerLogger: Logger { logger }
}

/// The transport's counters and gauges at one moment.
package struct FastCGIServerStatistics: Sendable, Hashable {
    /// Worker threads, and of them serving a request now.
    package var threads: Int
    package var busyThreads: Int
    /// Connections from the web server open now, and of them parked (idle or waiting for bytes).
    package var connectionsOpen: Int
    package var connectionsParked: Int
    /// Requests whose handler (or 413) ran, since the start.
    package var requests: UInt64
    /// Connections closed because a request head, or a body, stalled past its timeout.
    package var headTimeouts: UInt64
    package var bodyTimeouts: UInt64
    /// Requests whose body was over `maxRequestBodySize` (413).
    package var bodiesRefused: UInt64
}

/// One worker thread's loop: it takes a connection that has bytes to read from the pool, reads
/// and parses what it can, serves the requests that are complete and parks the connection
/// again. It never waits on one connection, so `--threads` bounds requests being served, not
/// connections.
private final class Worker {
    let server: FastCGIServer
    let pool: ConnectionPool
    let timeouts: ConnectionTimeouts
    let logger: Logger
    let maxBody: Int
    let scheduler: WorkerScheduler
    let slot: WorkerSlot
    /// Set when this thread's turn went to another while its request blocked, and none was
    /// free when the request ended.
    var lostTurn = false

    init(server: FastCGIServer, pool: ConnectionPool, scheduler: WorkerScheduler, slot: WorkerSlot) {
        self.server = server
        self.pool = pool
        self.scheduler = scheduler
        self.slot = slot
        self.logger = server.workerLogger
        self.maxBody = server.configuration.maxRequestBodySize
        timeouts = ConnectionTimeouts(head: server.configuration.requestHeadTimeout, body: server.configuration.requestBodyTimeout)
    }

    func run() {
        defer {
            BlockingHint.install(nil)
            server.workerExited()
        }
        let scheduler = scheduler
        let slot = slot
        BlockingHint.install(BlockingHint.Handler { scheduler.willBlock(slot) })
        guard scheduler.takeTurn(slot) else { return }
        while let connection = pool.next() {
            if server.isStopping {
                pool.close(connection)
                continue
            }
            serve(connection)
            if lostTurn {
                lostTurn = false
                guard scheduler.takeTurn(slot) else { return }
            }
        }
    }

    /// Serves what `connection` has, then parks or closes it.
    private func serve(_ connection: PooledConnection) {
        while true {
            switch connection.reader.step(timeouts: timeouts) {
            case .needBytes(let deadline):
                switch connection.reader.read(from: connection.fd) {
                case .data:
                    continue
                case .wouldBlock:
                    connection.deadline = deadline
                    connection.stall = connection.reader.stallDescription(timeouts)
                    connection.stalledInBody = connection.reader.isReadingBody
                    pool.park(connection)
                case .closed:
                    if connection.reader.isInsideRequest {
                        logger.notice("closing FastCGI connection: it closed in the middle of a request")
                    }
                    pool.close(connection)
                case .full:
                    logger.error("closing FastCGI connection: its read buffer is full without a complete record")
                    pool.close(connection)
                }
                return
            case .reply(let bytes):
                guard sendAll(connection.fd, bytes) else { return pool.close(connection) }
            case .close(let reason, let reply):
                logger.notice("closing FastCGI connection: \(reason)")
                if let reply { _ = sendAll(connection.fd, reply) }
                return pool.close(connection)
            case .aborted(let head):
                // The web server gave up on the request: it gets its END_REQUEST, no handler runs.
                logger.debug("request aborted by the web server", metadata: ["uri": "\(head.params["REQUEST_URI"] ?? "")"])
                _ = sendAll(connection.fd, RecordScanner.endRequest(id: head.id, protocolStatus: 0))
                return pool.close(connection)
            case .request(let head, let body):
                server.requestStarted()
                scheduler.requestStarted(slot)
                let usable = handle(head, body: body, fd: connection.fd)
                // Without a turn the thread still serves what this connection holds (bytes read
                // are not seen by epoll again); it waits for a turn before taking another one.
                lostTurn = !scheduler.requestEnded(slot)
                server.requestEnded()
                guard usable, head.keepConnection, !server.isStopping else { return pool.close(connection) }
                // Web servers send the next request only after this response: with nothing
                // buffered, the connection is parked at once (no read that would find nothing).
                if connection.reader.isIdle {
                    connection.deadline = nil
                    return pool.park(connection)
                }
            }
        }
    }

    /// Runs the responder (or answers 413) and ends the request; false when the connection
    /// cannot carry another request.
    private func handle(_ head: RequestHead, body: [UInt8]?, fd: Int32) -> Bool {
        let params = head.params
        let output = ConnectionOutput(fd: fd, requestID: head.id)
        var writer = FastCGIResponseWriter(output: output)
        if let body {
            server.serve(FastCGIRequest(params: params, body: body), writer: &writer)
            if writer.clientGone {
                logger.debug("client went away during the response", metadata: ["uri": "\(params["REQUEST_URI"] ?? "")"])
            }
        } else {
            server.bodyRefused()
            logger.notice("request body exceeds the limit", metadata: [
                "uri": "\(params["REQUEST_URI"] ?? "")", "limit": "\(maxBody)",
                "content-length": "\(params["CONTENT_LENGTH"] ?? "unknown")",
            ])
            writer.write("Status: 413 Payload Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe request body is larger than this server accepts (\(maxBody) bytes).\n")
        }
        return output.finish()
    }
}

/// libfcgi's one-time global setup (its socket functions open the listening socket).
enum FastCGILibrary {
    /// `FCGX_Init` is not thread-safe and installs signal handlers: a SIGTERM/SIGUSR1 handler
    /// that only sets a flag (so SIGTERM would no longer stop the process) and a no-op SIGPIPE
    /// handler. The process's own SIGTERM/SIGUSR1 dispositions are restored, and SIGPIPE is
    /// ignored outright: a client that went away shows up as a failed write instead.
    static func initialize() { _ = once }

    private static let once: Void = {
        var term = sigaction()
        var usr1 = sigaction()
        sigaction(SIGTERM, nil, &term)
        sigaction(SIGUSR1, nil, &usr1)
        FCGX_Init()
        sigaction(SIGTERM, &term, nil)
        sigaction(SIGUSR1, &usr1, nil)
        signal(SIGPIPE, SIG_IGN)
    }()
}
