import Foundation
import Glibc

/// A running `session-state-server` on a free loopback port, stopped by PID (also on deinit).
final class StateServerProcess {
    let directory: URL
    let process: Process
    private(set) var port = 0
    var logPath: String { directory.appending(path: "state-server.log").path }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    init(arguments: [String] = [], port requested: Int = 0) throws {
        directory = FileManager.default.temporaryDirectory.appending(path: "sessionhost-state-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        process = Process()
        process.executableURL = Fixture.products.appending(path: "session-state-server")
        process.arguments = ["--listen", "127.0.0.1:\(requested)"] + arguments
        FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // Port 0: the kernel picks one; the startup line says which.
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, process.isRunning {
            if let match = log.firstMatch(of: /listening on 127\.0\.0\.1:(\d+)/), let number = Int(match.1) {
                port = number
                return
            }
            usleep(10_000)
        }
        stop()
        throw Sockets.Failure("session-state-server did not start; log:\n\(log)")
    }

    deinit { stop() }

    func connect() throws -> StateConnection { try StateConnection(port: port) }

    /// SIGTERM, then the exit status (nil if still running after 30 s).
    @discardableResult
    func terminate() -> Int32? {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }
}

/// One answer of the state server.
struct StateReply {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// A raw TCP connection speaking the state server's protocol.
final class StateConnection {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = try Sockets.connectTCP(port: port)
    }

    deinit { close(fd) }

    func send(_ text: String, body: [UInt8] = []) throws {
        try Sockets.sendAll(fd, Array(text.utf8) + body)
    }

    /// Sends a request with the given headers (Content-Length added for a body) and reads the answer.
    func request(_ verb: String, _ target: String, _ headers: [(String, String)] = [], body: [UInt8]? = nil) throws -> StateReply {
        var head = "\(verb) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        try send(head + "\r\n", body: body ?? [])
        return try readReply(forHead: verb == "HEAD")
    }

    func readReply(forHead: Bool = false) throws -> StateReply {
        while true {
            if let end = buffer.indices.first(where: { buffer[$0...].starts(with: [13, 10, 13, 10]) }) {
                let head = String(decoding: buffer[..<end], as: UTF8.self)
                var lines = head.components(separatedBy: "\r\n")
                let statusLine = lines.removeFirst()
                let status = Int(statusLine.split(separator: " ")[1]) ?? 0
                let headers = lines.compactMap { line -> (String, String)? in
                    guard let colon = line.firstIndex(of: ":") else { return nil }
                    return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
                }
                let length = forHead ? 0 : (headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0)
                if buffer.count >= end + 4 + length {
                    let body = Array(buffer[(end + 4)..<(end + 4 + length)])
                    buffer.removeFirst(end + 4 + length)
                    return StateReply(status: status, headers: headers, body: body)
                }
            }
            let more = try Sockets.receive(fd)
            guard !more.isEmpty else { throw Sockets.Failure("the state server closed the connection") }
            buffer += more
        }
    }

    /// Whether the server closed the connection (reads until end of stream).
    func isClosedByServer() throws -> Bool {
        while true {
            let bytes = try Sockets.receive(fd)
            if bytes.isEmpty { return true }
        }
    }
}
