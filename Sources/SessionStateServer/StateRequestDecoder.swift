package import NIOCore

/// What the decoder passes on: a request, or why the bytes are not one (answered, then the
/// connection is closed: after a malformed head the stream cannot be resynchronised).
package enum StateFrame: Sendable, Equatable {
    case request(StateRequest)
    case invalid(status: Int, reason: String)
}

/// Frames requests out of a connection's byte stream: a head up to a blank line (at most
/// `maxHeadSize` bytes), then `Content-Length` bytes of body (at most `maxBodySize`). Pipelined
/// requests come out one by one, in order.
package struct StateRequestDecoder: ByteToMessageDecoder {
    package typealias InboundOut = StateFrame

    let maxHeadSize: Int
    let maxBodySize: Int
    /// Set once an invalid frame was passed on: nothing after it is read.
    private var failed = false

    package init(maxHeadSize: Int = 16 * 1024, maxBodySize: Int) {
        self.maxHeadSize = maxHeadSize
        self.maxBodySize = maxBodySize
    }

    package mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard !failed else {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        guard let frame = nextFrame(&buffer) else { return .needMoreData }
        if case .invalid = frame { failed = true }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    package mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A request cut off by the end of the stream is dropped: there is no one to answer.
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }

    /// The next frame at the head of `buffer` (consumed), or nil until more bytes arrive.
    func nextFrame(_ buffer: inout ByteBuffer) -> StateFrame? {
        let view = buffer.readableBytesView
        guard let headEnd = Self.endOfHead(view) else {
            if view.count > maxHeadSize { return .invalid(status: 431, reason: "request head larger than \(maxHeadSize) bytes") }
            return nil
        }
        let headLength = headEnd - view.startIndex
        guard headLength <= maxHeadSize else { return .invalid(status: 431, reason: "request head larger than \(maxHeadSize) bytes") }
        let head = String(decoding: view[view.startIndex..<headEnd], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        // Blank lines before a request line are tolerated (RFC 9112 §2.2).
        while lines.first?.isEmpty == true { lines.removeFirst() }
        guard let requestLine = lines.first else { return .invalid(status: 400, reason: "empty request") }
        var headers: [(name: Substring, value: Substring)] = []
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                return .invalid(status: 400, reason: "malformed header line")
            }
            headers.append((line[..<colon], line[line.index(after: colon)...].trimmingSpaces))
        }
        var bodyLength = 0
        if let value = headers.first(where: { $0.name.lowercased() == "content-length" })?.value {
            guard let length = Int(value), length >= 0 else { return .invalid(status: 400, reason: "Invalid header Content-Length") }
            guard length <= maxBodySize else { return .invalid(status: 413, reason: "request body of \(length) bytes; this server accepts at most \(maxBodySize)") }
            bodyLength = length
        }
        if headers.contains(where: { $0.name.lowercased() == "transfer-encoding" }) {
            return .invalid(status: 400, reason: "Transfer-Encoding is not supported (send Content-Length)")
        }
        let total = headLength + 4 + bodyLength
        guard view.count >= total else { return nil }
        buffer.moveReaderIndex(forwardBy: headLength + 4)
        let body = buffer.readBytes(length: bodyLength) ?? []
        do {
            return .request(try StateRequest(requestLine: requestLine, headers: headers, body: body))
        } catch {
            return .invalid(status: 400, reason: error.reason)
        }
    }

    /// Where the blank line ending the head starts.
    static func endOfHead(_ view: ByteBufferView) -> Int? {
        var index = view.startIndex
        let end = view.endIndex
        while index + 3 < end {
            if view[index] == 13, view[index + 1] == 10, view[index + 2] == 13, view[index + 3] == 10 { return index }
            index += 1
        }
        return nil
    }
}
