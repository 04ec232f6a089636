import Logging
import NIOCore

/// Answers the requests of one connection in order, one at a time (a request waiting for a lock
/// holds back the ones pipelined behind it, so the answers stay in order).
final class StateConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = StateFrame
    typealias OutboundOut = ByteBuffer

    private let table: StateTable
    private let counters: StateServerCounters
    private let logger: Logger
    /// The longest lock wait a client may ask for.
    private let maxWait: TimeAmount
    private var queue = CircularBuffer<StateFrame>()
    /// A request is waiting for a lock; `waitID` names the current wait (stale callbacks of an
    /// earlier one are ignored).
    private var waiting: Waiting?
    private var waitID = 0
    private var closing = false
    /// Set when the server stops: close once the request in hand is answered.
    private var draining = false

    private struct Waiting {
        var request: StateRequest
        var deadline: NIODeadline
        var waiter: UnlockWaiter
        var timeout: Scheduled<Void>
    }

    init(table: StateTable, counters: StateServerCounters, maxWait: TimeAmount, logger: Logger) {
        self.table = table
        self.counters = counters
        self.maxWait = maxWait
        self.logger = logger
    }

    /// The most requests held back behind one waiting for a lock: a client that pipelines more
    /// is misbehaving, and each may carry a whole session.
    static let maxQueued = 64

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        guard queue.count < Self.maxQueued else {
            logger.notice("closing a state-server connection that pipelined more than \(Self.maxQueued) requests behind a waiting one")
            close(context: context)
            return
        }
        queue.append(unwrapInboundIn(data))
        processQueue(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let waiting {
            waiting.timeout.cancel()
            table.cancelWait(waiting.request.key, waiting.waiter)
            self.waiting = nil
        }
        queue.removeAll()
        context.fireChannelInactive()
    }

    /// The server is stopping: a waiting request is answered now, the connection closes after
    /// the request in hand.
    func drain(context: ChannelHandlerContext) {
        draining = true
        if let waiting {
            finishWait(context: context, id: waitID, timedOut: true)
            _ = waiting
        } else if queue.isEmpty {
            close(context: context)
        }
    }

    private func processQueue(context: ChannelHandlerContext) {
        var wrote = false
        while waiting == nil, !closing, let frame = queue.popFirst() {
            switch frame {
            case .invalid(let status, let reason):
                counters.malformed.wrappingAdd(1, ordering: .relaxed)
                logger.notice("closing a state-server connection after a malformed request", metadata: ["reason": "\(reason)", "status": "\(status)"])
                context.write(wrapOutboundOut(StateResponse.invalid(status: status, reason: reason, allocator: context.channel.allocator)), promise: nil)
                wrote = true
                close(context: context)
            case .request(let request):
                counters.count(request.operation)
                if case .get(let acquire, let milliseconds?, _) = request.operation, milliseconds > 0 {
                    let answer = table.get(request.key, acquire: acquire)
                    if case .locked = answer {
                        // The conflict counts once, here; the wait's own end is counted apart.
                        counters.count(answer)
                        counters.waits.wrappingAdd(1, ordering: .relaxed)
                        startWait(context: context, request: request, deadline: .now() + min(.milliseconds(Int64(milliseconds)), maxWait))
                        break
                    }
                    counters.count(answer)
                    context.write(wrapOutboundOut(StateResponse.encode(answer, for: request, allocator: context.channel.allocator)), promise: nil)
                } else {
                    let answer = perform(request)
                    counters.count(answer)
                    context.write(wrapOutboundOut(StateResponse.encode(answer, for: request, allocator: context.channel.allocator)), promise: nil)
                }
                wrote = true
                if !request.keepAlive || (draining && queue.isEmpty) { close(context: context) }
            }
        }
        if wrote, !closing { context.flush() }
        if draining, waiting == nil, queue.isEmpty, !closing { close(context: context) }
    }

    private func perform(_ request: StateRequest) -> StateTable.Answer {
        switch request.operation {
        case .get(let acquire, _, _): table.get(request.key, acquire: acquire)
        case .release(let cookie): table.release(request.key, lockCookie: cookie)
        case .put(let timeout, let cookie, let uninitialized, let strict):
            table.put(request.key, item: request.body, timeout: timeout, lockCookie: cookie, uninitialized: uninitialized, strictLockCookie: strict)
        case .delete(let cookie, let strict): table.remove(request.key, lockCookie: cookie, strictLockCookie: strict)
        case .head: table.resetTimeout(request.key)
        }
    }

    // MARK: The wake-up extension

    private func startWait(context: ChannelHandlerContext, request: StateRequest, deadline: NIODeadline) {
        waitID += 1
        let id = waitID
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let waiter = UnlockWaiter {
            loop.execute { bound.value.0.finishWait(context: bound.value.1, id: id, timedOut: false) }
        }
        let timeout = loop.scheduleTask(deadline: deadline) {
            bound.value.0.finishWait(context: bound.value.1, id: id, timedOut: true)
        }
        waiting = Waiting(request: request, deadline: deadline, waiter: waiter, timeout: timeout)
        // Unlocked in between: try again at once.
        if !table.whenUnlocked(request.key, waiter) {
            loop.execute { bound.value.0.finishWait(context: bound.value.1, id: id, timedOut: false) }
        }
    }

    /// The lock was released (or the wait ran out): ask again and answer, or wait on.
    private func finishWait(context: ChannelHandlerContext, id: Int, timedOut: Bool) {
        guard let current = waiting, id == waitID else { return }
        guard case .get(let acquire, _, let waitOnly) = current.request.operation else { return }
        var answer = table.get(current.request.key, acquire: acquire)
        if waitOnly, case .ok(_, let timeout, let cookie, let initialize) = answer {
            answer = .ok(item: nil, timeout: timeout, lockCookie: cookie, initialize: initialize)
        }
        if case .locked = answer, !timedOut, !draining, NIODeadline.now() < current.deadline {
            // Another waiter won the lock: wait for its release.
            current.timeout.cancel()
            waiting = nil
            startWait(context: context, request: current.request, deadline: current.deadline)
            return
        }
        current.timeout.cancel()
        table.cancelWait(current.request.key, current.waiter)
        waiting = nil
        if case .locked = answer {
            counters.waitsTimedOut.wrappingAdd(1, ordering: .relaxed)
        } else {
            counters.count(answer)
        }
        context.write(wrapOutboundOut(StateResponse.encode(answer, for: current.request, allocator: context.channel.allocator)), promise: nil)
        if !current.request.keepAlive { close(context: context) }
        context.flush()
        processQueue(context: context)
    }

    private func close(context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        queue.removeAll()
        // Closed once what was written has gone out.
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            bound.value.close(promise: nil)
        }
    }
}

