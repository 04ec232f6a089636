import Locking
import Dispatch
import Foundation
public import FastCGI
import HTTPTypes
public import Logging
public import ServiceLifecycle
import SessionState
import Synchronization
public import WebConfiguration

public struct HostConfiguration: Sendable {
    public var server: FastCGIServerConfiguration
    /// How long in-flight requests may run on after SIGTERM/SIGINT before the process exits.
    public var shutdownGracePeriod: Duration
    /// The folder of machine.config, web.config and applicationHost.config.
    public var configDirectory: String
    /// The site of applicationHost.config requests belong to, unless the web server names one
    /// in the `SESSIONHOST_SITE` parameter (a site name or id).
    public var site: SiteSelector
    /// How often the configuration files read so far are checked for changes.
    public var configurationCheckInterval: Duration
    /// Who sees the file, line and message on the configuration-error page.
    public var configurationErrorDetails: ConfigurationErrorDetails
    /// Longest request path accepted, in bytes as sent (percent-escapes included, the query
    /// not); longer ones get 414. IIS's `requestFiltering/requestLimits/@maxUrl` default.
    public var maxURLLength: Int
    /// Most segments a decoded request path may have; more get 414. http.sys's
    /// `UrlSegmentMaxCount` default.
    public var maxURLSegments: Int
    /// One access line per request at `info` (`--access-log`): nginx's combined format, then the
    /// ASP.NET session (a hash of its ID, never the ID), the request id and the duration.
    public var accessLog = false
    /// The path of the status page (`--status-path`, php-fpm's `pm.status_path`): JSON, or
    /// Prometheus text with `?format=prometheus`. Nil (the default): no status page.
    public var statusPath: String?
    /// Who may read the status page besides loopback clients (`--status-allow`).
    public var statusAllowList = StatusAllowList()
    /// A pause before each path of the startup configuration check (tests slow the check with
    /// it to show that the worker serves meanwhile).
    package var startupCheckPause: Duration = .zero

    public static let defaultMaxURLLength = 4096
    public static let defaultMaxURLSegments = 255

    public init(
        server: FastCGIServerConfiguration, shutdownGracePeriod: Duration = .seconds(10), configDirectory: String = "conf.d",
        site: SiteSelector = .default, configurationCheckInterval: Duration = .seconds(2),
        configurationErrorDetails: ConfigurationErrorDetails = .localRequests,
        maxURLLength: Int = defaultMaxURLLength, maxURLSegments: Int = defaultMaxURLSegments
    ) {
        self.server = server
        self.shutdownGracePeriod = shutdownGracePeriod
        self.configDirectory = configDirectory
        self.site = site
        self.configurationCheckInterval = configurationCheckInterval
        self.configurationErrorDetails = configurationErrorDetails
        self.maxURLLength = maxURLLength
        self.maxURLSegments = maxURLSegments
    }
}

/// Who is shown the details of a configuration error (IIS's `errorMode`); they are always logged.
public enum ConfigurationErrorDetails: String, Sendable, CaseIterable {
    /// Everyone (IIS `Detailed`).
    case everyone = "detailed"
    /// Requests from a loopback address only (IIS `DetailedLocalOnly`, its default).
    case localRequests = "local"
    /// No one: a generic page with a reference (IIS `Custom`).
    case nobody = "none"
}

/// Runs an app's routes behind the FastCGI transport, as a ServiceLifecycle service: it serves
/// until graceful shutdown begins (SIGTERM/SIGINT in a `ServiceGroup`), then stops accepting and
/// lets in-flight requests finish within the grace period.
public final class HostServer: Service, Sendable {
    public let configuration: HostConfiguration
    private let routes: Routes
    let logger: Logger
    private let requestCounter = Atomic<UInt64>(0)
    /// Responses by status class (1xx … 5xx), for the status page.
    let statusClasses = StatusClassCounters()
    /// The transport while `run()` serves, for the status page's thread and connection numbers.
    let transport = Locked<FastCGIServer?>(nil)
    let startedAt = Date()
    let startedInstant = ContinuousClock.now
    /// The per-URL session configuration, memoised and re-read when files change.
    public let configurationStore: ConfigurationStore
    /// Both session domains and their stores.
    let sessions: SessionManager
    /// The session stores' background work, a service to run beside this one (see
    /// `SessionMaintenance`); `SessionHostMain` adds it to its `ServiceGroup`.
    public let sessionMaintenance: SessionMaintenance

