import ArgumentParser
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import SessionStateServer

/// `session-state-server`: ASP.NET's state server for SessionHost workers and ASP.NET apps
/// (`mode="StateServer"`).
@main
struct SessionStateServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session-state-server",
        abstract: "Keeps ASP.NET sessions for SessionHost workers and ASP.NET apps (sessionState mode=\"StateServer\").",
        discussion: """
            Speaks the protocol of ASP.NET's state service (aspnet_state): point \
            stateConnectionString="tcpip=127.0.0.1:42424" at it. Like aspnet_state it accepts only \
            clients on this machine unless --allow-remote is given, and has no authentication or \
            encryption: keep it on a trusted network.

            SIGTERM or SIGINT stops accepting, answers the requests in hand and exits 0. Sessions \
            live in memory: they are lost when the server stops, as with aspnet_state.
            """
    )

    @Option(help: ArgumentHelp("Where to listen: HOST:PORT or [IPv6]:PORT.", valueName: "address"))
    var listen: String = "127.0.0.1:42424"

    @Flag(name: .customLong("allow-remote"), help: "Accept clients that are not on a loopback address (aspnet_state's AllowRemoteConnection).")
    var allowRemote = false

    @Option(name: .customLong("max-item-size"), help: ArgumentHelp("Largest session accepted, in bytes (suffixes K, M, G); larger ones are refused (507).", valueName: "size"))
    var maxItemSize: String = "16M"

    @Option(name: .customLong("max-memory"), help: ArgumentHelp("Most bytes of sessions held at once (suffixes K, M, G); past it new or larger sessions are refused (507).", valueName: "size"))
    var maxMemory: String = "1G"

    @Option(help: "Event-loop threads (default: one per core).")
    var threads: Int = System.coreCount

    @Option(name: .customLong("status-listen"), help: ArgumentHelp("Serve a status page over HTTP at HOST:PORT (JSON; ?format=prometheus for Prometheus text): sessions, bytes, locks, operations, lock waits. Answers loopback clients only. Off by default.", valueName: "address"))
    var statusListen: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard Self.address(listen) != nil else { throw ValidationError("--listen must be HOST:PORT or [IPv6]:PORT, e.g. 127.0.0.1:42424") }
        guard let item = Self.size(maxItemSize), item > 0 else { throw ValidationError("--max-item-size must be a number of bytes, optionally with K, M or G") }
        guard let memory = Self.size(maxMemory), memory >= item else { throw ValidationError("--max-memory must be a number of bytes (K, M, G) no smaller than --max-item-size") }
        if let statusListen, Self.address(statusListen) == nil { throw ValidationError("--status-listen must be HOST:PORT or [IPv6]:PORT, e.g. 127.0.0.1:42425") }
        guard threads >= 1, threads <= 256 else { throw ValidationError("--threads must be between 1 and 256") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "session-state-server")
        guard let (host, port) = Self.address(listen), let item = Self.size(maxItemSize), let memory = Self.size(maxMemory) else { return }
        var configuration = StateServer.Configuration(
            host: host, port: port, allowRemote: allowRemote, limits: .init(maxItemSize: item, maxTotalSize: memory), threads: threads)
        if let status = statusListen.flatMap(Self.address) {
            configuration.statusHost = status.host
            configuration.statusPort = status.port
        }
        let server = StateServer(configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: server)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// `host:port` or `[v6]:port`.
    static func address(_ text: String) -> (host: String, port: Int)? {
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2 else { return nil }
            (host, port) = (parts[0], parts[1])
        }
        guard !host.isEmpty, let number = Int(port), (0...65535).contains(number) else { return nil }
        return (String(host), number)
    }

    static func size(_ text: String) -> Int? {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        if let unit = text.last.flatMap({ units[Character($0.uppercased())] }) {
            return Int(text.dropLast()).flatMap { $0 >= 0 ? $0 * unit : nil }
        }
        return Int(text).flatMap { $0 >= 0 ? $0 : nil }
    }
}
