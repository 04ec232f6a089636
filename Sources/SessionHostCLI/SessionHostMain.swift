import ArgumentParser
import FastCGI
import Foundation
import Logging
public import SessionHost
import WebConfiguration
import ServiceLifecycle

/// The entry point of an app built on SessionHost: it gives the app the shared command line.
///
/// ```swift
/// @main struct MyApp {
///     static func main() async {
///         var routes = Routes()
///         routes.exact("/") { _ in .text("hello") }
///         await SessionHostMain.run(routes: routes)
///     }
/// }
/// ```
/// Then `my-app serve --listen unix:/run/my-app.sock`.
public enum SessionHostMain {
    public static func run(routes: Routes, sessions: SessionOptions = SessionOptions(), abstract: String = "A web app served by SessionHost behind nginx (FastCGI).") async {
        AppCommand.abstractText = abstract
        do {
            let command = try AppCommand.parseAsRoot()
            if let serve = command as? ServeCommand {
                try await serve.serve(routes: routes, sessions: sessions)
            } else if let check = command as? CheckConfigCommand {
                try check.check(sessions: sessions)
            } else {
                var command = command
                try command.run()
            }
        } catch {
            AppCommand.exit(withError: error)
        }
    }
}

struct AppCommand: ParsableCommand {
    nonisolated(unsafe) static var abstractText = ""

