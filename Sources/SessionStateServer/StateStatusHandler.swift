import Foundation
import NIOCore
import NIOHTTP1

/// The state server's status page (`--status-listen`), on a port of its own so that nothing
/// of it can be mistaken for a session key of the state protocol: any GET answers JSON, or
/// Prometheus text with `?format=prometheus`, to loopback clients only.
final class StateStatusHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let status: @Sendable () -> StateServerStatus
    private var head: HTTPRequestHead?

    init(status: @escaping @Sendable () -> StateServerStatus) {
        self.status = status
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

    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        let status: HTTPResponseStatus
        let contentType: String
        let body: [UInt8]
        if !StateServer.isLoopback(context.channel.remoteAddress) {
            (status, contentType, body) = (.forbidden, "text/plain; charset=utf-8", Array("The status page answers only local clients.\n".utf8))
        } else if request.method != .GET && request.method != .HEAD {
            (status, contentType, body) = (.methodNotAllowed, "text/plain; charset=utf-8", Array("GET only.\n".utf8))
        } else if request.uri.contains("format=prometheus") {
            (status, contentType, body) = (.ok, "text/plain; version=0.0.4; charset=utf-8", Array(self.status().prometheus().utf8))
        } else {
            (status, contentType, body) = (.ok, "application/json", self.status().json())
        }
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", String(body.count)), ("Cache-Control", "no-store")])
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let keepAlive = request.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
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

    func json() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            return Array(try encoder.encode(self)) + [10]
        } catch {
            return Array("{\"error\": \"the status could not be encoded\"}\n".utf8)
        }
    }

    /// Prometheus text, metric names prefixed `sessionhost_state_server_`.
    func prometheus() -> String {
        var text = ""
        func metric(_ name: String, _ type: String, _ help: String, _ lines: [(String, Double)]) {
            text += "# HELP sessionhost_state_server_\(name) \(help)\n# TYPE sessionhost_state_server_\(name) \(type)\n"
            for (labels, value) in lines {
                text += "sessionhost_state_server_\(name)\(labels) \(value == value.rounded() ? String(Int64(value)) : String(value))\n"
            }
        }
        metric("uptime_seconds", "gauge", "Seconds since the server started.", [("", uptimeSeconds)])
        metric("connections", "gauge", "Client connections open now.", [("", Double(connections))])
        metric("sessions", "gauge", "Sessions held (expired ones not yet swept included).", [("", Double(sessions))])
        metric("bytes", "gauge", "Bytes of sessions held, as counted against --max-memory.", [("", Double(bytes))])
        metric("max_bytes", "gauge", "--max-memory.", [("", Double(maxBytes))])
        metric("sessions_locked", "gauge", "Sessions locked now.", [("", Double(locked))])
        metric("operations_total", "counter", "Requests by operation.", operations.sorted { $0.key < $1.key }.map { ("{operation=\"\($0.key)\"}", Double($0.value)) })
        metric("lock_conflicts_total", "counter", "Reads that found the session locked by another client.", [("", Double(lockConflicts))])
        metric("not_found_total", "counter", "Requests for sessions the server does not hold.", [("", Double(notFound))])
        metric("too_large_total", "counter", "Writes refused by --max-item-size or --max-memory (507).", [("", Double(tooLarge))])
        metric("lock_waits_total", "counter", "Lock waits of SessionHost's wake-up extension.", [("", Double(waits))])
        metric("lock_waits_timed_out_total", "counter", "Lock waits that ran out before the release.", [("", Double(waitsTimedOut))])
        metric("malformed_requests_total", "counter", "Connections closed after a malformed request.", [("", Double(malformedRequests))])
        return text
    }
}
