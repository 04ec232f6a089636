import Foundation
import Testing

/// `serve --status-path`: the status page through nginx (its numbers move with known traffic),
/// refused to clients that are not local (raw FastCGI with another `REMOTE_ADDR`), and its
/// Prometheus text read by a small parser of the exposition format.
@Suite(.serialized) struct StatusPageTests {
    static let path = "/sessionhost-status"

    static func fixture(_ tree: SessionTree, extra: [String] = []) throws -> Fixture {
        try Fixture.sessions(tree, arguments: ["--status-path", path] + extra)
    }

    static func status(_ fixture: Fixture) throws -> [String: Any] {
        let reply = try fixture.get(path)
        #expect(reply.status == 200)
        #expect(reply.header("content-type") == "application/json")
        return try #require(try JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any])
    }

    static func number(_ object: [String: Any], _ path: String...) -> Double? {
        var current: Any? = object
        for key in path { current = (current as? [String: Any])?[key] }
        return (current as? NSNumber)?.doubleValue
    }

    /// The session store entry of `domain` and `mode`.
    static func store(_ status: [String: Any], domain: String, mode: String) -> [String: Any]? {
        (status["sessions"] as? [[String: Any]])?.first { $0["domain"] as? String == domain && $0["mode"] as? String == mode }
    }

