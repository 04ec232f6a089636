import Foundation
import Glibc

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