    static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: URL(fileURLWithPath: CommandLine.arguments.first ?? "app").lastPathComponent,
            abstract: abstractText,
            version: SessionHostVersion.current,
            subcommands: [ServeCommand.self, CheckConfigCommand.self]
        )
    }
}

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the app's pages to nginx (or Apache) over FastCGI.",
        discussion: """
            Point nginx's fastcgi_pass (or Apache's ProxyPass fcgi://) at the same address. \
            --threads bounds the requests served at once; connections that are idle (kept \
            alive) or still sending wait in epoll without holding a thread, up to \
            --max-connections.

            SIGTERM or SIGINT stops accepting, lets running requests finish (up to \
            --grace-period seconds) and exits 0.
            """
    )

    @Option(help: ArgumentHelp(
        "Where to accept FastCGI connections: unix:PATH (socket created with mode 0660, removed on exit), HOST:PORT (e.g. 127.0.0.1:9000), or fd:0 (a socket inherited from spawn-fcgi or mod_fcgid). Default: fd:0 when standard input is a listening socket.",
        valueName: "address"))
    var listen: String?

    @Option(name: .customLong("socket-mode"), help: ArgumentHelp("Permissions of a unix socket the worker creates, in octal (php-fpm's listen.mode).", valueName: "mode"))
    var socketMode: String = "0660"

    @Option(name: .customLong("socket-group"), help: ArgumentHelp("Group of a unix socket the worker creates, by name or id (php-fpm's listen.group), e.g. www-data so that nginx or Apache running as www-data can connect.", valueName: "group"))
    var socketGroup: String?

    @Option(help: "Worker threads: requests served at once. Idle kept-alive connections hold no thread.")
    var threads: Int = 64

    @Option(name: .customLong("max-connections"), help: ArgumentHelp("Connections open at once; past it new ones wait in the listen backlog (a warning is logged once a minute).", valueName: "count"))
    var maxConnections: Int = 4096

    @Option(name: .customLong("active-threads"), help: ArgumentHelp("Threads that take connections at once while no request blocks (default: one per core, at least 2); others of --threads join while requests block (run longer than 2 ms).", valueName: "count"))
    var activeThreads: Int?

    @Option(name: .customLong("config-dir"), help: ArgumentHelp("Folder of machine.config, web.config and applicationHost.config.", valueName: "dir"))
    var configDir: String = "conf.d"

    @Option(help: ArgumentHelp("The site of applicationHost.config to serve, by name or id; nginx may name another per request with `fastcgi_param SESSIONHOST_SITE`.", valueName: "site"))
    var site: String = "1"

    @Option(name: .customLong("config-errors"), help: ArgumentHelp("Who sees file, line and message on the configuration-error page (500.19): detailed (everyone), local (loopback clients) or none. Errors are always logged.", valueName: "who"))
    var configErrors: String = "local"

    @Option(name: .customLong("config-check-interval"), help: ArgumentHelp("Seconds between checks for changed configuration files (SIGHUP reloads at once).", valueName: "seconds"))
    var configCheckInterval: Double = 2

    @Option(name: .customLong("session-queue-limit"), help: ArgumentHelp("Requests that may wait at once for one session's lock (ASP.NET's RequestQueueLimitPerSession); more get 503.", valueName: "count"))
    var sessionQueueLimit: Int = 50

    @Option(name: .customLong("max-body-size"), help: ArgumentHelp("Largest request body accepted, in bytes (suffixes K, M, G); larger ones get 413.", valueName: "size"))
    var maxBodySize: String = "10M"

    @Option(name: .customLong("request-head-timeout"), help: ArgumentHelp("Seconds a connection may take to complete a request head once it has started one; then it is closed.", valueName: "seconds"))
    var requestHeadTimeout: Double = 30

    @Option(name: .customLong("request-body-timeout"), help: ArgumentHelp("Seconds a connection may stall inside a request body; then it is closed.", valueName: "seconds"))
    var requestBodyTimeout: Double = 60

    @Option(name: .customLong("max-url-length"), help: ArgumentHelp("Longest request path accepted, in bytes as sent (without the query); longer ones get 414.", valueName: "bytes"))
    var maxURLLength: Int = HostConfiguration.defaultMaxURLLength

    @Option(name: .customLong("max-url-segments"), help: ArgumentHelp("Most segments a request path may have; more get 414.", valueName: "count"))
    var maxURLSegments: Int = HostConfiguration.defaultMaxURLSegments

    @Option(name: .customLong("startup-check-pause"), help: ArgumentHelp("Seconds to pause before each path of the startup configuration check (for tests).", visibility: .private))
    var startupCheckPause: Double = 0

    @Option(name: .customLong("grace-period"), help: ArgumentHelp("Seconds running requests get to finish after SIGTERM/SIGINT.", valueName: "seconds"))
    var gracePeriod: Double = 10

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug (one line per request), info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String = "info"

    @Flag(name: .customLong("access-log"), help: "Log one line per request at info: nginx's combined format, then a hash of the ASP.NET session ID (never the ID), the request id and the duration.")
    var accessLog = false

    @Option(name: .customLong("status-path"), help: ArgumentHelp("Serve the status page at this path (php-fpm's pm.status_path): JSON, or Prometheus text with ?format=prometheus. Only loopback clients and --status-allow may read it. Off by default.", valueName: "path"))
    var statusPath: String?

    @Option(name: .customLong("status-allow"), help: ArgumentHelp("A client address or network (10.0.0.0/8, fd00::/8) that may read the status page besides loopback clients; repeatable.", valueName: "address[/bits]"))
    var statusAllow: [String] = []

    func validate() throws {
        if let statusPath, !statusPath.hasPrefix("/") || statusPath.contains("?") {
            throw ValidationError("--status-path must be a path that starts with / (no query), e.g. /sessionhost-status")
        }
        do { _ = try StatusAllowList(statusAllow) } catch { throw ValidationError("--status-allow: \(error)") }
        guard threads >= 1, threads <= 4096 else { throw ValidationError("--threads must be between 1 and 4096") }
        if let activeThreads, activeThreads < 1 || activeThreads > threads {
            throw ValidationError("--active-threads must be between 1 and --threads (\(threads))")
        }
        guard maxConnections >= 1, maxConnections <= 1_000_000 else { throw ValidationError("--max-connections must be between 1 and 1000000") }
        guard gracePeriod >= 0 else { throw ValidationError("--grace-period must not be negative") }
        guard parsedBodySize != nil else { throw ValidationError("--max-body-size must be a number of bytes, optionally with K, M or G") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
        guard ConfigurationErrorDetails(rawValue: configErrors) != nil else { throw ValidationError("--config-errors must be detailed, local or none") }
        guard sessionQueueLimit >= 1 else { throw ValidationError("--session-queue-limit must be at least 1") }
        guard configCheckInterval > 0 else { throw ValidationError("--config-check-interval must be positive") }
        guard parsedSocketMode != nil else { throw ValidationError("--socket-mode must be octal permission bits such as 0660") }
        if let socketGroup, Self.groupID(socketGroup) == nil { throw ValidationError("--socket-group: no group '\(socketGroup)' on this system") }
        guard requestHeadTimeout > 0, requestBodyTimeout > 0 else { throw ValidationError("--request-head-timeout and --request-body-timeout must be positive") }
        guard maxURLLength >= 1 else { throw ValidationError("--max-url-length must be at least 1") }
        guard maxURLSegments >= 1 else { throw ValidationError("--max-url-segments must be at least 1") }
        guard startupCheckPause >= 0 else { throw ValidationError("--startup-check-pause must not be negative") }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: configDir, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw ValidationError("--config-dir \(configDir) is not a folder")
        }
        if let listen {
            do { _ = try ListenAddress(parsing: listen) } catch { throw ValidationError(error.description) }
        } else if !standardInputIsListeningSocket {
            throw ValidationError("Missing --listen: give unix:PATH or HOST:PORT (standard input is not an inherited listening socket).")
        }
    }

    private var parsedBodySize: Int? {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        if let unit = maxBodySize.last.flatMap({ units[Character($0.uppercased())] }) {
            return Int(maxBodySize.dropLast()).map { $0 * unit }
        }
        return Int(maxBodySize).flatMap { $0 >= 0 ? $0 : nil }
    }

    private var parsedSocketMode: UInt32? {
        UInt32(socketMode, radix: 8).flatMap { $0 <= 0o777 ? $0 : nil }
    }

    /// The id of the group named `name` (or given as a number).
    private static func groupID(_ name: String) -> UInt32? {
        if let id = UInt32(name) { return id }
        guard let entry = getgrnam(name) else { return nil }
        return UInt32(entry.pointee.gr_gid)
    }

    private var standardInputIsListeningSocket: Bool {
        var listening: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0 && listening != 0
    }

    func serve(routes: Routes, sessions: SessionOptions) async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "sessionhost")
        let address = try listen.map { try ListenAddress(parsing: $0) } ?? .inherited(fd: 0)
        var configuration = HostConfiguration(
            server: FastCGIServerConfiguration(
                listen: address, threadCount: threads, maxRequestBodySize: parsedBodySize ?? 10 << 20,
                requestHeadTimeout: .milliseconds(Int(requestHeadTimeout * 1000)),
                requestBodyTimeout: .milliseconds(Int(requestBodyTimeout * 1000)),
                socketOwnership: SocketOwnership(mode: parsedSocketMode ?? 0o660, group: socketGroup.flatMap(Self.groupID)),
                maxConnections: maxConnections, activeThreads: activeThreads),
            shutdownGracePeriod: .milliseconds(Int(gracePeriod * 1000)),
            configDirectory: configDir,
            site: Int(site).map(SiteSelector.id) ?? .name(site),
            configurationCheckInterval: .milliseconds(Int(configCheckInterval * 1000)),
            configurationErrorDetails: ConfigurationErrorDetails(rawValue: configErrors) ?? .localRequests,
            maxURLLength: maxURLLength,
            maxURLSegments: maxURLSegments
        )
        configuration.startupCheckPause = .milliseconds(Int(startupCheckPause * 1000))
        configuration.accessLog = accessLog
        configuration.statusPath = statusPath
        configuration.statusAllowList = try StatusAllowList(statusAllow)
        var sessions = sessions
        sessions.queueLimitPerSession = sessionQueueLimit
        let host = HostServer(configuration: configuration, routes: routes, sessions: sessions, logger: logger)
        switch host.configurationStore.sites() {
        case .success(let sites):
            logger.info("configuration from \(configDir): sites \(sites.map { "\"\($0.name)\" (id \($0.id))" }.joined(separator: ", "))")
        case .failure(let errors):
            logger.error("the server-level configuration is invalid; every request will get the configuration-error page until it is fixed", metadata: [
                "errors": "\(errors)",
            ])
        }
        // SIGHUP reloads the configuration once the host runs; until then it must not kill the worker.
        signal(SIGHUP, SIG_IGN)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                // The maintenance first: services stop in reverse order, so it outlives the host.
                services: [.init(service: host.sessionMaintenance), .init(service: host)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}

/// `check-config`: `session-host config check` with the app's own stores, so that the provider
/// types it registers (and their attributes) are checked too, without starting the worker.
struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate every configuration file of every site, with this app's session stores.",
        discussion: "Prints each error as file:line: message and exits 1 if there is any."
    )

    @Option(name: .customLong("config-dir"), help: ArgumentHelp("Folder of machine.config, web.config and applicationHost.config.", valueName: "dir"))
    var configDir: String = "conf.d"

    func check(sessions: SessionOptions) throws {
        let errors = SessionManager.checkConfiguration(directory: configDir, options: sessions)
        guard !errors.isEmpty else {
            print("OK: the configuration in \(configDir) and every site's web.config files are valid.")
            return
        }
        for error in errors { print(error.description) }
        throw ExitCode.failure
    }
}
