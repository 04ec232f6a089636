import Foundation
import Logging
import NIOCore
import NIOHTTP1
import StatusExposition

/// The state server's status page (`--status-listen`), on a port of its own so that nothing
/// of it can be mistaken for a session key of the state protocol: any GET answers JSON, or
/// Prometheus text with `?format=prometheus`, to loopback clients only.
final class StateStatusHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let status: @Sendable () -> StateServerStatus
    private let logger: Logger
    private var head: HTTPRequestHead?

    init(logger: Logger, status: @escaping @Sendable () -> StateServerStatus) {
        self.status = status
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request): head = request
        case .body: break
        case .end:
            guard let request = head else { return }
            head = nil
            respond(to: request, context: context)
        }
    }

    /// A status, its content type and its body.
    private struct Page {
        var status: HTTPResponseStatus
        var contentType = "text/plain; charset=utf-8"
        var body: [UInt8]
    }

    private func page(for request: HTTPRequestHead, client: SocketAddress?) -> Page {
        guard StateServer.isLoopback(client) else { return Page(status: .forbidden, body: Array("The status page answers only local clients.\n".utf8)) }
        guard request.method == .GET || request.method == .HEAD else { return Page(status: .methodNotAllowed, body: Array("GET only.\n".utf8)) }
        let snapshot = status()
        if request.uri.contains("format=prometheus") {
            return Page(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Array(snapshot.prometheus().utf8))
        }
        do {
            return Page(status: .ok, contentType: "application/json", body: try snapshot.json())
        } catch {
            logger.error("the status page could not be encoded", metadata: ["error": "\(error)"])
            return Page(status: .internalServerError, body: Array("The status could not be encoded.\n".utf8))
        }
    }

    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        let page = page(for: request, client: context.channel.remoteAddress)
        var headers = HTTPHeaders([("Content-Type", page.contentType), ("Content-Length", String(page.body.count)), ("Cache-Control", "no-store")])
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: page.status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: page.body.count)
            buffer.writeBytes(page.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let keepAlive = request.isKeepAlive
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { bound.value.close(promise: nil) }
        }
    }
}

/// The state server's numbers at one moment.
struct StateServerStatus: Encodable {
    var pid: Int32
    var startTime: String
    var uptimeSeconds: Double
    var connections: Int
    var sessions: Int
    var bytes: Int
    var maxBytes: Int
    var locked: Int
    /// Requests by operation: get, getExclusive, release, put, remove, resetTimeout.
    var operations: [String: UInt64]
    var lockConflicts: UInt64
    var notFound: UInt64
    var tooLarge: UInt64
    var waits: UInt64
    var waitsTimedOut: UInt64
    var malformedRequests: UInt64

    func json() throws(EncodingError) -> [UInt8] {
        try StatusJSON.encode(self)
    }

    /// Prometheus text, metric names prefixed `sessionhost_state_server_`.
    func prometheus() -> String {
        var text = PrometheusText(prefix: "sessionhost_state_server_")
        text.metric("uptime_seconds", .gauge, help: "Seconds since the server started.", uptimeSeconds)
        text.metric("connections", .gauge, help: "Client connections open now.", Double(connections))
        text.metric("sessions", .gauge, help: "Sessions held (expired ones not yet swept included).", Double(sessions))
        text.metric("bytes", .gauge, help: "Bytes of sessions held, as counted against --max-memory.", Double(bytes))
        text.metric("max_bytes", .gauge, help: "--max-memory.", Double(maxBytes))
        text.metric("sessions_locked", .gauge, help: "Sessions locked now.", Double(locked))
        text.metric("operations_total", .counter, help: "Requests by operation.",
                    operations.sorted { $0.key < $1.key }.map { .init(["operation": $0.key], Double($0.value)) })
        text.metric("lock_conflicts_total", .counter, help: "Reads that found the session locked by another client.", Double(lockConflicts))
        text.metric("not_found_total", .counter, help: "Requests for sessions the server does not hold.", Double(notFound))
        text.metric("too_large_total", .counter, help: "Writes refused by --max-item-size or --max-memory (507).", Double(tooLarge))
        text.metric("lock_waits_total", .counter, help: "Lock waits of SessionHost's wake-up extension.", Double(waits))
        text.metric("lock_waits_timed_out_total", .counter, help: "Lock waits that ran out before the release.", Double(waitsTimedOut))
        text.metric("malformed_requests_total", .counter, help: "Connections closed after a malformed request.", Double(malformedRequests))
        return text.text
    }
}
