import Glibc
import Logging

/// Timeouts for a connection that has started sending something and stalls.
struct ConnectionTimeouts: Sendable {
    /// From the first byte of a request head (or of a management record) to its end.
    var head: Duration
    /// Between two reads inside a request body.
    var body: Duration
}

/// The bytes read from a connection and not consumed yet. One per worker thread, reused for
/// every connection it serves.
final class ReadBuffer {
    fileprivate var storage: UnsafeMutableRawBufferPointer
    fileprivate var start = 0
    fileprivate var end = 0

    init(capacity: Int) {
        storage = .allocate(byteCount: capacity, alignment: 8)
    }

    deinit { storage.deallocate() }

    var isEmpty: Bool { start == end }

    fileprivate var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[start..<end]) }

    fileprivate func consume(_ count: Int) {
        start += count
        if start == end { start = 0; end = 0 }
    }

    func reset() {
        start = 0
        end = 0
    }
}

/// The input side of one FastCGI connection, read and parsed by the worker itself.
///
/// The worker reads whatever the socket has into its buffer and parses records from there, so a
/// request head may arrive in any number of pieces (Apache writes BEGIN_REQUEST on its own), a
/// connection is closed only when the peer closed it or sent something invalid, and requests
/// pipelined on one connection are served in order from the bytes already read. No record
/// reaches a parser that has not been checked (`RecordScanner`).
struct ConnectionInput {
    let fd: Int32
    let buffer: ReadBuffer
    let scanner: RecordScanner
    let timeouts: ConnectionTimeouts
    let logger: Logger

    /// A request's BEGIN_REQUEST and PARAMS, decoded.
    struct Head {
        var id: Int
        var keepConnection: Bool
        var params: FastCGIParams
    }

    enum HeadResult {
        case request(Head)
        /// The peer closed the connection between requests (or it was shut down at stop).
        case closed
        /// Something invalid, truncated or too slow: close the connection (already logged).
        case rejected
    }

    /// The next request on the connection, answering management records before it.
    func nextRequest() -> HeadResult {
        var deadline: ContinuousClock.Instant?
        while true {
            switch scanner.scan(buffer.bytes) {
            case .needBytes(let count):
                if !buffer.isEmpty, deadline == nil { deadline = .now + timeouts.head }
                switch fill(to: count, deadline: deadline) {
                case .filled: continue
                case .closed:
                    if buffer.isEmpty { return .closed }
                    logger.notice("closing FastCGI connection: it closed in the middle of a record")
                    return .rejected
                case .timedOut:
                    logger.notice("closing FastCGI connection: the request head stalled for longer than \(timeouts.head)")
                    return .rejected
                }
            case .management(let length, let reply):
                buffer.consume(length)
                guard sendAll(fd, reply) else { return .closed }
                deadline = nil
            case .request(let length):
                let head = decodeHead(UnsafeRawBufferPointer(rebasing: buffer.bytes[..<length]))
                buffer.consume(length)
                return .request(head)
            case .unsupportedRole(let role, let reply):
                logger.notice("closing FastCGI connection: role \(role) is not supported (only responder)")
                _ = sendAll(fd, reply)
                return .rejected
            case .reject(let reason):
                logger.notice("closing FastCGI connection: \(reason)")
                return .rejected
            }
        }
    }

    /// BEGIN_REQUEST and PARAMS records as checked by the scanner.
    private func decodeHead(_ bytes: UnsafeRawBufferPointer) -> Head {
        var offset = 0
        var id = 0
        var keep = false
        var content: [UInt8] = []
        while offset < bytes.count {
            let type = bytes[offset + 1]
            let length = Int(bytes[offset + 4]) << 8 | Int(bytes[offset + 5])
            let body = offset + headerLength
            if type == RecordType.beginRequest {
                id = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
                keep = bytes[body + 2] & keepConnectionFlag != 0
            } else if type == RecordType.params {
                content.append(contentsOf: bytes[body..<(body + length)])
            }
            offset = body + length + Int(bytes[offset + 6])
        }
        return Head(id: id, keepConnection: keep, params: RecordScanner.pairs(content))
    }

    enum BodyResult {
        case complete([UInt8])
        /// Over `limit`: the rest was read and dropped, so the connection stays usable.
        case tooLarge
        /// The web server aborted the request (FCGI_ABORT_REQUEST).
        case aborted
        /// Closed, invalid or stalled: close the connection (already logged).
        case broken
    }

