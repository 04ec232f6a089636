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
        // Parsed as bytes: a String split on "\r\n" would walk grapheme clusters.
        var lines = Array(view[view.startIndex..<headEnd]).split(separator: 10, omittingEmptySubsequences: false).map { line in
            line.last == 13 ? line.dropLast() : line
        }
        // Blank lines before a request line are tolerated (RFC 9112 §2.2).
        while lines.first?.isEmpty == true { lines.removeFirst() }
        guard let requestLine = lines.first else { return .invalid(status: 400, reason: "empty request") }
        // Names lower-cased once here; the first of a repeated header counts.
        var headers: [String: Substring] = [:]
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon != line.startIndex else {
                return .invalid(status: 400, reason: "malformed header line")
            }
            let name = String(decoding: line[..<colon].map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }, as: UTF8.self)
            if headers[name] == nil {
                headers[name] = Substring(String(decoding: line[(colon + 1)...], as: UTF8.self)).trimmingSpaces
            }
        }
        var bodyLength = 0
        if let value = headers["content-length"] {
            guard let length = Int(value), length >= 0 else { return .invalid(status: 400, reason: "Invalid header Content-Length") }
            guard length <= maxBodySize else { return .invalid(status: 413, reason: "request body of \(length) bytes; this server accepts at most \(maxBodySize)") }
            bodyLength = length
        }
        if headers["transfer-encoding"] != nil {
            return .invalid(status: 400, reason: "Transfer-Encoding is not supported (send Content-Length)")
        }
        let total = headLength + 4 + bodyLength
        guard view.count >= total else { return nil }
        buffer.moveReaderIndex(forwardBy: headLength + 4)
        let body = buffer.readBytes(length: bodyLength) ?? []
        do {
            return .request(try StateRequest(requestLine: Substring(String(decoding: requestLine, as: UTF8.self)), headers: headers, body: body))
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
