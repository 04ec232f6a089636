import FastCGI
import Foundation
import Locking
import Synchronization

/// The status page of `--status-path` (README, Status page and metrics).
extension HostServer {
    /// The status page: JSON, or Prometheus text with `format=prometheus`; only for loopback
    /// clients and `statusAllowList`.
    func statusPage(_ request: Request) -> Response {
        guard configuration.statusAllowList.allows(request.remoteAddress) else {
            logger.notice("status page refused", metadata: ["request": "\(request.id)", "client": "\(request.remoteAddress)"])
            return ErrorPage.response(.forbidden, detail: "The status page answers only local clients and those of --status-allow.")
        }
        let snapshot = status()
        if request.query("format") == "prometheus" {
            return Response(headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"], body: .string(snapshot.prometheus()))
        }
        do {
            return Response(headers: [.contentType: "application/json", .cacheControl: "no-store"], body: .bytes(try snapshot.json()))
        } catch {
            // Numbers and strings only: not expected, and logged if it ever happens.
            logger.error("the status page could not be encoded", metadata: ["request": "\(request.id)", "error": "\(error)"])
            return ErrorPage.response(.internalServerError, detail: "The status could not be encoded.", reference: request.id)
        }
    }

    /// The worker's numbers now.
    func status() -> HostStatus {
        let transport = transport.withLock { $0 }?.statistics
        var byStatus = statusClasses.snapshot
        byStatus["4xx", default: 0] += transport?.bodiesRefused ?? 0
        let configurationState = configurationStore.statistics
        let elapsed = (ContinuousClock.now - startedInstant).components
        return HostStatus(
            version: SessionHostVersion.current, pid: getpid(), startTime: startedAt.ISO8601Format(), startTimeSeconds: startedAt.timeIntervalSince1970,
            uptimeSeconds: Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18,
            threads: .init(total: transport?.threads ?? configuration.server.threadCount, busy: transport?.busyThreads ?? 0),
            connections: .init(open: transport?.connectionsOpen ?? 0, parked: transport?.connectionsParked ?? 0),
            requests: .init(total: transport?.requests ?? byStatus.values.reduce(0, +), byStatus: byStatus, headTimeouts: transport?.headTimeouts ?? 0,
                            bodyTimeouts: transport?.bodyTimeouts ?? 0, bodiesRefused: transport?.bodiesRefused ?? 0),
            sessions: sessions.statuses(),
            configuration: .init(reloads: configurationState.generation, errors: configurationState.errors.map {
                .init(file: $0.location.file, line: $0.location.line, attribute: $0.attribute, message: $0.message)
            }))
    }
}

/// Responses by status class: a relaxed atomic add per request, read by the status page.
final class StatusClassCounters: Sendable {
    private let informational = Atomic<UInt64>(0)
    private let successful = Atomic<UInt64>(0)
    private let redirection = Atomic<UInt64>(0)
    private let clientError = Atomic<UInt64>(0)
    private let serverError = Atomic<UInt64>(0)

    func count(_ code: Int) {
        switch code {
        case 100..<200: informational.wrappingAdd(1, ordering: .relaxed)
        case 200..<300: successful.wrappingAdd(1, ordering: .relaxed)
        case 300..<400: redirection.wrappingAdd(1, ordering: .relaxed)
        case 400..<500: clientError.wrappingAdd(1, ordering: .relaxed)
        default: serverError.wrappingAdd(1, ordering: .relaxed)
        }
    }

    var snapshot: [String: UInt64] {
        ["1xx": informational.load(ordering: .relaxed), "2xx": successful.load(ordering: .relaxed), "3xx": redirection.load(ordering: .relaxed),
         "4xx": clientError.load(ordering: .relaxed), "5xx": serverError.load(ordering: .relaxed)]
    }
}