    /// Reads FCGI_STDIN of request `id` to its end.
    func readBody(id: Int, declaredLength: Int?, limit: Int) -> BodyResult {
        var body: [UInt8] = []
        var tooLarge = (declaredLength ?? 0) > limit
        if !tooLarge, let declaredLength, declaredLength > 0 { body.reserveCapacity(declaredLength) }
        while true {
            guard need(headerLength) else { return .broken }
            let header = buffer.bytes
            let version = header[0], type = header[1]
            let recordID = Int(header[2]) << 8 | Int(header[3])
            let length = Int(header[4]) << 8 | Int(header[5])
            let recordLength = headerLength + length + Int(header[6])
            guard version == 1 else {
                logger.notice("closing FastCGI connection: unsupported FastCGI protocol version \(version) inside a request body")
                return .broken
            }
            guard recordID == id else {
                logger.notice("closing FastCGI connection: record type \(type) for request \(recordID) inside request \(id)")
                return .broken
            }
            if type == RecordType.abortRequest {
                buffer.consume(min(recordLength, buffer.bytes.count))
                return .aborted
            }
            guard type == RecordType.stdin else {
                logger.notice("closing FastCGI connection: record type \(type) inside a request body")
                return .broken
            }
            guard need(recordLength) else { return .broken }
            if length == 0 {
                buffer.consume(recordLength)
                return tooLarge ? .tooLarge : .complete(body)
            }
            if !tooLarge, body.count + length > limit {
                tooLarge = true
                body = []
            }
            if !tooLarge { body.append(contentsOf: buffer.bytes[headerLength..<(headerLength + length)]) }
            buffer.consume(recordLength)
        }
    }

    /// Waits for `count` buffered bytes within the body timeout.
    private func need(_ count: Int) -> Bool {
        switch fill(to: count, deadline: .now + timeouts.body) {
        case .filled: return true
        case .closed:
            logger.notice("closing FastCGI connection: it closed in the middle of a request body")
            return false
        case .timedOut:
            logger.notice("closing FastCGI connection: the request body stalled for longer than \(timeouts.body)")
            return false
        }
    }

    private enum Fill { case filled, closed, timedOut }

    /// Reads until at least `count` bytes are buffered. Without a deadline (a connection idle
    /// between requests) it waits as long as it takes; `FastCGIServer.stop` shuts such a
    /// connection down to end the wait.
    private func fill(to count: Int, deadline: ContinuousClock.Instant?) -> Fill {
        if buffer.end - buffer.start >= count { return .filled }
        if buffer.storage.count - buffer.start < count {
            // Moves the unread bytes to the front; the scanner never asks for more than fits.
            let unread = buffer.end - buffer.start
            buffer.storage.baseAddress!.copyMemory(from: buffer.storage.baseAddress! + buffer.start, byteCount: unread)
            buffer.start = 0
            buffer.end = unread
        }
        while buffer.end - buffer.start < count {
            if let deadline {
                let remaining = deadline - .now
                guard remaining > .zero else { return .timedOut }
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let milliseconds = Int32(clamping: remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1)
                let ready = poll(&poller, 1, milliseconds)
                if ready < 0, errno == EINTR { continue }
                if ready == 0 { continue }
            }
            let received = recv(fd, buffer.storage.baseAddress! + buffer.end, buffer.storage.count - buffer.end, 0)
            if received < 0, errno == EINTR { continue }
            guard received > 0 else { return .closed }
            buffer.end += received
        }
        return .filled
    }
}

/// The output side of one request: STDOUT records, then END_REQUEST, written by the worker.
///
/// Content is gathered into records of up to 16 KiB before it is sent, and the end of a small
/// response (its last STDOUT record, the empty one and END_REQUEST) goes out in one write.
final class ConnectionOutput {
    let fd: Int32
    let requestID: Int
    /// Content not yet framed into a record.
    private var content: [UInt8] = []
    /// Framed records not yet sent.
    private var outgoing: [UInt8] = []
    private(set) var failed = false
    private(set) var bytesWritten = 0

    private static let recordTarget = 16 * 1024

    init(fd: Int32, requestID: Int) {
        self.fd = fd
        self.requestID = requestID
        content.reserveCapacity(Self.recordTarget)
        outgoing.reserveCapacity(Self.recordTarget + 64)
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !failed else { return false }
        content.append(contentsOf: bytes)
        bytesWritten += bytes.count
        if content.count >= Self.recordTarget {
            frameContent()
            return send()
        }
        return true
    }

    /// Sends what is buffered now.
    func flush() -> Bool {
        guard !failed else { return false }
        frameContent()
        return send()
    }

    /// Ends the request: the rest of the content, an empty STDOUT record and END_REQUEST.
    func finish() -> Bool {
        guard !failed else { return false }
        frameContent()
        outgoing += RecordScanner.record(type: RecordType.stdout, id: requestID, content: [])
        outgoing += RecordScanner.endRequest(id: requestID, protocolStatus: 0)
        return send()
    }

    /// Marks the output failed without sending anything more (the connection is being broken).
    func abandon() {
        failed = true
    }

    private func frameContent() {
        var offset = 0
        while offset < content.count {
            let length = min(content.count - offset, maxRecordContent)
            let padding = (8 - length % 8) % 8
            outgoing += [1, RecordType.stdout, UInt8(requestID >> 8), UInt8(requestID & 0xFF), UInt8(length >> 8), UInt8(length & 0xFF), UInt8(padding), 0]
            outgoing += content[offset..<(offset + length)]
            outgoing += repeatElement(0, count: padding)
            offset += length
        }
        content.removeAll(keepingCapacity: true)
    }

    private func send() -> Bool {
        defer { outgoing.removeAll(keepingCapacity: true) }
        if !sendAll(fd, outgoing) { failed = true }
        return !failed
    }
}

/// Sends all of `bytes`; false when the peer is gone.
func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let sent = Glibc.send(fd, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
            if sent < 0, errno == EINTR { continue }
            guard sent > 0 else { return false }
            offset += sent
        }
        return true
    }
}
