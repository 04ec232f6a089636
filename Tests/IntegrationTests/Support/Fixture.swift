import Foundation
import Glibc

/// A running TestWorker on a unix socket and, optionally, a real front end in front of it on a
/// free loopback port: nginx rendered from the shipped `nginx/local.conf.in`, or Apache httpd
/// (mpm_event, mod_proxy_fcgi) with the shipped `nginx/apache-proxy-fcgi.conf`. Everything lives in
/// a fresh temporary folder; `stop()` (also run on deinit) stops them by PID and removes the
/// folder.
final class Fixture {
    enum FrontEnd { case none, nginx, apache }

    let directory: URL
    let socketPath: String
    private(set) var port = 0
    let worker: Process
    private var nginx: Process?
    /// Apache's process id (see `spawnWithDefaultSignals`).
    private var apache: pid_t?

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
    convenience init(
        nginx withNginx: Bool = true, worker workerName: String = "TestWorker", workerArguments: [String] = [], environment: [String: String] = [:],
        nginxReplacements: [(String, String)] = []
    ) throws {
        try self.init(frontEnd: withNginx ? .nginx : .none, worker: workerName, workerArguments: workerArguments, environment: environment, nginxReplacements: nginxReplacements)
    }

    init(
        frontEnd: FrontEnd, worker workerName: String = "TestWorker", workerArguments: [String] = [], environment: [String: String] = [:],
        nginxReplacements: [(String, String)] = []
    ) throws {
        directory = FileManager.default.temporaryDirectory.appending(path: "sessionhost-test-\(UUID().uuidString.prefix(8))")
        for sub in ["logs", "run", "tmp"] {
            try FileManager.default.createDirectory(at: directory.appending(path: sub), withIntermediateDirectories: true)
        }
        socketPath = directory.appending(path: "worker.sock").path
        worker = Process()
        worker.executableURL = Self.products.appending(path: workerName)
        // Apache refuses to serve as root and runs as www-data: as root, the socket goes to that
        // group and the folder may be traversed.
        let forApache = frontEnd == .apache && geteuid() == 0
        if forApache { chmod(directory.path, 0o711) }
        worker.arguments = ["serve", "--listen", "unix:\(socketPath)", "--threads", "8"] + (forApache ? ["--socket-group", "www-data"] : []) + workerArguments
        if !environment.isEmpty { worker.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let log = directory.appending(path: "logs/worker.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        worker.standardError = try FileHandle(forWritingTo: log)
        worker.standardOutput = FileHandle.nullDevice
        try worker.run()
        do {
            try waitUntil("the worker accepts on \(socketPath)") { (try? Sockets.connectUnix(path: socketPath)).map { close($0); return true } ?? false }
            switch frontEnd {
            case .none: break
            case .nginx: try startNginx(replacements: nginxReplacements)
            case .apache: try startApache()
            }
        } catch {
            stop()
            throw error
        }
    }

    deinit { stop() }

    /// Renders and starts nginx on a free port. A port found free may be taken by another
    /// test's server before nginx binds it (nginx then retries and exits, and the other server
    /// answers on the port): a request for a marker path must show in this nginx's own access
    /// log, else it starts again on another port.
    private func startNginx(replacements: [(String, String)]) throws {
        var template = try String(contentsOf: Self.repository.appending(path: "nginx/local.conf.in"), encoding: .utf8)
        for (text, replacement) in replacements {
            guard template.contains(text) else { throw Sockets.Failure("nginx/local.conf.in has no '\(text)'") }
            template = template.replacing(text, with: replacement)
        }
        // The marker request below is answered by nginx itself: a worker busy starting (a loaded
        // machine, the thread sanitizer) answered it late, after the test's own first requests,
        // and a status-counter test saw it as an extra request.
        let everything = "        location / {"
        guard template.contains(everything) else { throw Sockets.Failure("nginx/local.conf.in has no '\(everything)'") }
        template = template.replacing(everything, with: "        location ^~ /fixture- { return 204; }\n\n" + everything)
        for attempt in 1...5 {
            port = Sockets.freePort()
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
            let marker = "/fixture-\(UUID().uuidString)"
            _ = try? HTTPConnection(port: port).send("GET", marker, headers: [])
            let accessLog = directory.appending(path: "logs/access.log").path
            // nginx writes the line after it answered: give it time, also on a machine loaded by
            // parallel tests under the thread sanitizer.
            for _ in 0..<500 {
                if (try? String(contentsOfFile: accessLog, encoding: .utf8))?.contains(marker) == true { return }
                usleep(20_000)
            }
            // Another server answered: this nginx could not bind the port.
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
            nginx = nil
            if attempt == 5 { throw Sockets.Failure("nginx could not get a free port in 5 attempts") }
        }
    }

    /// Apache httpd with the modules the shipped example needs, the example's virtual host
    /// included with this fixture's port and socket, and a short upstream timeout so that a
    /// stuck request shows as an error instead of a hang.
    private func startApache() throws {
        port = Sockets.freePort()
        let modules = "/usr/lib/apache2/modules"
        var site = try String(contentsOf: Self.repository.appending(path: "nginx/apache-proxy-fcgi.conf"), encoding: .utf8)
        for (text, replacement) in [("<VirtualHost *:80>", "<VirtualHost 127.0.0.1:\(port)>"), ("/run/sessionhost/app.sock", socketPath), ("enablereuse=on", "enablereuse=on timeout=10")] {
            guard site.contains(text) else { throw Sockets.Failure("nginx/apache-proxy-fcgi.conf has no '\(text)'") }
            site = site.replacing(text, with: replacement)
        }
        let sitePath = directory.appending(path: "apache-site.conf").path
        try site.write(toFile: sitePath, atomically: true, encoding: .utf8)
        let root = directory.path
        let config = """
            ServerRoot "\(root)"
            DefaultRuntimeDir "\(root)/run"
            PidFile "\(root)/run/httpd.pid"
            ErrorLog "\(root)/logs/apache-error.log"
            LogLevel warn
            Listen 127.0.0.1:\(port)
            ServerName localhost
            LoadModule mpm_event_module \(modules)/mod_mpm_event.so
            LoadModule authz_core_module \(modules)/mod_authz_core.so
            LoadModule authz_host_module \(modules)/mod_authz_host.so
            LoadModule proxy_module \(modules)/mod_proxy.so
            LoadModule proxy_fcgi_module \(modules)/mod_proxy_fcgi.so
            \(geteuid() == 0 ? "User www-data\nGroup www-data" : "")
            Include "\(sitePath)"

            """
        let configPath = directory.appending(path: "httpd.conf").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let stderrPath = directory.appending(path: "logs/apache-stderr.log").path
        apache = try Self.spawnWithDefaultSignals(Self.which("apache2"), ["-f", configPath, "-DFOREGROUND"], stderr: stderrPath)
        try waitUntil("Apache accepts on 127.0.0.1:\(port)") { (try? Sockets.connectTCP(port: port)).map { close($0); return true } ?? false }
    }

    /// Apache's error log and standard error (upstream errors and timeouts show there).
    var apacheErrors: String {
        ["logs/apache-error.log", "logs/apache-stderr.log"].map {
            (try? String(contentsOf: directory.appending(path: $0), encoding: .utf8)) ?? ""
        }.joined()
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
        if let apache {
            kill(apache, SIGTERM)
            var status: Int32 = 0
            waitpid(apache, &status, 0)
            self.apache = nil
        }
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

    /// Starts `path` with every signal unblocked and at its default action. Foundation's
    /// `Process` passes on the test process's signal mask, in which SIGTERM is blocked; Apache
    /// never unblocks it and would not stop.
    /// Runs one of the package's executables (`session-host`, `session-probe check-config`) to
    /// its end; its exit status and what it printed (both streams).
    static func runProduct(_ product: String, _ arguments: [String]) throws -> (status: Int32, text: String) {
        let process = Process()
        process.executableURL = products.appending(path: product)
        process.arguments = arguments
        let output = FileManager.default.temporaryDirectory.appending(path: "\(product)-\(UUID().uuidString.prefix(8)).out")
        FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        process.waitUntilExit()
        try handle.close()
        return (process.terminationStatus, try String(contentsOf: output, encoding: .utf8))
    }

    static func spawnWithDefaultSignals(_ path: String, _ arguments: [String], stderr: String) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw Sockets.Failure("cannot start \(path): \(String(cString: strerror(rc)))") }
        return pid
    }

    static func which(_ name: String) -> String {
        for directory in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin"] where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
            return "\(directory)/\(name)"
        }
        return name
    }
}
