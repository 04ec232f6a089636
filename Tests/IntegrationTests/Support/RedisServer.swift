import Foundation
import Glibc

/// A real `redis-server` (Debian's) for the tests: a free loopback port and a Unix socket in a
/// temporary folder, no persistence, stopped by PID (also on deinit) and removed afterwards.
final class RedisServer: @unchecked Sendable {
    let directory: URL
    private(set) var port = 0
    private var process: Process?
    let password: String?
    var socketPath: String { directory.appending(path: "redis.sock").path }
    var logPath: String { directory.appending(path: "redis.log").path }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    static let binary = "/usr/bin/redis-server"

    init(password: String? = nil) throws {
        self.password = password
        directory = URL(fileURLWithPath: "/tmp").appending(path: "sessionhost-redis-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try start()
    }

    deinit { stop() }

    /// Starts (or restarts) the server on a free port (the same one again after `kill()`).
    func start() throws {
        for _ in 0..<5 {
            if port == 0 || process != nil { port = Sockets.freePort() }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.binary)
            var arguments = ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path,
                             "--unixsocket", socketPath, "--unixsocketperm", "777", "--daemonize", "no", "--logfile", logPath]
            if let password { arguments += ["--requirepass", password] }
            process.arguments = arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline, process.isRunning {
                if (try? client().command("PING")) != nil {
                    self.process = process
                    return
                }
                usleep(20_000)
            }
            if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            port = 0
        }
        throw Sockets.Failure("redis-server did not start; log:\n\(log)")
    }

    /// Stops the server at once (SIGKILL, as a crash), keeping the folder for `start()`.
    func kill() {
        guard let process else { return }
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        self.process = nil
    }

    func stop() {
        kill()
        try? FileManager.default.removeItem(at: directory)
    }

    /// A raw client (authenticated when the server has a password).
    func client() throws -> RedisTestClient {
        let client = try RedisTestClient(port: port)
        if let password { _ = try client.command("AUTH", password) }
        return client
    }
}

/// A minimal RESP client written for the tests (independent of the store's hiredis code), to
/// look at and plant keys the way another client would.
final class RedisTestClient {
    private let socket: Int32
    private var buffer: [UInt8] = []

    indirect enum Reply: Equatable {
        case string([UInt8])
        case status(String)
        case integer(Int)
        case array([Reply])
        case null
        case error(String)

        var text: String? {
            switch self {
            case .string(let bytes): String(decoding: bytes, as: UTF8.self)
            case .status(let text): text
            case .integer(let number): String(number)
            default: nil
            }
        }
    }

    init(port: Int) throws {
        socket = try Sockets.connectTCP(port: port)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(socket) }

    func command(_ arguments: String...) throws -> Reply {
        try command(arguments.map { Array($0.utf8) })
    }

    func command(_ arguments: [[UInt8]]) throws -> Reply {
        var request = Array("*\(arguments.count)\r\n".utf8)
        for argument in arguments {
            request += Array("$\(argument.count)\r\n".utf8) + argument + Array("\r\n".utf8)
        }
        try Sockets.sendAll(socket, request)
        let reply = try read()
        if case .error(let message) = reply { throw Sockets.Failure("redis: \(message)") }
        return reply
    }

    private func line() throws -> String {
        while true {
            if let end = buffer.firstIndex(of: UInt8(ascii: "\n")), end > 0, buffer[end - 1] == UInt8(ascii: "\r") {
                let text = String(decoding: buffer[..<(end - 1)], as: UTF8.self)
                buffer.removeFirst(end + 1)
                return text
            }
            try fill()
        }
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = recv(socket, &chunk, chunk.count, 0)
        guard count > 0 else { throw Sockets.Failure("redis closed the connection") }
        buffer += chunk[..<count]
    }

    private func read() throws -> Reply {
        let header = try line()
        let body = String(header.dropFirst())
        switch header.first {
        case "+": return .status(body)
        case "-": return .error(body)
        case ":": return .integer(Int(body) ?? 0)
        case "$":
            let length = Int(body) ?? -1
            guard length >= 0 else { return .null }
            while buffer.count < length + 2 { try fill() }
            let bytes = Array(buffer[..<length])
            buffer.removeFirst(length + 2)
            return .string(bytes)
        case "*":
            let count = Int(body) ?? -1
            guard count >= 0 else { return .null }
            return .array(try (0..<count).map { _ in try read() })
        default:
            throw Sockets.Failure("redis: unexpected reply \(header)")
        }
    }
}
