import Foundation
import Glibc
import Testing

/// The worker behind a real Apache httpd (mpm_event, mod_proxy_fcgi, `enablereuse=on`) with the
/// shipped `nginx/apache-proxy-fcgi.conf`. Apache writes BEGIN_REQUEST on its own and keeps a
/// pool of connections per child process, which is what broke the worker before it parsed
/// records itself and parked idle connections.
@Suite(.serialized)
struct ApacheTests {
    @Test func sequentialRequestsGetTheirAnswers() throws {
        let fixture = try Fixture(frontEnd: .apache)
        defer { fixture.stop() }
        for index in 0..<200 {
            let reply = try HTTPConnection(port: fixture.port).send("GET", "/echo?n=\(index)")
            #expect(reply.status == 200)
            #expect(reply.text.contains("query: n=\(index)"))
        }
        #expect(!fixture.apacheErrors.contains("AH01"), "\(fixture.apacheErrors.suffix(2000))")
    }

    @Test func concurrentKeepAliveClientsGetNoErrors() throws {
        let fixture = try Fixture(frontEnd: .apache, workerArguments: ["--threads", "4"])
        defer { fixture.stop() }
        // Apache closes a client connection after 100 requests (MaxKeepAliveRequests).
        let failures = concurrentClients(port: fixture.port, clients: 16, requests: 250, reconnectEvery: 50)
        // 4000 requests through Apache's reused connections: no 5xx, every body right, and no
        // upstream error or timeout in Apache's log.
        #expect(failures.isEmpty, "\(failures.prefix(5))")
        #expect(!fixture.apacheErrors.contains("AH01"), "\(fixture.apacheErrors.suffix(2000))")
        #expect(!fixture.apacheErrors.lowercased().contains("timeout"))
    }

    @Test func largePostBodiesArriveWhole() throws {
        let fixture = try Fixture(frontEnd: .apache)
        defer { fixture.stop() }
        let body = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let connection = try fixture.connection()
        for _ in 0..<3 {
            let reply = try connection.send("POST", "/body", headers: [("Content-Type", "application/octet-stream")], body: body)
            #expect(reply.status == 200)
            #expect(reply.body == body)
        }
    }

    @Test func theSessionCookieRoundTrips() throws {
        let tree = try SessionTree()
        let fixture = try Fixture(frontEnd: .apache, worker: "session-probe", workerArguments: ["--config-dir", tree.configDirectory])
        defer { fixture.stop() }
        let browser = Browser(fixture)
        let stored = try browser.probe("/probe?set=a&v=1")
        let id = try #require(stored.aspNet?.id)
        #expect(stored.setCookie("ASP.NET_SessionId") != nil)
        let next = try browser.probe("/probe?get=a")
        #expect(next.aspNet?.id == id)
        #expect(next.get == "1")
    }

    /// The shipped virtual host keeps the status path to local clients (`Require local`); from
    /// 127.0.0.1 it passes, with the client's address, to the worker's own check.
    @Test func theStatusPagePassesForLocalClients() throws {
        let tree = try SessionTree()
        let fixture = try Fixture(frontEnd: .apache, worker: "session-probe", workerArguments: ["--config-dir", tree.configDirectory, "--status-path", "/sessionhost-status"])
        defer { fixture.stop() }
        let reply = try HTTPConnection(port: fixture.port).send("GET", "/sessionhost-status?format=prometheus")
        #expect(reply.status == 200)
        let metrics = try PrometheusParser.parse(reply.text)
        #expect(metrics.types["sessionhost_requests_total"] == "counter")
    }
}
