import CHiredis
import Foundation
import Locking
import SessionState

/// A Redis reply, as hiredis reads it.
enum RedisReply: Sendable, Equatable {
    case string([UInt8])
    case status(String)
    case integer(Int)
    case array([RedisReply])
    case null
    case error(String)

    var bytes: [UInt8]? {
        if case .string(let bytes) = self { return bytes }
        return nil
    }

    var text: String? {
        switch self {
        case .string(let bytes): String(decoding: bytes, as: UTF8.self)
        case .status(let text): text
        case .integer(let number): String(number)
        default: nil
        }
    }

    /// What kind of reply it is, for messages (never its contents: they may be session data).
    var kind: String {
        switch self {
        case .string(let bytes): "a string of \(bytes.count) bytes"
        case .status(let text): "the status \(text.prefix(40))"
        case .integer(let number): "the integer \(number)"
        case .array(let elements): "an array of \(elements.count)"
        case .null: "nil"
        case .error(let message): "the error \(message.prefix(80))"
        }
    }

    var integer: Int? {
        switch self {
        case .integer(let number): number
        case .string, .status: text.flatMap { Int($0) }
        default: nil
        }
    }
}

/// One blocking hiredis connection, used by one thread at a time. Every command is bounded by
/// the operation timeout (the socket's receive and send timeouts); connecting by the connection
/// timeout. Errors become `SessionStoreError`s: refused, reset or closed is `unavailable`, no
/// answer in time is `timeout`, an error reply is `refused`. Messages name the server, never
/// the password.
final class RedisConnection {
    private let context: UnsafeMutablePointer<redisContext>
    /// `host:port` or the socket path, for messages.
    let server: String
    /// Whether the connection can still be used (no I/O or protocol error so far).
    private(set) var isUsable = true

    init(endpoint: RedisEndpoint, connectTimeout: Duration, operationTimeout: Duration) throws(SessionStoreError) {
        server = endpoint.description
        BlockingHint.willBlock()
        let made: UnsafeMutablePointer<redisContext>? = switch endpoint {
        case .tcp(let host, let port): redisConnectWithTimeout(host, Int32(port), Self.timeval(connectTimeout))
        case .unix(let path): redisConnectUnixWithTimeout(path, Self.timeval(connectTimeout))
        }
        guard let made else { throw SessionStoreError(.unavailable, "cannot connect to Redis at \(server): out of memory") }
        // Checked before `context` is set: once the object is whole, a throw runs deinit.
        guard made.pointee.err == 0 else {
            let error = Self.failure(made, server: server, doing: "connect to")
            redisFree(made)
            throw error
        }
        context = made
        redisSetTimeout(made, Self.timeval(operationTimeout))
    }

    deinit { redisFree(context) }

    /// Whether the server closed the connection while it was idle (a readable idle socket is
    /// the server's goodbye, or data nobody asked for).
    var isAlive: Bool {
        guard isUsable else { return false }
        var descriptor = pollfd(fd: context.pointee.fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) == 0
    }

    /// Sends one command and reads its reply. An error reply is returned, not thrown: the caller
    /// knows which errors it expects (`NOSCRIPT`).
    func command(_ arguments: [[UInt8]]) throws(SessionStoreError) -> RedisReply {
        guard isUsable else { throw SessionStoreError(.unavailable, "the connection to Redis at \(server) was lost") }
        BlockingHint.willBlock()
        let reply = Self.withArguments(arguments) { count, pointers, lengths in
            redisCommandArgv(context, count, pointers, lengths)
        }
        guard let reply else {
            isUsable = false
            throw Self.failure(context, server: server, doing: "talk to")
        }
        let typed = reply.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(reply) }
        return Self.convert(typed.pointee)
    }

    func command(_ arguments: String...) throws(SessionStoreError) -> RedisReply {
        try command(arguments.map { Array($0.utf8) })
    }

    /// Waits for the next message pushed on this connection (pub/sub), up to the operation
    /// timeout; nil when none came in time.
    func nextPush() throws(SessionStoreError) -> RedisReply? {
        var reply: UnsafeMutableRawPointer?
        guard redisGetReply(context, &reply) == REDIS_OK, let reply else {
            if context.pointee.err == REDIS_ERR_IO, errno == EAGAIN || errno == EWOULDBLOCK {
                // A timeout leaves hiredis's reader in a usable state when nothing was read.
                context.pointee.err = 0
                return nil
            }
            isUsable = false
            throw Self.failure(context, server: server, doing: "listen to")
        }
        defer { freeReplyObject(reply) }
        return Self.convert(reply.assumingMemoryBound(to: redisReply.self).pointee)
    }

    /// Changes the operation timeout (a listener waits longer than a command).
    func setTimeout(_ timeout: Duration) {
        redisSetTimeout(context, Self.timeval(timeout))
    }

    // MARK: Helpers

    private static func convert(_ reply: redisReply) -> RedisReply {
        switch reply.type {
        case REDIS_REPLY_STRING:
            return .string(reply.str.map { Array(UnsafeRawBufferPointer(start: $0, count: reply.len)) } ?? [])
        case REDIS_REPLY_STATUS:
            return .status(reply.str.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: reply.len), as: UTF8.self) } ?? "")
        case REDIS_REPLY_ERROR:
            return .error(reply.str.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: reply.len), as: UTF8.self) } ?? "")
        case REDIS_REPLY_INTEGER:
            return .integer(Int(reply.integer))
        case REDIS_REPLY_ARRAY:
            var elements: [RedisReply] = []
            elements.reserveCapacity(reply.elements)
            for index in 0..<reply.elements {
                guard let element = reply.element[index] else { elements.append(.null); continue }
                elements.append(convert(element.pointee))
            }
            return .array(elements)
        default:
            return .null
        }
    }

    private static func withArguments<T>(
        _ arguments: [[UInt8]], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> T
    ) -> T {
        // One buffer for all arguments; hiredis copies them into its output buffer.
        var joined: [UInt8] = []
        joined.reserveCapacity(arguments.reduce(0) { $0 + $1.count })
        for argument in arguments { joined.append(contentsOf: argument) }
        let lengths = arguments.map(\.count)
        return joined.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress ?? UnsafePointer(bitPattern: 1)!).assumingMemoryBound(to: CChar.self)
            var pointers: [UnsafePointer<CChar>?] = []
            pointers.reserveCapacity(arguments.count)
            var offset = 0
            for length in lengths {
                pointers.append(base + offset)
                offset += length
            }
            return pointers.withUnsafeMutableBufferPointer { pointerBuffer in
                lengths.withUnsafeBufferPointer { lengthBuffer in
                    body(Int32(arguments.count), pointerBuffer.baseAddress!, lengthBuffer.baseAddress!)
                }
            }
        }
    }

    private static func failure(_ context: UnsafeMutablePointer<redisContext>, server: String, doing: String) -> SessionStoreError {
        let code = context.pointee.err
        let text = withUnsafeBytes(of: context.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        let timedOut = text.contains("temporarily unavailable") || text.contains("timed out")
        if code == REDIS_ERR_PROTOCOL || code == REDIS_ERR_OOM {
            return SessionStoreError(.refused, "cannot \(doing) Redis at \(server): \(text)")
        }
        return SessionStoreError(timedOut ? .timeout : .unavailable, "cannot \(doing) Redis at \(server): \(text.isEmpty ? "connection closed" : text)")
    }

    private static func timeval(_ duration: Duration) -> Glibc.timeval {
        let microseconds = max(1000, duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000)
        return Glibc.timeval(tv_sec: Int(microseconds / 1_000_000), tv_usec: Int(microseconds % 1_000_000))
    }
}
