import CFastCGI
import Locking
import Dispatch
import Foundation
public import Logging
import Synchronization

public struct FastCGIServerConfiguration: Sendable {
    public var listen: ListenAddress
    /// Worker threads; each serves one connection at a time. An idle kept-alive connection from
    /// nginx pins a thread, so keep this above nginx's `worker_processes × keepalive` or requests
    /// queue behind idle connections.
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

    public init(
        listen: ListenAddress, threadCount: Int = 64, maxRequestBodySize: Int = 10 << 20, backlog: Int32 = 1024,
        requestHeadTimeout: Duration = .seconds(30), requestBodyTimeout: Duration = .seconds(60),
        socketOwnership: SocketOwnership = SocketOwnership()
    ) {
        self.socketOwnership = socketOwnership
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
/// Each thread serves one connection at a time, reading and writing its records itself
/// (`ConnectionInput`, `ConnectionOutput`). Threads accept on the shared socket concurrently,
/// with no accept mutex: Linux needs none, and a mutex would be held while a kept-alive
/// connection sits idle, stalling every other thread. The responder runs on the worker thread.
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

    private struct State {
        var socket: ListeningSocket?
        var slots: [WorkerSlot] = []
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
        let socket = try ListeningSocket.open(configuration.listen, backlog: configuration.backlog, ownership: configuration.socketOwnership)
        let threadCount = max(1, configuration.threadCount)
        let slots = (0..<threadCount).map { _ in WorkerSlot() }
        let started = state.withLock { state -> Bool in
            guard state.socket == nil else { return false }
            state.socket = socket
            state.slots = slots
            state.running = threadCount
            return true
        }
        guard started else {
            socket.close()
            throw .alreadyStarted
        }
        let scanner = RecordScanner(maxConnections: threadCount, maxRequests: threadCount)
        for index in 0..<threadCount {
            let thread = Thread { [self] in
                Worker(server: self, slot: slots[index], listenFD: socket.fd, scanner: scanner).run()
            }
            thread.name = "fcgi-worker-\(index)"
            thread.start()
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
        let (socket, slots) = state.withLock { ($0.socket, $0.slots) }
        for slot in slots {
            // Wakes a thread parked on an idle connection; it then exits. A worker that marks
            // itself waiting after this sees `stopping` and exits without waiting.
            slot.state.withLock { if case .waiting(let fd) = $0, fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) } }
        }
        guard let socket else { return }
        socket.stopAccepting()
        logger.info("FastCGI server stopping", metadata: ["grace-period": "\(gracePeriod)"])
        let seconds = Double(gracePeriod.components.seconds) + Double(gracePeriod.components.attoseconds) / 1e18
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            finish(outcome: .timedOut(inFlight: state.withLock { $0.running }))
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

    /// Records that the worker of `slot` waits for a request on `fd` (-1: on the listening
    /// socket). Returns false when the server is stopping and the worker should exit instead.
    fileprivate func markWaiting(_ slot: WorkerSlot, fd: Int32) -> Bool {
        slot.state.withLock { state in
            guard !stopping.load(ordering: .sequentiallyConsistent) else { return false }
            state = .waiting(fd: fd)
            return true
        }
    }

    fileprivate func markBusy(_ slot: WorkerSlot) {
        slot.state.withLock { $0 = .busy }
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

/// What a worker thread is doing, for stop(): one lock per worker, so workers never contend.
private final class WorkerSlot: Sendable {
    enum Activity { case waiting(fd: Int32), busy }
    let state = Locked(Activity.waiting(fd: -1))
}

/// One worker thread's loop. Everything here is confined to that thread.
private final class Worker {
    let server: FastCGIServer
    let slot: WorkerSlot
    let listenFD: Int32
    let scanner: RecordScanner
    let buffer: ReadBuffer
    let timeouts: ConnectionTimeouts
    let logger: Logger
    let maxBody: Int

    init(server: FastCGIServer, slot: WorkerSlot, listenFD: Int32, scanner: RecordScanner) {
        self.server = server
        self.slot = slot
        self.listenFD = listenFD
        self.scanner = scanner
        self.logger = server.workerLogger
        self.maxBody = server.configuration.maxRequestBodySize
        timeouts = ConnectionTimeouts(head: server.configuration.requestHeadTimeout, body: server.configuration.requestBodyTimeout)
        // Room for the largest head the scanner accepts, which also holds any one record.
        buffer = ReadBuffer(capacity: scanner.windowLimit)
    }

    func run() {
        defer { server.workerExited() }
        while true {
            guard server.markWaiting(slot, fd: -1) else { return }
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                let code = errno
                if server.isStopping { return }
                if code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM {
                    logger.error("accept failed; retrying", metadata: ["error": "\(errnoText(code))"])
                    usleep(100_000)
                }
                continue
            }
            // Handlers may start processes; they must not inherit client connections.
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            serve(connection: fd)
            _ = close(fd)
        }
    }

    /// Serves the requests of one connection until it closes, or is not to be kept.
    private func serve(connection fd: Int32) {
        buffer.reset()
        let input = ConnectionInput(fd: fd, buffer: buffer, scanner: scanner, timeouts: timeouts, logger: logger)
        while true {
            guard server.markWaiting(slot, fd: fd) else { return }
            guard case .request(let head) = input.nextRequest() else { return }
            server.markBusy(slot)
            guard handle(head, input: input, fd: fd), head.keepConnection else { return }
        }
    }

    /// Reads the body, runs the responder and ends the request; false when the connection
    /// cannot carry another request.
    private func handle(_ head: ConnectionInput.Head, input: ConnectionInput, fd: Int32) -> Bool {
        let params = head.params
        let output = ConnectionOutput(fd: fd, requestID: head.id)
        var writer = FastCGIResponseWriter(output: output)
        let declaredLength = params["CONTENT_LENGTH"].flatMap { Int($0) }
        switch input.readBody(id: head.id, declaredLength: declaredLength, limit: maxBody) {
        case .complete(let body):
            server.serve(FastCGIRequest(params: params, body: body), writer: &writer)
            if writer.clientGone {
                logger.debug("client went away during the response", metadata: ["uri": "\(params["REQUEST_URI"] ?? "")"])
            }
        case .tooLarge:
            logger.notice("request body exceeds the limit", metadata: [
                "uri": "\(params["REQUEST_URI"] ?? "")", "limit": "\(maxBody)",
                "content-length": "\(declaredLength.map(String.init) ?? "unknown")",
            ])
            writer.write("Status: 413 Payload Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe request body is larger than this server accepts (\(maxBody) bytes).\n")
        case .aborted:
            // The web server gave up on the request: it gets its END_REQUEST, the handler never runs.
            logger.debug("request aborted by the web server", metadata: ["uri": "\(params["REQUEST_URI"] ?? "")"])
            return output.finish() && false
        case .broken:
            return false
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
