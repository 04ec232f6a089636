import Foundation
import Glibc
import Testing

/// Connections that are idle, or that stall in the middle of a request, hold no worker thread:
/// `--threads` bounds the requests served at once, not the connections.
@Suite(.serialized)
struct IdleConnectionTests {
    @Test func idleKeptConnectionsDoNotHoldThreads() throws {
        let fixture = try Fixture(nginx: false, workerArguments: ["--threads", "4"])
        defer { fixture.stop() }
        var kept: [FastCGIConnection] = []
        for index in 0..<32 {
            let connection = try FastCGIConnection(path: fixture.socketPath)
            #expect(try connection.request("/echo?first=\(index)", keepConnection: true).status == 200)
            kept.append(connection)
        }
        // 32 idle connections, 4 threads: a new connection is still answered …
        #expect(try FastCGIConnection(path: fixture.socketPath).request("/echo?new=1").status == 200)
        // … and every kept connection can carry another request.
        for (index, connection) in kept.enumerated() {
            let reply = try connection.request("/echo?second=\(index)", keepConnection: true)
            #expect(reply.status == 200)
            #expect(String(decoding: reply.body, as: UTF8.self).contains("query: second=\(index)"))
        }
    }

    /// Only `--active-threads` threads take connections while requests are quick; requests that
    /// block bring in more threads, up to `--threads`. Six requests blocked at once (each waits
    /// for a marker file) with one active thread: all six run, and a new request is answered
    /// meanwhile.
    @Test func blockedRequestsBringInMoreThreads() throws {
        let fixture = try Fixture(nginx: false, workerArguments: ["--threads", "8", "--active-threads", "1"])
        defer { fixture.stop() }
        let marker = fixture.directory.appending(path: "release").path
        var blocked: [(connection: FastCGIConnection, stdout: [UInt8])] = []
        for _ in 0..<6 {
            let connection = try FastCGIConnection(path: fixture.socketPath)
            try connection.send(FastCGIConnection.requestBytes(uri: "/slow?marker=\(marker)", keepConnection: true))
            var stdout: [UInt8] = []
            while !String(decoding: stdout, as: UTF8.self).contains("started") {
                let record = try #require(try connection.readRecord())
                if record.type == FastCGIConnection.stdout { stdout += record.content }
            }
            blocked.append((connection, stdout))
        }
        #expect(try FastCGIConnection(path: fixture.socketPath).request("/echo?while-blocked=1").status == 200)
        _ = FileManager.default.createFile(atPath: marker, contents: nil)
        for (connection, stdout) in blocked {
            let rest = try connection.readReply()
            #expect(String(decoding: stdout + rest.stdout, as: UTF8.self).hasSuffix("started\nfinished\n"))
            // Each thread gives its extra turn back and the connection is served again.
            #expect(try connection.request("/echo?after=1", keepConnection: true).status == 200)
        }
    }

    @Test func pastMaxConnectionsNewConnectionsWaitInTheBacklog() throws {
        let fixture = try Fixture(nginx: false, workerArguments: ["--threads", "2", "--max-connections", "4"])
        defer { fixture.stop() }
        var kept: [FastCGIConnection] = []
        for index in 0..<4 {
            let connection = try FastCGIConnection(path: fixture.socketPath)
            #expect(try connection.request("/echo?kept=\(index)", keepConnection: true).status == 200)
            kept.append(connection)
        }
        // A fifth connection is accepted by the kernel (backlog) but not by the worker …
        let waiting = try FastCGIConnection(path: fixture.socketPath)
        try waiting.send(FastCGIConnection.requestBytes(uri: "/echo?waiting=1", keepConnection: false))
        try fixture.waitUntil("the limit is logged") { fixture.workerLog.contains("4 connections open (--max-connections)") }
        // … until one of the four closes.
        kept.removeFirst()
        let reply = try waiting.readReply()
        #expect(reply.status == 200)
        #expect(String(decoding: reply.body, as: UTF8.self).contains("query: waiting=1"))
        #expect(try kept[0].request("/echo?again=1", keepConnection: true).status == 200)
    }

    @Test func stalledHeadsHoldNoThreadAndAreClosedAfterTheTimeout() throws {
        let fixture = try Fixture(nginx: false, workerArguments: ["--threads", "4", "--request-head-timeout", "3"])
        defer { fixture.stop() }
        let head = FastCGIConnection.requestBytes(uri: "/echo", keepConnection: false)
        var stalled: [FastCGIConnection] = []
        for _ in 0..<8 {
            let connection = try FastCGIConnection(path: fixture.socketPath)
            try connection.send(Array(head[..<(head.count / 2)]))
            stalled.append(connection)
        }
        // Eight half heads on four threads: normal requests are answered meanwhile, while the
        // stalled connections are all still open (nothing has been sent back to them).
        for index in 0..<8 {
            #expect(try FastCGIConnection(path: fixture.socketPath).request("/echo?normal=\(index)").status == 200)
        }
        #expect(!fixture.workerLog.contains("the request head stalled"))
        for connection in stalled { #expect(try connection.isClosedByServer()) }
        #expect(fixture.workerLog.contains("the request head stalled for longer than 3.0 seconds"))
    }

    @Test func aStalledBodyHoldsNoThreadAndIsClosedAfterTheTimeout() throws {
        let fixture = try Fixture(nginx: false, workerArguments: ["--threads", "1", "--request-body-timeout", "2"])
        defer { fixture.stop() }
        let stalled = try FastCGIConnection(path: fixture.socketPath)
        let params = FastCGIConnection.pairs(FastCGIConnection.standardParams(method: "POST", uri: "/body", bodyLength: 100))
        try stalled.send(FastCGIConnection.begin(keepConnection: false) + FastCGIConnection.record(type: FastCGIConnection.params, content: params)
            + FastCGIConnection.record(type: FastCGIConnection.params) + FastCGIConnection.record(type: FastCGIConnection.stdin, content: Array(repeating: 1, count: 40)))
        // The only thread serves another connection while the body is stalled.
        let reply = try FastCGIConnection(path: fixture.socketPath).request("/body", method: "POST", body: [1, 2, 3])
        #expect(reply.status == 200 && reply.body == [1, 2, 3])
        #expect(!fixture.workerLog.contains("the request body stalled"))
        #expect(try stalled.isClosedByServer())
        #expect(fixture.workerLog.contains("the request body stalled for longer than 2.0 seconds"))
    }

    @Test func moreKeptNginxConnectionsThanThreads() throws {
        let fixture = try Fixture(workerArguments: ["--threads", "4"], nginxReplacements: [
            ("worker_processes 1;", "worker_processes 2;"), ("keepalive 16;", "keepalive 32;"),
        ])
        defer { fixture.stop() }
        let failures = concurrentClients(port: fixture.port, clients: 64, requests: 20)
        #expect(failures.isEmpty, "\(failures.prefix(5))")
        let errors = (try? String(contentsOf: fixture.directory.appending(path: "logs/error.log"), encoding: .utf8)) ?? ""
        #expect(!errors.contains("upstream timed out"))
    }
}
