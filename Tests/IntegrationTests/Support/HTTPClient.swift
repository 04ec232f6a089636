import Foundation
import Glibc

/// A minimal HTTP/1.1 client on one kept-alive connection, enough to see exactly what nginx
/// sends back (status, every header, chunked or sized bodies).
final class HTTPConnection {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = try Sockets.connectTCP(port: port)
    }

    deinit { close(fd) }

    func send(_ method: String = "GET", _ target: String, headers: [(String, String)] = [], body: [UInt8] = []) throws -> HTTPReply {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        try Sockets.sendAll(fd, Array(head.utf8) + body)
        return try readReply()
    }

    func readReply() throws -> HTTPReply {
        let headEnd = try readUntil([13, 10, 13, 10])
        let headText = String(decoding: buffer[..<headEnd], as: UTF8.self)
        buffer.removeFirst(headEnd + 4)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { throw Sockets.Failure("bad status line") }
        let headers = lines.map { line -> (String, String) in
            let parts = line.split(separator: ":", maxSplits: 1)
            return (String(parts[0]).lowercased(), parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : "")
        }
        var reply = HTTPReply(status: status, headers: headers, body: [])
        if reply.header("transfer-encoding") == "chunked" {
            while true {
                let lineEnd = try readUntil([13, 10])
                let sizeText = String(decoding: buffer[..<lineEnd], as: UTF8.self)
                buffer.removeFirst(lineEnd + 2)
                guard let size = Int(sizeText, radix: 16) else { throw Sockets.Failure("bad chunk size '\(sizeText)'") }
                try fill(to: size + 2)
                reply.body += buffer[..<size]
                buffer.removeFirst(size + 2)
                if size == 0 { break }
            }
        } else if let length = reply.header("content-length").flatMap({ Int($0) }) {
            try fill(to: length)
            reply.body = Array(buffer[..<length])
            buffer.removeFirst(length)
        }
        return reply
    }

    private func readUntil(_ marker: [UInt8]) throws -> Int {
        var searchFrom = 0
        while true {
            if buffer.count >= marker.count {
                for index in searchFrom...(buffer.count - marker.count) where buffer[index..<(index + marker.count)].elementsEqual(marker) {
                    return index
                }
                searchFrom = buffer.count - marker.count + 1
            }
            try more()
        }
    }

    private func fill(to count: Int) throws {
        while buffer.count < count { try more() }
    }

    private func more() throws {
        let bytes = try Sockets.receive(fd)
        guard !bytes.isEmpty else { throw Sockets.Failure("connection closed mid-response") }
        buffer += bytes
    }
}

struct HTTPReply {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }
    func headers(_ name: String) -> [String] { headers.filter { $0.name == name }.map(\.value) }
    var text: String { String(decoding: body, as: UTF8.self) }
}
