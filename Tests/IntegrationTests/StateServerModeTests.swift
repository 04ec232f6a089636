import Foundation
import Glibc
import Testing
import Logging
import SessionState
@testable import StateServerSessionStore

/// `mode="StateServer"` through nginx: two workers behind one upstream share sessions through one
/// `session-state-server`; another application of the same workers stays InProc; a state server
/// that is down or silent gives 503, never 500 or a hang.
@Suite(.serialized)
struct StateServerModeTests {
    typealias T = SessionTesting

    /// The session tree with `/ss` on the state server at `port` (network timeout `timeout`).
    static func tree(statePort: Int, timeout: Int = 10) throws -> SessionTree {
        var applications = SessionTree.standardApplications
        applications["/ss"] = SessionTree.webConfig(systemWeb: #"<sessionState mode="StateServer" stateConnectionString="tcpip=127.0.0.1:\#(statePort)" stateNetworkTimeout="\#(timeout)" />"#)
        return try SessionTree(applications: applications)
    }

    @Test func twoWorkersShareSessionsThroughOneStateServer() throws {
        let state = try StateServerProcess()
        defer { state.stop() }
        let tree = try Self.tree(statePort: state.port)
        let workers = try TwoProbeWorkers(tree)
        defer { workers.stop() }
        try workers.checkSharedSessions("/ss", mode: "StateServer")
        #expect(state.process.isRunning)
    }

    @Test func aStateServerThatIsDownGives503AndRecovers() throws {
        let state = try StateServerProcess()
        let port = state.port
        let tree = try Self.tree(statePort: port)
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        #expect(try browser.probe("/ss/probe?set=k&v=1").aspNet?.mode == "StateServer")
        // Killed mid-load: requests holding their session when it dies cannot save it, and say
        // so with 503 (never 500, never a hang, never a 200 for a lost write).
        var busy: [Browser] = []
        for _ in 0..<10 {
            let other = Browser(fixture)
            try other.probe("/ss/probe?set=n&v=0")
            busy.append(other)
        }
        let inFlight = busy.map { T.background(port: fixture.port, "/ss/probe?incr=n&sleep=400", cookie: $0.cookieHeader) }
        T.pause(150)
        state.stop()
        let statuses = try inFlight.map { try $0.value().status }
        #expect(statuses.allSatisfy { $0 == 503 }, "\(statuses)")
        // Down: 503 with Retry-After, the worker stays up, other applications are served.
        for _ in 0..<5 {
            let reply = try browser.get("/ss/probe?get=k")
            #expect(reply.status == 503)
            #expect(reply.headers("retry-after").first == "5")
            #expect(!reply.text.contains("127.0.0.1:\(port)"))  // no internals on the page
        }
        #expect(try Browser(fixture).probe("/probe?set=a&v=1").aspNet?.mode == "InProc")
        #expect(fixture.worker.isRunning)
        #expect(fixture.workerLog.contains("Unable to make the session state request to the session state server"))
        // Back (sessions were in the dead server's memory, so the old one is gone): new ones work.
        let restarted = try StateServerProcess(port: port)
        defer { restarted.stop() }
        let fresh = Browser(fixture)
        #expect(try fresh.probe("/ss/probe?set=k&v=2").aspNet?.mode == "StateServer")
        #expect(try fresh.probe("/ss/probe?get=k").get == "2")
        #expect(fixture.workerLog.contains("the session state server answers again"))
    }

    /// `partitionResolverType`: the probe's resolver spreads sessions over two state servers by
    /// the first character of the ID; each session is found on the server it names, both are used.
    @Test func aPartitionResolverSpreadsSessionsOverStateServers() throws {
        let first = try StateServerProcess()
        defer { first.stop() }
        let second = try StateServerProcess()
        defer { second.stop() }
        var applications = SessionTree.standardApplications
        applications["/part"] = SessionTree.webConfig(systemWeb: #"<sessionState mode="StateServer" partitionResolverType="SessionProbe.PartitionResolver" />"#)
        let tree = try SessionTree(applications: applications)
        let partitions = ["tcpip=127.0.0.1:\(first.port)", "tcpip=127.0.0.1:\(second.port)"]
        let fixture = try Fixture.sessions(tree, environment: ["PROBE_PARTITIONS": partitions.joined(separator: ",")])
        defer { fixture.finish() }
        try fixture.waitUntil("the startup check finishes") { fixture.workerLog.contains("configuration check finished") }
        #expect(!fixture.workerLog.contains("partition"), "\(fixture.workerLog)")
        let store = StateServerSessionStore(configuration: .init(address: StateServerAddress(host: "127.0.0.1", port: 1)), logger: Logger(label: "test"))
        var used = Set<Int>()
        for index in 0..<12 {
            let browser = Browser(fixture)
            let answer = try browser.probe("/part/probe?set=n&v=\(index)")
            let id = try #require(answer.aspNet?.id)
            #expect(try browser.probe("/part/probe?get=n").get == "\(index)")
            let expected = Int(id.utf8.first!) % 2
            let resource = store.resource(SessionKey(application: "/LM/W3SVC/1/ROOT/part", id: id))
            #expect(try first.connect().request("GET", resource).status == (expected == 0 ? 200 : 404))
            #expect(try second.connect().request("GET", resource).status == (expected == 1 ? 200 : 404))
            used.insert(expected)
        }
        #expect(used.count == 2)
        // A worker without the resolver: a configuration error with file and line.
        let plain = try Fixture.sessions(tree, worker: "TestWorker")
        defer { plain.finish() }
        try plain.waitUntil("the startup check finishes") { plain.workerLog.contains("configuration check finished") }
        #expect(plain.workerLog.contains("www/part/web.config"))
    }

    /// A stored session that does not parse: the request gets a 500 page with a reference, the
    /// error names the session (shortened) in the log, nothing is overwritten and the lock the
    /// read took is given back.
    @Test func anUnreadableSessionIs500AndKeptAsItIs() throws {
        let state = try StateServerProcess()
        defer { state.stop() }
        // The tree is kept alive: its deinit removes the configuration folder.
        let tree = try Self.tree(statePort: state.port)
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        let id = try #require(try browser.probe("/ss/probe?set=k&v=1").aspNet?.id)
        let store = StateServerSessionStore(configuration: .init(address: StateServerAddress(host: "127.0.0.1", port: state.port)), logger: Logger(label: "test"))
        let resource = store.resource(SessionKey(application: "/LM/W3SVC/1/ROOT/ss", id: id))
        let raw = try state.connect()
        #expect(try raw.request("PUT", resource, [("Timeout", "20")], body: [1, 2, 3]).status == 200)
        let reply = try browser.get("/ss/probe?set=k&v=2")
        #expect(reply.status == 500)
        #expect(reply.text.contains("Reference"))
        #expect(!reply.text.contains(id))
        #expect(fixture.workerLog.contains("cannot be read"))
        #expect(!fixture.workerLog.contains(id))
        let after = try raw.request("GET", resource)
        #expect(after.status == 200)  // not 423: the lock was given back
        #expect(after.body == [1, 2, 3])
        withExtendedLifetime(tree) {}
    }

    /// A session over the state server's --max-item-size is refused: the request gets an error
    /// page (not a success, not an outage), and the session's lock is given back, so the next
    /// request of the session is answered at once with the session as it was.
    @Test func aRefusedSaveGivesTheLockBack() throws {
        let state = try StateServerProcess(arguments: ["--max-item-size", "1K"])
        defer { state.stop() }
        let tree = try Self.tree(statePort: state.port)
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        try browser.probe("/ss/probe?set=k&v=small")
        let refused = try browser.get("/ss/probe?set=big&v=" + String(repeating: "x", count: 4000))
        #expect(refused.status == 500)
        #expect(!fixture.workerLog.contains("Unable to make the session state request"))
        let start = Date()
        let after = try browser.probe("/ss/probe?get=k")
        #expect(after.get == "small")
        #expect(after.aspNetBefore?.keys["big"] == nil)
        #expect(Date().timeIntervalSince(start) < 20)  // not the 110 s execution timeout
        withExtendedLifetime(tree) {}
    }

    /// A server that accepts and never answers: 503 within stateNetworkTimeout (1 s here).
    @Test func aSilentStateServerGives503WithinTheNetworkTimeout() throws {
        let listener = Sockets.silentListener()
        defer { close(listener.fd) }
        let tree = try Self.tree(statePort: listener.port, timeout: 1)
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let start = Date()
        let reply = try Browser(fixture).get("/ss/probe?set=k&v=1")
        #expect(reply.status == 503)
        #expect(Date().timeIntervalSince(start) < 10)
        #expect(fixture.worker.isRunning)
    }
}
