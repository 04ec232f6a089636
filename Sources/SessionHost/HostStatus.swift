import Foundation
import StatusExposition
import SessionState
import WebConfiguration

/// What the status page (`serve --status-path`) shows: the worker's numbers at one moment, as
/// JSON or as Prometheus text. php-fpm's `pm.status_path` is the model: a page an operator or a
/// monitoring agent reads from the same host.
struct HostStatus: Encodable {
    struct Threads: Encodable {
        var total: Int
        var busy: Int
    }

    struct Connections: Encodable {
        var open: Int
        var parked: Int
    }

    struct Requests: Encodable {
        var total: UInt64
        /// `1xx` … `5xx`; the transport's 413s are in `4xx`.
        var byStatus: [String: UInt64]
        var headTimeouts: UInt64
        var bodyTimeouts: UInt64
        var bodiesRefused: UInt64
    }

    /// One session domain on one store.
    struct SessionStore: Encodable {
        /// `ASP.NET` or `classic ASP`.
        var domain: String
        var mode: String
        /// Where the store keeps sessions (`memory`, a server, a database; never a password).
        var store: String
        /// Sessions held now, where the store knows (InProc); absent otherwise.
        var liveSessions: Int?
        var lockWaits: UInt64
        var lockWaitSeconds: Double
        var queueLimitRefusals: UInt64
        var staleLocksBroken: UInt64
        var storeCalls: UInt64
        var storeErrors: UInt64
        var storeSeconds: Double

        /// Whether `other` has the same labels (domain, mode, store).
        func isSameStore(_ other: SessionStore) -> Bool {
            domain == other.domain && mode == other.mode && store == other.store
        }

        /// Adds `other`'s numbers: stores of one place whose other settings differ (two
        /// applications' timeouts, say) are one entry, so that no two Prometheus series share
        /// their labels.
        mutating func add(_ other: SessionStore) {
            if let count = other.liveSessions { liveSessions = (liveSessions ?? 0) + count }
            lockWaits += other.lockWaits
            lockWaitSeconds += other.lockWaitSeconds
            queueLimitRefusals += other.queueLimitRefusals
            staleLocksBroken += other.staleLocksBroken
            storeCalls += other.storeCalls
            storeErrors += other.storeErrors
            storeSeconds += other.storeSeconds
        }
    }

    struct Configuration: Encodable {
        /// Times the files were read again (a change on disk or SIGHUP).
        var reloads: UInt64
        /// The errors requests ran into since then (what their 500.19 pages showed).
        var errors: [ErrorEntry]
    }

    struct ErrorEntry: Encodable {
        var file: String
        var line: Int
        var attribute: String?
        var message: String
    }

    var version: String
    var pid: Int32
    var startTime: String
    /// The same, in seconds since the Unix epoch.
    var startTimeSeconds: Double
    var uptimeSeconds: Double
    var threads: Threads
    var connections: Connections
    var requests: Requests
    var sessions: [SessionStore]
    var configuration: Configuration

    /// The JSON page: keys sorted, pretty-printed, so that a person reads it as easily as a tool.
    func json() throws(EncodingError) -> [UInt8] {
        try StatusJSON.encode(self)
    }

    /// The same numbers as Prometheus text, metric names prefixed `sessionhost_`.
    func prometheus() -> String {
        var text = PrometheusText(prefix: "sessionhost_")
        text.metric("build_info", .gauge, help: "The worker's version (always 1).", [.init(["version": version], 1)])
        text.metric("start_time_seconds", .gauge, help: "When the worker started, in seconds since the Unix epoch.", startTimeSeconds)
        text.metric("uptime_seconds", .gauge, help: "Seconds since the worker started.", uptimeSeconds)
        text.metric("worker_threads", .gauge, help: "Worker threads (--threads).", Double(threads.total))
        text.metric("worker_threads_busy", .gauge, help: "Worker threads serving a request now.", Double(threads.busy))
        text.metric("connections_open", .gauge, help: "FastCGI connections from the web server open now.", Double(connections.open))
        text.metric("connections_parked", .gauge, help: "Open connections waiting for bytes (idle or mid-request), holding no thread.", Double(connections.parked))
        text.metric("requests_total", .counter, help: "Requests answered, by status class.",
                    requests.byStatus.sorted { $0.key < $1.key }.map { .init(["status_class": $0.key], Double($0.value)) })
        text.metric("request_head_timeouts_total", .counter, help: "Connections closed because a request head stalled past --request-head-timeout.", Double(requests.headTimeouts))
        text.metric("request_body_timeouts_total", .counter, help: "Connections closed because a request body stalled past --request-body-timeout.", Double(requests.bodyTimeouts))
        text.metric("request_bodies_refused_total", .counter, help: "Requests whose body was over --max-body-size (413).", Double(requests.bodiesRefused))
        let labelled = sessions.map { (["domain": $0.domain, "mode": $0.mode, "store": $0.store], $0) }
        text.metric("sessions_live", .gauge, help: "Sessions the store holds now (stores that know without scanning).",
                    labelled.compactMap { labels, store in store.liveSessions.map { .init(labels, Double($0)) } })
        text.metric("session_lock_waits_total", .counter, help: "Requests that waited for a session's lock.", labelled.map { .init($0.0, Double($0.1.lockWaits)) })
        text.metric("session_lock_wait_seconds_total", .counter, help: "Time requests spent waiting for session locks.", labelled.map { .init($0.0, $0.1.lockWaitSeconds) })
        text.metric("session_queue_limit_refusals_total", .counter, help: "Requests refused (503) because too many waited for one session.", labelled.map { .init($0.0, Double($0.1.queueLimitRefusals)) })
        text.metric("session_stale_locks_broken_total", .counter, help: "Session locks held past the execution timeout and broken.", labelled.map { .init($0.0, Double($0.1.staleLocksBroken)) })
        text.metric("session_store_calls_total", .counter, help: "Calls to the session-state store.", labelled.map { .init($0.0, Double($0.1.storeCalls)) })
        text.metric("session_store_errors_total", .counter, help: "Calls to the session-state store that failed.", labelled.map { .init($0.0, Double($0.1.storeErrors)) })
        text.metric("session_store_seconds_total", .counter, help: "Time spent in calls to the session-state store.", labelled.map { .init($0.0, $0.1.storeSeconds) })
        text.metric("configuration_reloads_total", .counter, help: "Times the configuration files were read again.", Double(configuration.reloads))
        text.metric("configuration_errors", .gauge, help: "Configuration errors requests ran into since the last reload.", Double(configuration.errors.count))
        return text.text
    }

}