/// The answers, as aspnet_state writes them.
enum StateResponse {
    /// The version ASP.NET's client checks (it needs 2.0 or later).
    static let aspNetVersion = "4.0.30319"

    static func encode(_ answer: StateTable.Answer, for request: StateRequest, allocator: ByteBufferAllocator) -> ByteBuffer {
        var headers = ""
        var body: [UInt8] = []
        let status: String
        switch answer {
        case .ok(let item, let timeout, let cookie, let initialize):
            status = "200 OK"
            if let timeout { headers += "Timeout: \(timeout)\r\n" }
            if let cookie { headers += "LockCookie: \(cookie)\r\n" }
            if initialize { headers += "ActionFlags: 1\r\n" }
            if let item {
                headers += "Content-Type: application/octet-stream\r\n"
                body = item
            }
        case .notFound:
            status = "404 Not Found"
        case .locked(let info):
            status = "423 Locked"
            headers += "LockDate: \(info.dateTicks)\r\nLockAge: \(info.ageSeconds)\r\nLockCookie: \(info.cookie)\r\n"
        case .tooLarge(let reason):
            status = "507 Insufficient Storage"
            headers += "Content-Type: text/plain; charset=utf-8\r\n"
            body = Array("The session was not stored: \(reason).\n".utf8)
        }
        // A HEAD answer carries no body.
        if case .head = request.operation { body = [] }
        return buffer(status: status, headers: headers, body: body, close: !request.keepAlive, allocator: allocator)
    }

    static func invalid(status: Int, reason: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        let phrase = [400: "Bad Request", 413: "Payload Too Large", 431: "Request Header Fields Too Large"][status] ?? "Bad Request"
        let html = "<html><head><title>\(phrase)</title></head><body>\(reason.htmlEscaped)</body></html>\r\n"
        return buffer(status: "\(status) \(phrase)", headers: "Content-Type: text/html; charset=utf-8\r\n", body: Array(html.utf8), close: true, allocator: allocator)
    }

    private static func buffer(status: String, headers: String, body: [UInt8], close: Bool, allocator: ByteBufferAllocator) -> ByteBuffer {
        // `X-SessionHost` names the extensions this server offers, so SessionHost's client uses
        // them here and polls, as ASP.NET does, against a real aspnet_state.
        var head = "HTTP/1.1 \(status)\r\nX-AspNet-Version: \(aspNetVersion)\r\nX-SessionHost: wait, strict-lock\r\nCache-Control: private\r\n" + headers
        if close { head += "Connection: close\r\n" }
        head += "Content-Length: \(body.count)\r\n\r\n"
        var buffer = allocator.buffer(capacity: head.utf8.count + body.count)
        buffer.writeString(head)
        buffer.writeBytes(body)
        return buffer
    }
}

extension String {
    var htmlEscaped: String {
        var escaped = ""
        for character in self {
            switch character {
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "&": escaped += "&amp;"
            case "\"": escaped += "&quot;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
