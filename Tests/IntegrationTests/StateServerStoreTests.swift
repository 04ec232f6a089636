import Foundation
import Logging
import SessionState
import SessionStateTesting
import Testing
@testable import StateServerSessionStore

/// The worker's StateServer store against a real `session-state-server`: the store contract,
/// ASP.NET's keys, and a server that is down or silent.
@Suite(.serialized)
struct StateServerStoreTests {
    static let logger = Logger(label: "test")

    static func store(port: Int, timeout: Duration = .seconds(5), compression: Bool = false) -> StateServerSessionStore {
        StateServerSessionStore(
            configuration: .init(address: StateServerAddress(host: "127.0.0.1", port: port), networkTimeout: timeout, compressionEnabled: compression),
            logger: logger)
    }

    @Test(arguments: [false, true])
    func theStoreKeepsTheContract(compression: Bool) throws {
        let server = try StateServerProcess()
        defer { server.stop() }
        try SessionStateStoreConformance(store: Self.store(port: server.port, compression: compression)).checkAll()
    }

    @Test func connectionStringsAreParsedAsASPNETDoes() throws {
        #expect(try StateServerAddress(connectionString: "tcpip=127.0.0.1:42424") == StateServerAddress(host: "127.0.0.1", port: 42424))
        #expect(try StateServerAddress(connectionString: "tcpip=loopback:42424") == StateServerAddress(host: "127.0.0.1", port: 42424))
        #expect(try StateServerAddress(connectionString: "tcpip=[::1]:9000") == StateServerAddress(host: "::1", port: 9000))
        #expect(try StateServerAddress(connectionString: "tcpip=state.example:1") == StateServerAddress(host: "state.example", port: 1))
        for bad in ["TCPIP=127.0.0.1:42424", "tcpip=127.0.0.1", "tcpip=127.0.0.1:70000", "tcpip=::1:42424", "tcpip=:42424", "127.0.0.1:42424", "tcpip=hôst:1", "tcpip=[::1]42424", "tcpip=[localhost]:1"] {
            let error = #expect(throws: SessionStoreError.self, "\(bad)") { try StateServerAddress(connectionString: bad) }
            #expect(error?.kind == .configuration)
            #expect(error?.message.hasPrefix("The <sessionState> stateConnectionString is invalid.") == true)
        }
    }

    /// The resource ASP.NET's `OutOfProcSessionStateStore` requests, for application id
    /// `/LM/W3SVC/1/ROOT/app`: Base64 SHA-256 of the id (computed independently with
    /// `printf %s /LM/W3SVC/1/ROOT/app | openssl dgst -sha256 -binary | base64`).
    @Test func keysAreASPNETs() throws {
        let store = Self.store(port: 1)
        let resource = store.resource(SessionKey(application: "/LM/W3SVC/1/ROOT/app", id: "abcdefghijklmnopqrstuvwx"))
        let hash = Self.sha256Base64("/LM/W3SVC/1/ROOT/app")
        #expect(resource == StateServerSessionStore.urlEncode("/LM/W3SVC/1/ROOT/app(\(hash))/abcdefghijklmnopqrstuvwx"))
        #expect(resource.hasPrefix("%2fLM%2fW3SVC%2f1%2fROOT%2fapp("))
        #expect(!resource.contains("/") && !resource.contains("=") && !resource.contains("+"))
        #expect(StateServerSessionStore.urlEncode("a b/c=d+e(f)*!_.-~é") == "a+b%2fc%3dd%2be(f)*!_.-%7e%c3%a9")
        // An id without the leading `/` gets one.
        #expect(store.resource(SessionKey(application: "LM/W3SVC/1/ROOT/app", id: "x")) == store.resource(SessionKey(application: "/LM/W3SVC/1/ROOT/app", id: "x")))
    }

    static func sha256Base64(_ text: String) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "printf %s '\(text)' | openssl dgst -sha256 -binary | base64"]
        let output = Pipe()
        process.standardOutput = output
        try? process.run()
        process.waitUntilExit()
        return String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func aServerThatIsDownIsUnavailableAndRecovers() throws {
        let port = Sockets.freePort()
        let store = Self.store(port: port, timeout: .seconds(2))
        let key = SessionKey(application: "/LM/W3SVC/1/ROOT", id: ASPNETSessionID.generate())
        let error = #expect(throws: SessionStoreError.self) { try store.getItem(key) }
        #expect(error?.kind == .unavailable)
        #expect(error?.isTransient == true)
        // Started: the same store works without a restart.
        let server = try StateServerProcess(port: port)
        defer { server.stop() }
        try store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(timeout: 20), lockID: nil, newItem: true)
        guard case .found = try store.getItem(key) else {
            Issue.record("not found after the server came up")
            return
        }
        // Stopped again: kept connections fail over to a new attempt, which fails cleanly.
        #expect(server.terminate() == 0)
        #expect((#expect(throws: SessionStoreError.self) { try store.getItem(key) })?.kind == .unavailable)
    }

    /// A server that accepts and never answers: the request fails within the network timeout.
    @Test func aSilentServerTimesOut() throws {
        let listener = Sockets.silentListener()
        defer { close(listener.fd) }
        let port = listener.port
        let store = Self.store(port: port, timeout: .milliseconds(300))
        let start = ContinuousClock.now
        let error = #expect(throws: SessionStoreError.self) { try store.getItem(SessionKey(application: "/x", id: ASPNETSessionID.generate())) }
        #expect(error?.kind == .timeout)
        #expect(ContinuousClock.now - start < .seconds(10))
    }
}