    public init(configuration: HostConfiguration, routes: Routes, sessions: SessionOptions = SessionOptions(), logger: Logger) {
        self.configuration = configuration
        self.routes = routes
        self.logger = logger
        let manager = SessionManager(options: sessions, logger: logger)
        self.sessions = manager
        sessionMaintenance = SessionMaintenance(sessions: manager, interval: sessions.expiryCheckInterval, logger: logger)
        let stores = manager.outOfProcess
        let idManagers = sessions.idManagers
        configurationStore = ConfigurationStore(directory: configuration.configDirectory, logger: logger, validate: {
            stores.validate($0) + SessionManager.cookieSettingsErrors($0) + SessionManager.idManagerErrors($0, managers: idManagers)
        })
    }

    public func run() async throws {
        let server = FastCGIServer(configuration: configuration.server, logger: logger) { [self] request, writer in
            respond(to: request, writer: &writer)
        }
        try server.start()
        transport.withLock { $0 = server }
        var address = "\(configuration.server.listen)"
        if case .tcp(let host, _) = configuration.server.listen, let port = server.boundPort { address = "\(host):\(port)" }
        logger.info("SessionHost \(SessionHostVersion.current) listening on \(address) with \(configuration.server.threadCount) threads", metadata: [
            "max-body-size": "\(configuration.server.maxRequestBodySize)",
            "config-dir": "\(configuration.configDirectory)",
        ])
        // Every web.config is checked now, while the worker already serves, so that a setting
        // this build cannot serve (a session-state mode it lacks, say) shows in the log at
        // startup, not at the first request for it.
        let check = StartupCheck(store: configurationStore, pause: configuration.startupCheckPause, logger: logger)
        check.start()
        let grace = configuration.shutdownGracePeriod
        let store = configurationStore
        let interval = configuration.configurationCheckInterval
        let watcher = Task.detached { await store.watchForChanges(every: interval) }
        // SIGHUP forces a reload; it is ignored so that it never kills the worker.
        signal(SIGHUP, SIG_IGN)
        let hangUp = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hangUp.setEventHandler { store.reload() }
        hangUp.resume()
        defer {
            check.stop()
            hangUp.cancel()
            watcher.cancel()
        }
        let outcome = await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await server.waitUntilStopped()
            } onGracefulShutdown: {
                server.stop(gracePeriod: grace)
            }
        } onCancel: {
            server.stop(gracePeriod: .zero)
        }
        if case .timedOut(let inFlight) = outcome {
            logger.warning("exiting with \(inFlight) requests cut short after the \(grace) grace period")
        }
        sessions.outOfProcess.closeAll()
    }

    /// Dispatches one request and writes its response. Runs on a worker thread.
    func respond(to fastCGI: FastCGIRequest, writer: inout FastCGIResponseWriter) {
        let id = requestCounter.wrappingAdd(1, ordering: .relaxed).newValue
        let timed = configuration.accessLog || logger.logLevel <= .debug
        let start = timed ? ContinuousClock.now : nil
        let uri = fastCGI.params["REQUEST_URI"] ?? "-"
        let outcome = dispatch(fastCGI, id: id, uri: uri)
        let status = write(outcome.response, to: &writer, request: id, uri: uri)
        statusClasses.count(status.code)
        guard let start else { return }
        let elapsed = (ContinuousClock.now - start).components
        let milliseconds = Double(elapsed.seconds) * 1000 + Double(elapsed.attoseconds) / 1e15
        if configuration.accessLog {
            logger.info("\(AccessLogLine({ fastCGI.params[$0] }, status: status.code, bytes: writer.bytesWritten, sessionID: outcome.sessionID, request: id, milliseconds: milliseconds))")
        } else {
            let method = fastCGI.params["REQUEST_METHOD"] ?? "-"
            logger.debug("\(method) \(uri.prefix(200)) \(status.code) \(writer.bytesWritten)B \(milliseconds.formatted(.number.precision(.fractionLength(3))))ms\(outcome.note.map { " " + $0 } ?? "")", metadata: ["request": "\(id)"])
        }
    }

    /// Runs one request through the host's whole path (URL limits, configuration, routing,
    /// sessions, handler) without a socket, for SessionHostTesting's client.
    package func response(to fastCGI: FastCGIRequest) -> Response {
        let id = requestCounter.wrappingAdd(1, ordering: .relaxed).newValue
        return dispatch(fastCGI, id: id, uri: fastCGI.params["REQUEST_URI"] ?? "-").response
    }

    /// Ends expired sessions now (raising Session_End), as the maintenance service does every
    /// `expiryCheckInterval`: SessionHostTesting calls it after moving its clock.
    package func removeExpiredSessions() {
        sessions.removeExpired()
    }

    /// What a request was answered with, and what its access line needs.
    private struct Dispatched {
        var response: Response
        /// The ASP.NET session the request had, if any.
        var sessionID: String?
        /// Why it was answered early (debug lines).
        var note: String?
    }

    /// Routes the request and runs its handler with its sessions.
    private func dispatch(_ fastCGI: FastCGIRequest, id: UInt64, uri: String) -> Dispatched {
        let method = fastCGI.params["REQUEST_METHOD"] ?? "-"
        do {
            var request = try Request(fastCGI)
            request.id = id
            request.hostLogger = logger
            if let statusPath = configuration.statusPath, request.path == statusPath {
                return Dispatched(response: statusPage(request), note: "status page")
            }
            if let excess = urlLimitExceeded(request) {
                logger.info("request path over the limit", metadata: ["request": "\(id)", "reason": "\(excess)"])
                return Dispatched(response: ErrorPage.response(.uriTooLong, detail: "The request address is longer than this server accepts."), note: "path over the limit")
            }
            let site = request.cgiParams["SESSIONHOST_SITE"].map { Int($0).map(SiteSelector.id) ?? .name($0) } ?? configuration.site
            switch settings(for: &request, site: site) {
            case .success(let settings):
                request.configuration = settings
                request.configurationStore = configurationStore
            case .failure(let errors):
                // The store logged the errors when it read them.
                let details = configuration.configurationErrorDetails
                let show = details == .everyone || (details == .localRequests && Self.isLoopback(request.remoteAddress))
                return Dispatched(response: ErrorPage.configurationError(errors, details: show, reference: id), note: "configuration error")
            }
            let route: Routes.Route
            switch routes.match(request.path, method: request.method) {
            case .route(let found): route = found
            case .notFound:
                return Dispatched(response: ErrorPage.response(.notFound, detail: "There is nothing at this address."))
            case .methodNotAllowed(let allowed):
                var page = ErrorPage.response(.methodNotAllowed, detail: "This address does not accept \(request.method) requests.")
                page.headers[.allow] = allowed.joined(separator: ", ")
                return Dispatched(response: page, note: "method not allowed")
            }
            switch sessions.begin(&request, needs: route.sessions, requestID: id) {
            case .respond(let early):
                return Dispatched(response: early, sessionID: request.session?.sessionID)
            case .proceed(let ticket):
                do {
                    let answer = try run(route.handler, request)
                    return Dispatched(response: sessions.end(ticket, response: answer, failed: false, requestID: id) ?? answer, sessionID: request.session?.sessionID)
                } catch {
                    // The handler failed: its session changes are discarded, locks released.
                    sessions.end(ticket, response: nil, failed: true, requestID: id)
                    throw error
                }
            }
        } catch let error as RequestError {
            logger.info("bad request", metadata: ["request": "\(id)", "uri": "\(uri)", "reason": "\(error)"])
            return Dispatched(response: ErrorPage.response(.badRequest, detail: "The request address is malformed."))
        } catch let error as any HTTPResponseError {
            return Dispatched(response: answer(error, id: id, method: method, uri: uri), note: "handler threw \(error.status.code)")
        } catch {
            logger.error("handler failed", metadata: ["request": "\(id)", "method": "\(method)", "uri": "\(uri)", "error": "\(String(reflecting: error))"])
            return Dispatched(response: ErrorPage.response(.internalServerError, detail: "The server could not complete this request.", reference: id))
        }
    }

    /// The page of an error that picks its status: a client error is the handler's answer
    /// (logged at debug); a server error is logged as a failure, and its page has a reference.
    private func answer(_ error: any HTTPResponseError, id: UInt64, method: String, uri: String) -> Response {
        let serverError = error.status.kind == .serverError
        if serverError {
            logger.error("handler failed", metadata: ["request": "\(id)", "method": "\(method)", "uri": "\(uri)", "error": "\(String(reflecting: error))"])
        } else {
            logger.debug("handler answered \(error.status.code)", metadata: ["request": "\(id)", "error": "\(String(reflecting: error))"])
        }
        var page = ErrorPage.response(error.status, detail: error.message ?? Self.sentence(for: error.status), reference: serverError ? id : nil)
        // The error's fields replace the page's of the same name, all of them (two challenges
        // of WWW-Authenticate stay two).
        for name in Set(error.headers.map(\.name)) { page.headers[fields: name] = error.headers[fields: name] }
        return page
    }

    /// What an error page says when the error brings no message.
    static func sentence(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 400: "The request is not valid."
        case 401: "Authentication is required."
        case 403: "Access to this address is not allowed."
        case 404: "There is nothing at this address."
        case 409: "The request conflicts with the current state of the resource."
        case 503: "The service is unavailable right now."
        case 500..<600: "The server could not complete this request."
        default: status.reasonPhrase + "."
        }
    }

    /// The configuration of the request's URL. A cookieless-session segment (`/app/(S(id))/…`)
    /// right after the application path of an application with cookieless sessions is taken out
    /// of the path first, so routing and handlers see the path without it.
    private func settings(for request: inout Request, site: SiteSelector) -> ConfigurationStore.Lookup {
        if let found = CookielessData.extract(from: request.path) {
            let lookup = configurationStore.configuration(site: site, path: found.stripped)
            if case .success(let settings) = lookup, settings.sessionState.cookieless != .useCookies,
               settings.application.path.lowercased() == found.before.lowercased() {
                request.path = found.stripped
                request.cookieless = found.data
                return lookup
            }
        }
        return configurationStore.configuration(site: site, path: request.path)
    }

    /// Why the request's path is over the limits (`maxURLLength`, `maxURLSegments`), or nil.
    /// Checked before the configuration lookup, so no path is too long to be answered at once.
    private func urlLimitExceeded(_ request: Request) -> String? {
        let rawLength = request.rawURI.utf8.firstIndex(of: UInt8(ascii: "?")).map { request.rawURI.utf8.distance(from: request.rawURI.utf8.startIndex, to: $0) } ?? request.rawURI.utf8.count
        if rawLength > configuration.maxURLLength {
            return "\(rawLength) bytes; the limit is \(configuration.maxURLLength)"
        }
        // The decoded path starts with `/`, has no empty segments and may end with `/`.
        let slashes = request.path.utf8.count { $0 == UInt8(ascii: "/") }
        let segments = request.path.hasSuffix("/") ? slashes - 1 : slashes
        if segments > configuration.maxURLSegments {
            return "\(segments) segments; the limit is \(configuration.maxURLSegments)"
        }
        return nil
    }

    static func isLoopback(_ address: String) -> Bool {
        address.hasPrefix("127.") || address == "::1" || address.hasPrefix("::ffff:127.")
    }

    private func run(_ handler: Routes.Handler, _ request: Request) throws -> Response {
        switch handler {
        case .sync(let handler):
            return try handler(request)
        case .async(let handler):
            // The worker thread blocks here, not a thread of the cooperative pool.
            let result = Locked<Result<Response, any Error>?>(nil)
            let done = DispatchSemaphore(value: 0)
            Task {
                let outcome: Result<Response, any Error>
                do { outcome = .success(try await handler(request)) } catch { outcome = .failure(error) }
                result.withLock { $0 = outcome }
                done.signal()
            }
            BlockingHint.willBlock()
            done.wait()
            return try result.withLock { $0! }.get()
        }
    }

    /// Writes the CGI response head and body; returns the status sent.
    private func write(_ response: Response, to writer: inout FastCGIResponseWriter, request id: UInt64, uri: String) -> HTTPResponse.Status {
        // The CGI head, built as bytes: one buffer, no intermediate strings.
        var head: [UInt8] = []
        head.reserveCapacity(256)
        func line(_ name: String, _ value: String) {
            head += name.utf8
            head += [UInt8(ascii: ":"), UInt8(ascii: " ")]
            head += value.utf8
            head += [13, 10]
        }
        line("Status", "\(response.status.code) \(response.status.reasonPhrase)")
        for field in response.headers { line(field.name.canonicalName, field.value) }
        for cookie in response.cookies { line("Set-Cookie", cookie.headerValue) }
        switch response.body.storage {
        case .bytes(let bytes):
            if response.headers[.contentLength] == nil { line("Content-Length", String(bytes.count)) }
            head += [13, 10]
            guard writer.write(head), !bytes.isEmpty else { break }
            writer.write(bytes)
        case .stream(let produce):
            head += [13, 10]
            guard writer.write(head) else { break }
            var stream: any ResponseBodyWriter = StreamWriter(fastCGI: writer)
            do {
                try produce(&stream)
                writer = (stream as! StreamWriter).fastCGI
            } catch is ClientGone {
                writer = (stream as! StreamWriter).fastCGI
            } catch {
                writer = (stream as! StreamWriter).fastCGI
                logger.error("streamed body failed after the headers were sent; aborting the connection", metadata: [
                    "request": "\(id)", "uri": "\(uri)", "error": "\(String(reflecting: error))",
                ])
                writer.abortConnection()
            }
        }
        return response.status
    }
}

/// Passes a streamed body to the FastCGI writer.
private struct StreamWriter: ResponseBodyWriter {
    var fastCGI: FastCGIResponseWriter

    mutating func write(_ bytes: [UInt8]) throws(ClientGone) {
        guard fastCGI.write(bytes) else { throw ClientGone() }
    }

    mutating func write(_ text: String) throws(ClientGone) {
        guard fastCGI.write(text) else { throw ClientGone() }
    }

    mutating func flush() throws(ClientGone) {
        guard fastCGI.flush() else { throw ClientGone() }
    }
}

/// The background work of the session stores, as a ServiceLifecycle service of the app: every
/// `interval` it ends expired in-process sessions (raising Session_End) and closes out-of-process
/// stores that a configuration change left unused. It stops at graceful shutdown, after the
/// host (put it before the host in the `ServiceGroup`: services stop in reverse order).
public final class SessionMaintenance: Service, Sendable {
    let sessions: SessionManager
    let interval: Duration
    let logger: Logger

    init(sessions: SessionManager, interval: Duration, logger: Logger) {
        self.sessions = sessions
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do { try await Task.sleep(for: self.interval) } catch { break }
                self.sessions.removeExpired()
            }
        }
        sessions.outOfProcess.closeAll()
    }
}
