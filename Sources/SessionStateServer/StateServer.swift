import Locking
package import Logging
package import NIOCore
import NIOHTTP1
import NIOPosix
import Foundation
import ServiceLifecycle

/// `session-state-server`: ASP.NET's state server (`aspnet_state`) for SessionHost and for
/// ASP.NET apps, as a ServiceLifecycle service. It accepts connections until graceful shutdown
/// begins, then stops accepting, answers the requests in hand and closes every connection.
package final class StateServer: Service, Sendable {
    package struct Configuration: Sendable {
        package var host: String
        package var port: Int
        /// Accept clients that are not on a loopback address (aspnet_state's
        /// `AllowRemoteConnection`).
        package var allowRemote: Bool
        package var limits: StateTable.Limits
        /// How often expired sessions are removed.
        package var sweepInterval: TimeAmount
        /// The longest lock wait a client may ask for (`X-SessionHost-Wait`).
        package var maxWait: TimeAmount
        package var threads: Int
        /// Where the status page listens (`--status-listen`); nil: no status page.
        package var statusHost: String?
        package var statusPort: Int = 0

        package init(host: String = "127.0.0.1", port: Int = 42424, allowRemote: Bool = false,
                     limits: StateTable.Limits = StateTable.Limits(maxItemSize: 16 << 20, maxTotalSize: 1 << 30),
                     sweepInterval: TimeAmount = .seconds(10), maxWait: TimeAmount = .seconds(120), threads: Int = System.coreCount) {
            self.host = host
            self.port = port
            self.allowRemote = allowRemote
            self.limits = limits
            self.sweepInterval = sweepInterval
            self.maxWait = maxWait
            self.threads = threads
        }
    }

    package let configuration: Configuration
    package let table: StateTable
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let connections = Locked<[ObjectIdentifier: any Channel]>([:])
    private let bound = Locked<SocketAddress?>(nil)
    private let statusBound = Locked<SocketAddress?>(nil)
    package let counters = StateServerCounters()
    private let startedAt = Date()
    private let startedInstant = ContinuousClock.now

    package init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        table = StateTable(limits: configuration.limits)
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.threads))
    }

    /// Where it listens once `run()` has bound (useful with port 0).
    package var localAddress: SocketAddress? { bound.withLock { $0 } }
    /// Where the status page listens once bound.
    package var statusAddress: SocketAddress? { statusBound.withLock { $0 } }

    /// The numbers of the status page now.
    func status() -> StateServerStatus {
        let table = table.statistics
        let elapsed = (ContinuousClock.now - startedInstant).components
        return StateServerStatus(
            pid: getpid(), startTime: startedAt.ISO8601Format(), uptimeSeconds: Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18,
            connections: connections.withLock { $0.count }, sessions: table.sessions, bytes: table.bytes, maxBytes: configuration.limits.maxTotalSize,
            locked: table.locked, operations: counters.operations, lockConflicts: counters.lockConflicts.load(ordering: .relaxed),
            notFound: counters.notFound.load(ordering: .relaxed), tooLarge: counters.tooLarge.load(ordering: .relaxed),
            waits: counters.waits.load(ordering: .relaxed), waitsTimedOut: counters.waitsTimedOut.load(ordering: .relaxed),
            malformedRequests: counters.malformed.load(ordering: .relaxed))
    }

    package func run() async throws {
        let channel: any Channel
        do { channel = try await bind() } catch {
            // The bind error is the one to report; a failing shutdown is only logged.
            do { try await group.shutdownGracefully() } catch let shutdown {
                logger.warning("event loops did not shut down cleanly", metadata: ["error": "\(shutdown)"])
            }
            throw error
        }
        bound.withLock { $0 = channel.localAddress }
        let statusChannel: (any Channel)?
        do { statusChannel = try await bindStatus() } catch {
            channel.close(promise: nil)
            try await group.shutdownGracefully()
            throw error
        }
        if let statusChannel {
            statusBound.withLock { $0 = statusChannel.localAddress }
            logger.info("status page on http://\(statusChannel.localAddress.map(Self.describe) ?? "?")/ (JSON; ?format=prometheus for Prometheus text)")
        }
        logger.info("session-state-server listening on \(channel.localAddress.map(Self.describe) ?? "?")", metadata: [
            "remote-clients": "\(configuration.allowRemote ? "allowed" : "refused (loopback only)")",
            "max-item-size": "\(configuration.limits.maxItemSize)", "max-memory": "\(configuration.limits.maxTotalSize)",
        ])
        let sweep = group.next().scheduleRepeatedTask(initialDelay: configuration.sweepInterval, delay: configuration.sweepInterval) { [table] _ in
            table.removeExpired()
        }
        await withGracefulShutdownHandler {
            // The listening channel closes at graceful shutdown; closing with an error is logged.
            do { try await channel.closeFuture.get() } catch {
                logger.error("the listening socket closed with an error", metadata: ["error": "\(error)"])
            }
        } onGracefulShutdown: {
            channel.close(promise: nil)
            statusChannel?.close(promise: nil)
        }
        sweep.cancel()
        await drainConnections()
        try await group.shutdownGracefully()
        logger.info("session-state-server stopped")
    }

    private func bind() async throws -> any Channel {
        let table = table
        let logger = logger
        let limits = configuration.limits
        let maxWait = configuration.maxWait
        let allowRemote = configuration.allowRemote
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                guard allowRemote || Self.isLoopback(channel.remoteAddress) else {
                    logger.notice("refused a state-server client that is not on this machine (--allow-remote)", metadata: [
                        "client": "\(channel.remoteAddress.map(Self.describe) ?? "?")",
                    ])
                    return channel.close()
                }
                track(channel)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(StateRequestDecoder(maxBodySize: limits.maxItemSize)))
                    try channel.pipeline.syncOperations.addHandler(StateConnectionHandler(table: table, counters: counters, maxWait: maxWait, logger: logger), name: "state")
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
    }

    /// The status page's listener (`statusHost`), an HTTP/1.1 server of its own.
    private func bindStatus() async throws -> (any Channel)? {
        guard let host = configuration.statusHost else { return nil }
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(StateStatusHandler(logger: logger) { [self] in status() })
                }
            }
            .bind(host: host, port: configuration.statusPort)
            .get()
    }

    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        connections.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { [connections] _ in
            connections.withLock { $0[id] = nil }
        }
    }

    /// Lets every connection answer what it holds, then close.
    private func drainConnections() async {
        let open = connections.withLock { Array($0.values) }
        for channel in open {
            channel.eventLoop.execute { [logger] in
                // No handler (the connection is being set up or torn down): just close it.
                let context: ChannelHandlerContext
                do { context = try channel.pipeline.syncOperations.context(name: "state") } catch {
                    logger.debug("closing a connection without its handler at shutdown", metadata: ["error": "\(error)"])
                    return channel.close(promise: nil)
                }
                guard let handler = context.handler as? StateConnectionHandler else { return channel.close(promise: nil) }
                handler.drain(context: context)
            }
        }
        for channel in open {
            do { try await channel.closeFuture.get() } catch {
                logger.debug("a client connection closed with an error", metadata: ["error": "\(error)"])
            }
        }
    }

    static func isLoopback(_ address: SocketAddress?) -> Bool {
        switch address {
        case .v4(let v4)?: v4.host.hasPrefix("127.")
        case .v6(let v6)?: v6.host == "::1" || v6.host.hasPrefix("::ffff:127.")
        case .unixDomainSocket?: true
        default: false
        }
    }

    static func describe(_ address: SocketAddress) -> String {
        switch address {
        case .v6(let v6): "[\(v6.host)]:\(address.port ?? 0)"
        default: "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        }
    }
}
