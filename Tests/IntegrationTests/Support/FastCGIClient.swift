import Foundation
import Glibc

/// Speaks FastCGI records directly to the worker's socket, the way nginx does, and also the ways
/// nginx never would.
final class FastCGIConnection {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(path: String) throws {
        fd = try Sockets.connectUnix(path: path)
    }

    deinit { close(fd) }

    static let beginRequest: UInt8 = 1, endRequest: UInt8 = 3, params: UInt8 = 4, stdin: UInt8 = 5
    static let stdout: UInt8 = 6, stderr: UInt8 = 7, getValues: UInt8 = 9, getValuesResult: UInt8 = 10, unknownType: UInt8 = 11

    static func record(type: UInt8, id: UInt16 = 1, content: [UInt8] = []) -> [UInt8] {
        let padding = (8 - content.count % 8) % 8
        return [1, type, UInt8(id >> 8), UInt8(id & 0xFF), UInt8(content.count >> 8), UInt8(content.count & 0xFF), UInt8(padding), 0]
            + content + [UInt8](repeating: 0, count: padding)
    }

    static func begin(id: UInt16 = 1, role: UInt16 = 1, keepConnection: Bool) -> [UInt8] {
        record(type: beginRequest, id: id, content: [UInt8(role >> 8), UInt8(role & 0xFF), keepConnection ? 1 : 0, 0, 0, 0, 0, 0])
    }

    static func length(_ value: Int) -> [UInt8] {
        value < 128 ? [UInt8(value)] : [UInt8((value >> 24) | 0x80), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }

    static func pairs(_ pairs: [(String, String)]) -> [UInt8] {
        pairs.flatMap { length($0.0.utf8.count) + length($0.1.utf8.count) + Array($0.0.utf8) + Array($0.1.utf8) }
    }

    static func standardParams(method: String = "GET", uri: String, bodyLength: Int = 0) -> [(String, String)] {
        let query = uri.split(separator: "?", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
        return [
            ("REQUEST_METHOD", method), ("REQUEST_URI", uri), ("QUERY_STRING", query),
            ("CONTENT_LENGTH", bodyLength > 0 ? String(bodyLength) : ""), ("SERVER_NAME", "localhost"),
            ("SERVER_PORT", "80"), ("REMOTE_ADDR", "127.0.0.1"), ("HTTP_HOST", "localhost"),
        ]
    }

    /// The records of a whole request, body split into STDIN records.
    static func requestBytes(id: UInt16 = 1, uri: String, method: String = "GET", body: [UInt8] = [], extraParams: [(String, String)] = [], keepConnection: Bool) -> [UInt8] {
        var bytes = begin(id: id, keepConnection: keepConnection)
        bytes += record(type: params, id: id, content: pairs(standardParams(method: method, uri: uri, bodyLength: body.count) + extraParams))
        bytes += record(type: params, id: id)
        var offset = 0
        while offset < body.count {
            let end = min(offset + 65_535, body.count)
            bytes += record(type: stdin, id: id, content: Array(body[offset..<end]))
            offset = end
        }
        bytes += record(type: stdin, id: id)
        return bytes
    }

    func send(_ bytes: [UInt8]) throws { try Sockets.sendAll(fd, bytes) }

    func request(_ uri: String, method: String = "GET", body: [UInt8] = [], extraParams: [(String, String)] = [], keepConnection: Bool = false) throws -> FastCGIReply {
        try send(Self.requestBytes(uri: uri, method: method, body: body, extraParams: extraParams, keepConnection: keepConnection))
        return try readReply()
    }

    /// Records until END_REQUEST.
    func readReply() throws -> FastCGIReply {
        var reply = FastCGIReply()
        while let record = try readRecord() {
            switch record.type {
            case Self.stdout: reply.stdout += record.content
            case Self.endRequest:
                reply.protocolStatus = record.content[4]
                return reply
            default: continue
            }
        }
        throw Sockets.Failure("connection closed before END_REQUEST")
    }

    /// The next record, or nil at end of stream.
    func readRecord() throws -> (type: UInt8, id: UInt16, content: [UInt8])? {
        guard try fill(to: 8) else { return nil }
        let type = buffer[1]
        let id = UInt16(buffer[2]) << 8 | UInt16(buffer[3])
        let length = Int(buffer[4]) << 8 | Int(buffer[5])
        let total = 8 + length + Int(buffer[6])
        guard try fill(to: total) else { throw Sockets.Failure("truncated record") }
        let content = Array(buffer[8..<(8 + length)])
        buffer.removeFirst(total)
        return (type, id, content)
    }

    /// Whether the server closed the connection (reads to end of stream, dropping data).
    func isClosedByServer() throws -> Bool {
        while true {
            let bytes = try Sockets.receive(fd)
            if bytes.isEmpty { return true }
        }
    }

    func receiveSome() throws -> [UInt8] {
        if !buffer.isEmpty { defer { buffer = [] }; return buffer }
        return try Sockets.receive(fd)
    }

    private func fill(to count: Int) throws -> Bool {
        while buffer.count < count {
            let bytes = try Sockets.receive(fd)
            if bytes.isEmpty { return false }
            buffer += bytes
        }
        return true
    }
}

struct FastCGIReply {
    var stdout: [UInt8] = []
    var protocolStatus: UInt8 = 255

    /// The HTTP status from the CGI `Status:` header.
    var status: Int? {
        let head = String(decoding: stdout.prefix(200), as: UTF8.self)
        guard head.hasPrefix("Status: ") else { return nil }
        return Int(head.dropFirst(8).prefix(3))
    }

    /// The CGI header lines named `name` (case-insensitive), values only.
    func headers(_ name: String) -> [String] {
        guard let end = stdout.indices.first(where: { stdout[$0...].starts(with: [13, 10, 13, 10]) }) else { return [] }
        return String(decoding: stdout[..<end], as: UTF8.self).components(separatedBy: "\r\n").compactMap { line in
            guard let colon = line.firstIndex(of: ":"), line[..<colon].lowercased() == name.lowercased() else { return nil }
            return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
    }

    var body: [UInt8] {
        guard let index = stdout.indices.first(where: { stdout[$0...].starts(with: [13, 10, 13, 10]) }) else { return [] }
        return Array(stdout[(index + 4)...])
    }
}
