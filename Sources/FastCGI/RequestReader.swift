import Glibc

/// Timeouts for a connection that has started sending something and stalls.
struct ConnectionTimeouts: Sendable {
    /// From the first byte of a request head (or of a management record) to its end.
    var head: Duration
    /// Between two reads inside a request body.
    var body: Duration
}

/// The bytes read from a connection and not consumed yet. Storage is taken when bytes arrive and
/// given back when everything is consumed, so an idle connection holds none.
struct ReadBuffer {
    private(set) var storage = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private(set) var start = 0
    private(set) var end = 0
    /// The most it grows to: the largest head the scanner accepts, which holds any one record.
    let limit: Int

    private static let initialCapacity = 16 * 1024

    init(limit: Int) {
        self.limit = limit
    }

    var isEmpty: Bool { start == end }
    var count: Int { end - start }
    var bytes: UnsafeRawBufferPointer { count == 0 ? UnsafeRawBufferPointer(start: nil, count: 0) : UnsafeRawBufferPointer(rebasing: storage[start..<end]) }

    mutating func consume(_ count: Int) {
        start += count
        if start == end { start = 0; end = 0 }
    }

    /// Makes room for at least one more byte and returns where to read to.
    mutating func spaceForReading() -> UnsafeMutableRawBufferPointer {
        if storage.count == 0 {
            storage = .allocate(byteCount: Self.initialCapacity, alignment: 8)
        } else if end == storage.count {
            if start > 0 {
                let unread = count
                storage.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: unread)
                start = 0
                end = unread
            } else if storage.count < limit {
                let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: min(limit, storage.count * 2), alignment: 8)
                larger.baseAddress!.copyMemory(from: storage.baseAddress!, byteCount: end)
                storage.deallocate()
                storage = larger
            }
        }
        return UnsafeMutableRawBufferPointer(rebasing: storage[end...])
    }

    mutating func didRead(_ count: Int) {
        end += count
    }

    /// Gives the storage back when nothing is buffered (before a connection is parked).
    mutating func releaseIfEmpty() {
        guard isEmpty, storage.count > 0 else { return }
        storage.deallocate()
        storage = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }

    mutating func deallocate() {
        if storage.count > 0 { storage.deallocate() }
        storage = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        start = 0
        end = 0
    }
}

/// A request's BEGIN_REQUEST and PARAMS, decoded.
struct RequestHead {
    var id: Int
    var keepConnection: Bool
    var params: FastCGIParams
}

/// The input side of one FastCGI connection, parsed by the worker itself as bytes arrive.
///
/// Reading never waits: a worker reads what the socket has (`MSG_DONTWAIT`) and parses what it
/// can. A request head may arrive in any number of pieces (Apache writes BEGIN_REQUEST on its
/// own); until a request is complete (head and body) the connection is parked and no thread
/// waits for it. Requests pipelined on one connection are served in order from the bytes
/// already read. No record reaches a parser that has not been checked (`RecordScanner`).
struct RequestReader {
    private(set) var buffer: ReadBuffer
    private let scanner: RecordScanner
    private let limit: Int
    private var state = State.betweenRequests

    private enum State {
        case betweenRequests
        /// Bytes of a head (or a management record) arrived at `started`.
        case head(started: ContinuousClock.Instant)
        case body(RequestHead, [UInt8], tooLarge: Bool, progress: ContinuousClock.Instant)
    }

    init(scanner: RecordScanner, bodyLimit: Int) {
        self.scanner = scanner
        limit = bodyLimit
        buffer = ReadBuffer(limit: scanner.windowLimit)
    }

    enum Step {
        /// A whole request: its head and its body (nil: over the body limit, read and dropped).
        case request(RequestHead, body: [UInt8]?)
        /// The web server aborted the request (FCGI_ABORT_REQUEST) before it was complete.
        case aborted(RequestHead)
        /// A management record to answer; the connection goes on.
        case reply([UInt8])
        /// More bytes are needed; a stalled connection is closed at `deadline` (nil: idle
        /// between requests, no deadline).
        case needBytes(deadline: ContinuousClock.Instant?)
        /// Close the connection, optionally after sending `reply`; `reason` is logged.
        case close(reason: String, reply: [UInt8]?)
    }

    /// Whether the connection is between requests with nothing of the next one read.
    var isIdle: Bool {
        if case .betweenRequests = state { return buffer.isEmpty }
        return false
    }

    /// What the bytes read so far allow.
    mutating func step(timeouts: ConnectionTimeouts, now: ContinuousClock.Instant = .now) -> Step {
        switch state {
        case .betweenRequests, .head:
            return stepHead(timeouts: timeouts, now: now)
        case .body(let head, var body, var tooLarge, let progress):
            state = .betweenRequests
            while true {
                guard buffer.count >= headerLength else {
                    state = .body(head, body, tooLarge: tooLarge, progress: progress)
                    return .needBytes(deadline: progress + timeouts.body)
                }
                let bytes = buffer.bytes
                let version = bytes[0], type = bytes[1]
                let recordID = Int(bytes[2]) << 8 | Int(bytes[3])
                let length = Int(bytes[4]) << 8 | Int(bytes[5])
                let recordLength = headerLength + length + Int(bytes[6])
                guard version == 1 else { return .close(reason: "unsupported FastCGI protocol version \(version) inside a request body", reply: nil) }
                guard recordID == head.id else {
                    return .close(reason: "record type \(type) for request \(recordID) inside request \(head.id)", reply: nil)
                }
                if type == RecordType.abortRequest {
                    buffer.consume(min(recordLength, buffer.count))
                    return .aborted(head)
                }
                guard type == RecordType.stdin else { return .close(reason: "record type \(type) inside a request body", reply: nil) }
                guard buffer.count >= recordLength else {
                    state = .body(head, body, tooLarge: tooLarge, progress: progress)
                    return .needBytes(deadline: progress + timeouts.body)
                }
                if length == 0 {
                    buffer.consume(recordLength)
                    return .request(head, body: tooLarge ? nil : body)
                }
                if !tooLarge, body.count + length > limit {
                    tooLarge = true
                    body = []
                }
                if !tooLarge { body.append(contentsOf: bytes[headerLength..<(headerLength + length)]) }
                buffer.consume(recordLength)
            }
        }
    }

