import Foundation
import Glibc
import Testing

/// A further session-probe worker on its own socket (for two workers behind one nginx
/// upstream), stopped by PID.
final class ProbeWorker {
    let directory = FileManager.default.temporaryDirectory.appending(path: "sessionhost-second-\(UUID().uuidString.prefix(8))")
    let process = Process()
    var socketPath: String { directory.appending(path: "worker2.sock").path }

    init(configDirectory: String) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        process.executableURL = Fixture.products.appending(path: "session-probe")
        process.arguments = ["serve", "--listen", "unix:\(socketPath)", "--config-dir", configDirectory, "--threads", "32"]
        let log = directory.appending(path: "worker2.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let fd = try? Sockets.connectUnix(path: socketPath) {
                close(fd)
                return
            }
            usleep(10_000)
        }
        stop()
        throw Sockets.Failure("the second worker did not start")
    }

    deinit { stop() }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }
}


/// Two session-probe workers behind one nginx upstream (round robin), both on `tree`: the
/// fixture's own and a `ProbeWorker`. Stopped (by PID) with `stop()`.
final class TwoProbeWorkers {
    let second: ProbeWorker
    let fixture: Fixture

    init(_ tree: SessionTree) throws {
        second = try ProbeWorker(configDirectory: tree.configDirectory)
        do {
            fixture = try Fixture(
                worker: "session-probe", workerArguments: ["--config-dir", tree.configDirectory, "--threads", "32"],
                nginxReplacements: [("        server unix:@SOCKET@;", "        server unix:@SOCKET@;\n        server unix:\(second.socketPath);")])
        } catch {
            second.stop()
            throw error
        }
    }

    func stop() {
        fixture.finish()
        second.stop()
    }

    /// The checks every shared store passes through both workers: the session of application
    /// `path` (in `mode`) is read and changed on both, another application stays InProc, and 200
    /// increments sent at once all succeed and all count. Returns the browser holding the session.
    @discardableResult
    func checkSharedSessions(_ path: String, mode: String) throws -> Browser {
        let browser = Browser(fixture)
        let first = try browser.probe("\(path)/probe?set=n&v=7&type=int")
        #expect(first.aspNet?.mode == mode)
        // Read and changed on both workers (nginx alternates between them).
        var workers = Set<Int>()
        for round in 0..<6 {
            let answer = try browser.probe("\(path)/probe?get=n&set=round&v=\(round)")
            workers.insert(answer.worker)
            #expect(answer.json["get"] as? Int == 7)
            #expect(answer.aspNetBefore?.keys["round"] == (round == 0 ? nil : "\(round - 1)"))
        }
        #expect(workers.count == 2, "answered by \(workers)")
        // Another application of the same workers stays in process.
        #expect(try Browser(fixture).probe("/probe?set=a&v=1").aspNet?.mode == "InProc")
        // 200 increments at once through both workers: the lock serialises them, none is lost.
        let cookie = browser.cookieHeader
        let pending = (0..<200).map { _ in SessionTesting.background(port: fixture.port, "\(path)/probe?incr=hits", cookie: cookie) }
        let replies = try pending.map { try $0.value() }
        #expect(replies.allSatisfy { $0.status == 200 }, "\(Set(replies.map(\.status)))")
        let hits = try browser.probe("\(path)/probe?get=hits").json["get"] as? Int
        #expect(hits == 200, "\(fixture.workerLog.split(separator: "\n").filter { $0.contains("warning") || $0.contains("error") }.suffix(5))")
        return browser
    }
}
