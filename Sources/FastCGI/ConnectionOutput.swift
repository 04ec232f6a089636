import Glibc

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
