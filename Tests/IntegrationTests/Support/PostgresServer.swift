import Foundation
import Glibc

/// A real PostgreSQL 15 for the tests: `initdb` in a temporary folder, `pg_ctl` on a free
/// loopback port with a private unix-socket folder, stopped (by `pg_ctl stop`, then by PID) and
/// removed afterwards, also when a test fails. PostgreSQL refuses to run as root: as root (CI)
/// the server runs as the `postgres` user through `runuser`.
final class PostgresServer: Sendable {
    let directory: URL
    let port: Int
    var dataDirectory: String { directory.appending(path: "data").path }
    var socketDirectory: String { directory.appending(path: "socket").path }
    var logPath: String { directory.appending(path: "postgres.log").path }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    /// A libpq connection string for the superuser (no password: `trust` on the private socket
    /// and loopback).
    var conninfo: String { "host=127.0.0.1 port=\(port) user=\(Self.user) dbname=postgres" }

    static let binaries = "/usr/lib/postgresql/15/bin"
    static var runsAsRoot: Bool { geteuid() == 0 }
    static var user: String { runsAsRoot ? "postgres" : String(cString: getpwuid(geteuid()).pointee.pw_name) }

    init() throws {
        directory = URL(fileURLWithPath: "/tmp").appending(path: "sessionhost-pg-\(UUID().uuidString.prefix(8))")
        port = Sockets.freePort()
        try FileManager.default.createDirectory(atPath: socketDirectory, withIntermediateDirectories: true)
        if Self.runsAsRoot {
            // The postgres user must own the folder it runs in.
            try Self.run("/bin/chown", ["-R", "postgres:postgres", directory.path])
        }
        do {
            try Self.run("\(Self.binaries)/initdb", ["-D", dataDirectory, "-A", "trust", "-U", Self.user, "--no-sync", "-E", "UTF8"])
            try Self.run("\(Self.binaries)/pg_ctl", [
                "-D", dataDirectory, "-l", logPath, "-w", "-t", "60", "start",
                "-o", "-p \(port) -k \(socketDirectory) -c listen_addresses=127.0.0.1 -c fsync=off",
            ])
        } catch {
            stop()
            throw error
        }
    }

    deinit { stop() }

    /// Stops the server at once (`immediate`: as a crash would) or cleanly (`fast`).
    func stop(mode: String = "fast", removing: Bool = true) {
        if FileManager.default.fileExists(atPath: dataDirectory + "/postmaster.pid") {
            try? Self.run("\(Self.binaries)/pg_ctl", ["-D", dataDirectory, "-m", mode, "-w", "-t", "60", "stop"])
        }
        // pg_ctl failed or timed out: stop it by its PID.
        if let text = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
           let pid = text.split(separator: "\n").first.flatMap({ Int32($0) }), kill(pid, 0) == 0 {
            kill(pid, SIGKILL)
        }
        if removing { try? FileManager.default.removeItem(at: directory) }
    }

    /// Starts it again after `stop(removing: false)`.
    func start() throws {
        try Self.run("\(Self.binaries)/pg_ctl", [
            "-D", dataDirectory, "-l", logPath, "-w", "-t", "60", "start",
            "-o", "-p \(port) -k \(socketDirectory) -c listen_addresses=127.0.0.1 -c fsync=off",
        ])
    }

    /// Runs a PostgreSQL program (as the postgres user when root) and waits for it. Started
    /// with posix_spawn and reaped with waitpid: Foundation's `Process.waitUntilExit` was seen to
    /// miss the exit of `runuser pg_ctl start`, whose server keeps running.
    static func run(_ program: String, _ arguments: [String]) throws {
        let (path, argv) = runsAsRoot && !program.hasPrefix("/bin/")
            ? ("/usr/sbin/runuser", ["-u", "postgres", "--", program] + arguments)
            : (program, arguments)
        // Output to a file, not a pipe: the server pg_ctl starts inherits the descriptors.
        let outputPath = FileManager.default.temporaryDirectory.appending(path: "sessionhost-pg-output-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let pid = try Fixture.spawnWithDefaultSignals(path, argv, stderr: outputPath)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        // WIFEXITED && WEXITSTATUS == 0.
        guard status & 0x7F == 0, (status >> 8) & 0xFF == 0 else {
            let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            throw Sockets.Failure("\((program as NSString).lastPathComponent) failed (status \(status)):\n\(text)")
        }
    }
}