    @Test func requestCountersMoveWithTraffic() throws {
        let tree = try SessionTree()
        let fixture = try Self.fixture(tree)
        defer { fixture.finish() }
        let before = try Self.status(fixture)
        let total = try #require(Self.number(before, "requests", "total"))
        let ok = try #require(Self.number(before, "requests", "byStatus", "2xx"))
        let missing = try #require(Self.number(before, "requests", "byStatus", "4xx"))
        let browser = Browser(fixture)
        for index in 0..<10 { _ = try browser.probe("/probe?set=k&v=\(index)") }
        for _ in 0..<3 { #expect(try fixture.get("/no-such-page").status == 404) }
        let after = try Self.status(fixture)
        // 13 requests, and the first status request; the second counts itself in `total` only
        // (its status is counted once it is sent).
        let accessLog = (try? String(contentsOfFile: fixture.directory.appending(path: "logs/access.log").path, encoding: .utf8)) ?? ""
        #expect(Self.number(after, "requests", "total") == total + 14, "nginx's access log:\n\(accessLog)\nworker stderr:\n\(fixture.workerLog)")
        #expect(Self.number(after, "requests", "byStatus", "2xx") == ok + 11)
        #expect(Self.number(after, "requests", "byStatus", "4xx") == missing + 3)
        #expect((Self.number(after, "threads", "total") ?? 0) >= 1)
        #expect(Self.number(after, "threads", "busy") == 1)
        #expect((Self.number(after, "connections", "open") ?? 0) >= 1)
        #expect((Self.number(after, "uptimeSeconds") ?? 0) > 0)
        let inProc = try #require(Self.store(after, domain: "ASP.NET", mode: "InProc"))
        #expect(inProc["store"] as? String == "memory")
        #expect((inProc["liveSessions"] as? Int) == 1)
        #expect((inProc["storeCalls"] as? Int ?? 0) >= 10)
        #expect(Self.store(after, domain: "classic ASP", mode: "InProc")?["store"] as? String == "memory")
        #expect((after["configuration"] as? [String: Any])?["errors"] as? [Any] != nil)
    }

    @Test func aHeldLockIsCountedAsAWait() throws {
        let tree = try SessionTree()
        let fixture = try Self.fixture(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        _ = try browser.probe("/probe?set=k&v=1")
        var waits = 0.0
        var waited = 0.0
        // Two requests of one session at once: the second waits for the first's lock. A
        // machine too slow to overlap them gets another round.
        for _ in 0..<3 where waits == 0 {
            let pending = (0..<2).map { _ in SessionTesting.background(port: fixture.port, "/probe?sleep=500", cookie: browser.cookieHeader) }
            for request in pending { #expect(try request.value().status == 200) }
            let store = try #require(Self.store(try Self.status(fixture), domain: "ASP.NET", mode: "InProc"))
            waits = (store["lockWaits"] as? NSNumber)?.doubleValue ?? 0
            waited = (store["lockWaitSeconds"] as? NSNumber)?.doubleValue ?? 0
        }
        #expect(waits >= 1)
        #expect(waited > 0.1, "waited \(waited) s")
    }

    @Test func aStoreThatIsDownCountsErrors() throws {
        var applications = SessionTree.standardApplications
        // Nothing listens on port 1.
        applications["/down"] = SessionTree.webConfig(systemWeb: #"<sessionState mode="StateServer" stateConnectionString="tcpip=127.0.0.1:1" stateNetworkTimeout="2" />"#)
        let tree = try SessionTree(applications: applications)
        let fixture = try Self.fixture(tree)
        defer { fixture.finish() }
        let reply = try fixture.get("/down/probe?set=k&v=1")
        #expect(reply.status == 503)
        let store = try #require(Self.store(try Self.status(fixture), domain: "ASP.NET", mode: "StateServer"))
        #expect(store["store"] as? String == "127.0.0.1:1")
        #expect((store["storeErrors"] as? Int ?? 0) >= 1)
        #expect(store["liveSessions"] == nil)
        let text = try fixture.get(Self.path + "?format=prometheus").text
        let metrics = try PrometheusParser.parse(text)
        let errors = metrics.samples.first { $0.name == "sessionhost_session_store_errors_total" && $0.labels["mode"] == "StateServer" }
        #expect((errors?.value ?? 0) >= 1)
    }

    @Test func onlyLocalAndAllowedClientsGetThePage() throws {
        let tree = try SessionTree()
        let fixture = try Self.fixture(tree, extra: ["--status-allow", "203.0.113.0/24", "--status-allow", "2001:db8::7"])
        defer { fixture.finish() }
        func ask(from address: String) throws -> Int? {
            let connection = try FastCGIConnection(path: fixture.socketPath)
            let params = FastCGIConnection.standardParams(uri: Self.path).map { $0.0 == "REMOTE_ADDR" ? ($0.0, address) : $0 }
            var bytes = FastCGIConnection.begin(keepConnection: false)
            bytes += FastCGIConnection.record(type: FastCGIConnection.params, content: FastCGIConnection.pairs(params))
            bytes += FastCGIConnection.record(type: FastCGIConnection.params)
            bytes += FastCGIConnection.record(type: FastCGIConnection.stdin)
            try connection.send(bytes)
            return try connection.readReply().status
        }
        #expect(try ask(from: "127.0.0.1") == 200)
        #expect(try ask(from: "::1") == 200)
        #expect(try ask(from: "203.0.113.77") == 200)
        #expect(try ask(from: "2001:db8::7") == 200)
        #expect(try ask(from: "198.51.100.7") == 403)
        #expect(try ask(from: "203.0.114.1") == 403)
        #expect(try ask(from: "2001:db8::8") == 403)
        #expect(try ask(from: "") == 403)
        try fixture.waitUntil("the refusal is logged") { fixture.workerLog.contains("status page refused") }
        // Off by default: without --status-path the path is an ordinary URL (no route: 404).
        let plain = try Fixture.sessions(tree)
        defer { plain.finish() }
        #expect(try plain.get(Self.path).status == 404)
    }

    @Test func thePrometheusTextParsesAndAgreesWithTheJSON() throws {
        let tree = try SessionTree()
        let fixture = try Self.fixture(tree)
        defer { fixture.finish() }
        _ = try Browser(fixture).probe("/probe?set=k&v=1")
        let reply = try fixture.get(Self.path + "?format=prometheus")
        #expect(reply.status == 200)
        #expect(reply.header("content-type") == "text/plain; version=0.0.4; charset=utf-8")
        let metrics = try PrometheusParser.parse(reply.text)
        #expect(metrics.samples.allSatisfy { $0.name.hasPrefix("sessionhost_") })
        for name in ["requests_total", "worker_threads", "worker_threads_busy", "connections_open", "connections_parked", "uptime_seconds",
                     "session_lock_waits_total", "session_store_calls_total", "session_store_errors_total", "configuration_reloads_total",
                     "request_head_timeouts_total", "request_bodies_refused_total", "sessions_live"] {
            #expect(metrics.types["sessionhost_" + name] != nil, "\(name) missing")
        }
        #expect(metrics.types["sessionhost_requests_total"] == "counter")
        #expect(metrics.types["sessionhost_worker_threads_busy"] == "gauge")
        let ok = try #require(metrics.samples.first { $0.name == "sessionhost_requests_total" && $0.labels["status_class"] == "2xx" })
        let json = try Self.status(fixture)
        // The JSON request came after the text one, which its 2xx count includes.
        #expect(Self.number(json, "requests", "byStatus", "2xx") == ok.value + 1)
        let live = metrics.samples.first { $0.name == "sessionhost_sessions_live" && $0.labels["domain"] == "ASP.NET" && $0.labels["mode"] == "InProc" }
        #expect(live?.value == 1)
        #expect(metrics.samples.first { $0.name == "sessionhost_build_info" }?.labels["version"]?.isEmpty == false)
    }
}

/// Prometheus's text exposition format (0.0.4), read strictly: `# HELP`/`# TYPE` lines, then
/// samples `name{label="value",…} number` whose metric was typed before them; label values
/// with `\\`, `\"` and `\n` escapes.
struct PrometheusParser {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    var types: [String: String] = [:]
    var samples: [Sample] = []

    static func parse(_ text: String) throws -> PrometheusParser {
        var result = PrometheusParser()
        guard text.hasSuffix("\n") else { throw Failure(description: "the text does not end with a line feed") }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            if line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ")
                guard parts.count == 2, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[1]) else { throw Failure(description: "bad TYPE line: \(line)") }
                guard result.types.updateValue(String(parts[1]), forKey: String(parts[0])) == nil else { throw Failure(description: "TYPE twice: \(line)") }
            } else if line.hasPrefix("# HELP ") || line.hasPrefix("#") {
                continue
            } else {
                let sample = try sampleLine(Substring(line))
                guard result.types[sample.name] != nil else { throw Failure(description: "sample before its TYPE: \(line)") }
                result.samples.append(sample)
            }
        }
        return result
    }

    static func sampleLine(_ line: Substring) throws -> Sample {
        guard let nameMatch = line.prefixMatch(of: /[a-zA-Z_:][a-zA-Z0-9_:]*/) else { throw Failure(description: "no metric name: \(line)") }
        var rest = line[nameMatch.range.upperBound...]
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                guard let labelName = rest.prefixMatch(of: /([a-zA-Z_][a-zA-Z0-9_]*)="/) else { throw Failure(description: "bad label in: \(line)") }
                rest = rest[labelName.range.upperBound...]
                var value = ""
                while true {
                    guard let character = rest.first else { throw Failure(description: "unterminated label value: \(line)") }
                    rest = rest.dropFirst()
                    if character == "\"" { break }
                    if character == "\\" {
                        guard let escaped = rest.first else { throw Failure(description: "bad escape: \(line)") }
                        rest = rest.dropFirst()
                        switch escaped {
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        case "n": value.append("\n")
                        default: throw Failure(description: "bad escape \\\(escaped): \(line)")
                        }
                    } else {
                        value.append(character)
                    }
                }
                labels[String(labelName.1)] = value
                if rest.first == "," { rest = rest.dropFirst() }
            }
            rest = rest.dropFirst()
        }
        guard rest.first == " ", let value = Double(rest.dropFirst()) ?? (rest.dropFirst() == "+Inf" ? .infinity : nil) else {
            throw Failure(description: "bad value: \(line)")
        }
        return Sample(name: String(nameMatch.output), labels: labels, value: value)
    }
}
