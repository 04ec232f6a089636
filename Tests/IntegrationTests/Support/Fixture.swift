import Foundation
import Glibc

/// A running TestWorker on a unix socket and, optionally, a real nginx in front of it on a free
/// loopback port, rendered from the shipped `nginx/local.conf.in`. Everything lives in a fresh
/// temporary folder; `stop()` (also run on deinit) stops both by PID and removes the folder.
final class Fixture {
    let directory: URL
    let socketPath: String
    private(set) var port = 0
    let worker: Process
    private var nginx: Process?

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The folder holding the built products (TestWorker sits beside the test bundle).
    static let products: URL = {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [beside, beside.deletingLastPathComponent(), repository.appending(path: ".build/debug")]
        where FileManager.default.isExecutableFile(atPath: candidate.appending(path: "TestWorker").path) {
            return candidate
        }
        return beside
    }()

    /// `workerName`: the executable to run (TestWorker, or session-probe), from the built products.
    /// `environment`: added to the worker's environment.
    /// `nginxReplacements`: text of `nginx/local.conf.in` replaced before nginx starts (e.g.
    /// `worker_processes 1;` by `worker_processes 2;`).
    init(
        nginx withNginx: Bool = true, worker workerName: String = "TestWorker", workerArguments: [String] = [], environment: [String: String] = [:],
        nginxReplacements: [(String, String)] = []
    ) throws {
        directory = FileManager.default.temporaryDirectory.appending(path: "sessionhost-test-\(UUID().uuidString.prefix(8))")
        for sub in ["logs", "run", "tmp"] {
            try FileManager.default.createDirectory(at: directory.appending(path: sub), withIntermediateDirectories: true)
        }
        socketPath = directory.appending(path: "worker.sock").path
        worker = Process()
        worker.executableURL = Self.products.appending(path: workerName)
        worker.arguments = ["serve", "--listen", "unix:\(socketPath)", "--threads", "8"] + workerArguments
        if !environment.isEmpty { worker.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let log = directory.appending(path: "logs/worker.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        worker.standardError = try FileHandle(forWritingTo: log)
        worker.standardOutput = FileHandle.nullDevice
        try worker.run()
        do {
            try waitUntil("the worker accepts on \(socketPath)") { (try? Sockets.connectUnix(path: socketPath)).map { close($0); return true } ?? false }
            if withNginx { try startNginx(replacements: nginxReplacements) }
        } catch {
            stop()
            throw error
        }
    }

    deinit { stop() }

    private func startNginx(replacements: [(String, String)]) throws {
        port = Sockets.freePort()
        var template = try String(contentsOf: Self.repository.appending(path: "nginx/local.conf.in"), encoding: .utf8)
        for (text, replacement) in replacements {
            guard template.contains(text) else { throw Sockets.Failure("nginx/local.conf.in has no '\(text)'") }
            template = template.replacing(text, with: replacement)
        }
        let config = template
            .replacing("@PORT@", with: String(port))
            .replacing("@SOCKET@", with: socketPath)
            .replacing("@PARAMS@", with: Self.repository.appending(path: "nginx/sessionhost_params").path)
            .replacing("@USER@", with: geteuid() == 0 ? "user root;" : "")
        let configPath = directory.appending(path: "nginx.conf").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.which("nginx"))
        process.arguments = ["-p", directory.path, "-c", configPath, "-e", directory.appending(path: "logs/error.log").path]
        process.standardError = FileHandle.nullDevice
        try process.run()
        nginx = process
        try waitUntil("nginx accepts on 127.0.0.1:\(port)") { (try? Sockets.connectTCP(port: port)).map { close($0); return true } ?? false }
    }

    func connection() throws -> HTTPConnection { try HTTPConnection(port: port) }

    func get(_ target: String, headers: [(String, String)] = []) throws -> HTTPReply {
        try connection().send("GET", target, headers: headers)
    }

    var workerLog: String {
        (try? String(contentsOf: directory.appending(path: "logs/worker.log"), encoding: .utf8)) ?? ""
    }

    /// Waits for the worker to exit; nil if it has not within 30 s.
    func workerExitStatus() -> Int32? {
        try? waitUntil("the worker exits") { !worker.isRunning }
        return worker.isRunning ? nil : worker.terminationStatus
    }

    func stop() {
        for process in [nginx, worker].compactMap({ $0 }) where process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
        nginx = nil
        try? FileManager.default.removeItem(at: directory)
    }

    /// Polls `condition` until it holds (30 s at most): waiting for a process to come up is not a
    /// timing assumption, only a bound on a broken one.
    func waitUntil(_ what: String, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if try condition() { return }
            usleep(10_000)
        }
        throw Sockets.Failure("timed out waiting until \(what); worker log:\n\(workerLog)")
    }

    static func which(_ name: String) -> String {
        for directory in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin"] where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
            return "\(directory)/\(name)"
        }
        return name
    }
}