    private mutating func stepHead(timeouts: ConnectionTimeouts, now: ContinuousClock.Instant) -> Step {
        switch scanner.scan(buffer.bytes) {
        case .needBytes:
            if buffer.isEmpty {
                state = .betweenRequests
                return .needBytes(deadline: nil)
            }
            if case .head(let started) = state { return .needBytes(deadline: started + timeouts.head) }
            state = .head(started: now)
            return .needBytes(deadline: now + timeouts.head)
        case .management(let length, let reply):
            buffer.consume(length)
            state = .betweenRequests
            return .reply(reply)
        case .request(let length):
            guard let head = Self.decodeHead(UnsafeRawBufferPointer(rebasing: buffer.bytes[..<length])) else {
                return .close(reason: "PARAMS with a malformed name-value pair", reply: nil)
            }
            buffer.consume(length)
            let declared = head.params["CONTENT_LENGTH"].flatMap { Int($0) } ?? 0
            var body: [UInt8] = []
            let tooLarge = declared > limit
            // Reserved up to 64 KiB only: a parked connection's body grows as it arrives, so a
            // declared length alone takes no memory.
            if !tooLarge, declared > 0 { body.reserveCapacity(min(declared, 65_536)) }
            state = .body(head, body, tooLarge: tooLarge, progress: now)
            return step(timeouts: timeouts, now: now)
        case .unsupportedRole(let role, let reply):
            return .close(reason: "role \(role) is not supported (only responder)", reply: reply)
        case .reject(let reason):
            return .close(reason: reason, reply: nil)
        }
    }

    /// Reads what the socket has without waiting. Returns false when the peer closed the
    /// connection (or it failed).
    mutating func read(from fd: Int32) -> ReadResult {
        var total = 0
        while true {
            let space = buffer.spaceForReading()
            // Full: the scanner never asks for more than fits, so this is a defect, not input to
            // wait for; reading on would spin.
            guard space.count > 0 else { return total > 0 ? .data : .full }
            let received = recv(fd, space.baseAddress, space.count, Int32(MSG_DONTWAIT))
            if received > 0 {
                buffer.didRead(received)
                total += received
                if case .body(let head, let body, let tooLarge, _) = state { state = .body(head, body, tooLarge: tooLarge, progress: .now) }
                if received < space.count { return .data }
                continue
            }
            // End of stream after bytes were read: those are parsed first; the next read
            // reports the end.
            if received == 0 { return total > 0 ? .data : .closed }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return total > 0 ? .data : .wouldBlock }
            return .closed
        }
    }

    enum ReadResult { case data, wouldBlock, closed, full }

    /// What is logged when a connection parked in the middle of a request reaches its deadline.
    func stallDescription(_ timeouts: ConnectionTimeouts) -> String {
        if case .body = state { return "the request body stalled for longer than \(timeouts.body)" }
        return "the request head stalled for longer than \(timeouts.head)"
    }

    /// Whether it is reading a request body.
    var isReadingBody: Bool {
        if case .body = state { return true }
        return false
    }

    /// Whether the connection stopped in the middle of something (for the log when it closes).
    var isInsideRequest: Bool {
        if case .betweenRequests = state { return !buffer.isEmpty }
        return true
    }

    mutating func releaseBufferIfEmpty() { buffer.releaseIfEmpty() }
    mutating func deallocate() { buffer.deallocate() }

    /// BEGIN_REQUEST and PARAMS records as checked by the scanner (nil only if the scanner let
    /// a malformed pair through).
    private static func decodeHead(_ bytes: UnsafeRawBufferPointer) -> RequestHead? {
        var offset = 0
        var id = 0
        var keep = false
        var ranges: [Range<Int>] = []
        while offset < bytes.count {
            let type = bytes[offset + 1]
            let length = Int(bytes[offset + 4]) << 8 | Int(bytes[offset + 5])
            let body = offset + headerLength
            if type == RecordType.beginRequest {
                id = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
                keep = bytes[body + 2] & keepConnectionFlag != 0
            } else if type == RecordType.params, length > 0 {
                ranges.append(body..<(body + length))
            }
            offset = body + length + Int(bytes[offset + 6])
        }
        // nginx sends the PARAMS in one record: decoded in place. Pairs may straddle records,
        // so several are joined first.
        let params = ranges.count <= 1
            ? FastCGIParams(encoded: UnsafeRawBufferPointer(rebasing: bytes[ranges.first ?? 0..<0]))
            : ranges.flatMap { bytes[$0] }.withUnsafeBytes { FastCGIParams(encoded: $0) }
        return params.map { RequestHead(id: id, keepConnection: keep, params: $0) }
    }
}
