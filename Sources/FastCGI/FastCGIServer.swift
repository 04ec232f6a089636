import Locking
import CFastCGI
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

    public init(listen: ListenAddress, threadCount: Int = 64, maxRequestBodySize: Int = 10 << 20, backlog: Int32 = 1024) {
        self.listen = listen
        self.threadCount = threadCount
        self.maxRequestBodySize = maxRequestBodySize
        self.backlog = backlog
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
/// Each thread owns one heap-allocated `FCGX_Request` and serves one connection at a time, as
/// libfcgi requires. Threads accept on the shared socket concurrently, with no accept mutex:
/// Linux needs none, and a mutex would be held while a kept-alive connection sits idle, stalling
/// every other thread. The responder runs on the worker thread.
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
        let socket = try ListeningSocket.open(configuration.listen, backlog: configuration.backlog)
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
    let request: UnsafeMutablePointer<FCGX_Request>
    let peekBuffer: UnsafeMutableRawBufferPointer
    let logger: Logger
    let maxBody: Int

    init(server: FastCGIServer, slot: WorkerSlot, listenFD: Int32, scanner: RecordScanner) {
        self.server = server
        self.slot = slot
        self.listenFD = listenFD
        self.scanner = scanner
        self.logger = server.workerLogger
        self.maxBody = server.configuration.maxRequestBodySize
        // The streams libfcgi creates keep a pointer back to the request: it must never move.
        request = .allocate(capacity: 1)
        // listen_sock -1: libfcgi never accepts by itself. This thread accepts and checks each
        // request head first; if libfcgi drops a connection it returns instead of accepting one
        // that nobody checked.
        FCGX_InitRequest(request, -1, 0)
        peekBuffer = .allocate(byteCount: scanner.windowLimit, alignment: 8)
    }

    deinit {
        FCGX_Free(request, 0)
        if request.pointee.ipcFd >= 0 { _ = close(request.pointee.ipcFd) }
        request.deallocate()
        peekBuffer.deallocate()
    }

    func run() {
        defer { server.workerExited() }
        while true {
            if request.pointee.ipcFd < 0 {
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
                request.pointee.ipcFd = fd
            }
            guard server.markWaiting(slot, fd: request.pointee.ipcFd) else { return }
            guard awaitRequestHead(fd: request.pointee.ipcFd) else {
                closeConnection()
                continue
            }
            server.markBusy(slot)
            // Keeps libfcgi's implicit finish inside FCGX_Accept_r from closing our connection.
            request.pointee.keepConnection = 1
            guard FCGX_Accept_r(request) == 0 else {
                // libfcgi closed the connection on a protocol error.
                request.pointee.ipcFd = -1
                continue
            }
            handleRequest()
            FCGX_Finish_r(request)
        }
    }

    private func closeConnection() {
        FCGX_Free(request, 0)
        _ = close(request.pointee.ipcFd)
        request.pointee.ipcFd = -1
    }

    /// Waits until a complete, valid request head is at the front of the connection, answering
    /// management records on the way. Returns false when the connection should be closed.
    private func awaitRequestHead(fd: Int32) -> Bool {
        var wanted = 16 * 1024
        var flags = Int32(MSG_PEEK)
        while true {
            let count = recv(fd, peekBuffer.baseAddress, wanted, flags)
            if count < 0, errno == EINTR { continue }
            // Closed, reset or shut down by stop(); a short MSG_WAITALL read means the peer
            // closed before sending the rest.
            guard count > 0, flags & Int32(MSG_WAITALL) == 0 || count == wanted else { return false }
            switch scanner.scan(UnsafeRawBufferPointer(rebasing: peekBuffer[..<count])) {
            case .request:
                return true
            case .needBytes(let total):
                guard total > count else { return false }
                wanted = total
                flags = Int32(MSG_PEEK | MSG_WAITALL)
            case .management(let length, let reply):
                guard recv(fd, peekBuffer.baseAddress, length, Int32(MSG_WAITALL)) == length,
                      sendAll(fd, reply)
                else { return false }
                wanted = 16 * 1024
                flags = Int32(MSG_PEEK)
            case .unsupportedRole(let role, let reply):
                logger.notice("closing FastCGI connection: role \(role) is not supported (only responder)")
                _ = sendAll(fd, reply)
                return false
            case .reject(let reason):
                logger.warning("closing FastCGI connection: \(reason)")
                return false
            }
        }
    }

    private func handleRequest() {
        guard let out = request.pointee.out, let input = request.pointee.in else { return }
        var params = FastCGIParams()
        if var entry = request.pointee.envp {
            while let pointer = entry.pointee {
                if let equals = strchr(pointer, 61 /* = */) {
                    let nameLength = pointer.distance(to: equals)
                    let name = pointer.withMemoryRebound(to: UInt8.self, capacity: nameLength) {
                        String(decoding: UnsafeBufferPointer(start: $0, count: nameLength), as: UTF8.self)
                    }
                    params.append(name: name, value: String(cString: equals + 1))
                }
                entry += 1
            }
        }
        var writer = FastCGIResponseWriter(stream: out, connection: request.pointee.ipcFd)
        let declaredLength = params["CONTENT_LENGTH"].flatMap { Int($0) }
        switch readBody(input, declaredLength: declaredLength) {
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
        case .broken:
            logger.debug("connection lost while reading the request body")
        }
    }

    private enum BodyResult {
        case complete([UInt8])
        case tooLarge
        case broken
    }

    /// Reads FCGI_STDIN to its end. Past the limit the rest is read and dropped, so the next
    /// request on a kept connection starts at a record boundary.
    private func readBody(_ input: UnsafeMutablePointer<FCGX_Stream>, declaredLength: Int?) -> BodyResult {
        var body: [UInt8] = []
        var total = 0
        var tooLarge = (declaredLength ?? 0) > maxBody
        if !tooLarge, let declaredLength, declaredLength > 0 { body.reserveCapacity(declaredLength) }
        // The peek buffer is free while a request runs; it doubles as the read buffer.
        let chunk = Int32(peekBuffer.count)
        while true {
            let got = Int(FCGX_GetStr(peekBuffer.baseAddress!.assumingMemoryBound(to: CChar.self), chunk, input))
            if got > 0 {
                total += got
                if total > maxBody {
                    tooLarge = true
                    body = []
                }
                if !tooLarge { body.append(contentsOf: UnsafeRawBufferPointer(rebasing: peekBuffer[..<got])) }
            }
            if got < Int(chunk) { break }
        }
        if FCGX_GetError(input) != 0 { return .broken }
        return tooLarge ? .tooLarge : .complete(body)
    }

    private func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let sent = send(fd, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
                if sent < 0, errno == EINTR { continue }
                guard sent > 0 else { return false }
                offset += sent
            }
            return true
        }
    }
}

/// libfcgi's one-time global setup.
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
