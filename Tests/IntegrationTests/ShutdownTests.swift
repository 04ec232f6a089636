import Foundation
import Testing

@Suite(.serialized)
struct ShutdownTests {
    /// SIGTERM with a request in flight: the request completes, idle kept connections are
    /// closed, the socket file is removed and the process exits 0.
    @Test func sigtermLetsTheInFlightRequestFinish() throws {
        let fixture = try Fixture(nginx: false)
        defer { fixture.stop() }
        let idle = try FastCGIConnection(path: fixture.socketPath)
        #expect(try idle.request("/echo", keepConnection: true).status == 200)

        let marker = fixture.directory.appending(path: "release").path
        let busy = try FastCGIConnection(path: fixture.socketPath)
        try busy.send(FastCGIConnection.requestBytes(uri: "/slow?marker=\(marker)", keepConnection: true))
        var stdout: [UInt8] = []
        while !String(decoding: stdout, as: UTF8.self).contains("started") {
            let record = try #require(try busy.readRecord())
            if record.type == FastCGIConnection.stdout { stdout += record.content }
        }

        kill(fixture.worker.processIdentifier, SIGTERM)
        // The idle kept connection is closed once shutdown has begun: from here on the slow
        // request is in flight during shutdown.
        #expect(try idle.isClosedByServer())
        FileManager.default.createFile(atPath: marker, contents: nil)
        let rest = try busy.readReply()
        #expect(String(decoding: stdout + rest.stdout, as: UTF8.self).hasSuffix("started\nfinished\n"))
        #expect(rest.protocolStatus == 0)

        #expect(fixture.workerExitStatus() == 0)
        #expect(!FileManager.default.fileExists(atPath: fixture.socketPath))
    }

    /// A request that outlives the grace period does not keep the process alive.
    @Test func gracePeriodBoundsShutdown() throws {
        let fixture = try Fixture(nginx: false, workerArguments: ["--grace-period", "0.2"])
        defer { fixture.stop() }
        let busy = try FastCGIConnection(path: fixture.socketPath)
        let marker = fixture.directory.appending(path: "never").path
        try busy.send(FastCGIConnection.requestBytes(uri: "/slow?marker=\(marker)", keepConnection: false))
        #expect(try !busy.receiveSome().isEmpty)
        kill(fixture.worker.processIdentifier, SIGTERM)
        #expect(fixture.workerExitStatus() == 0, "worker log:\n\(fixture.workerLog)")
        #expect(fixture.workerLog.contains("requests cut short"))
    }

    @Test func listeningTwiceOnOneSocketIsRefused() throws {
        let fixture = try Fixture(nginx: false)
        defer { fixture.stop() }
        let second = Process()
        second.executableURL = Fixture.products.appending(path: "TestWorker")
        second.arguments = ["serve", "--listen", "unix:\(fixture.socketPath)"]
        let errors = Pipe()
        second.standardError = errors
        try second.run()
        second.waitUntilExit()
        #expect(second.terminationStatus != 0)
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(message.contains("another process is accepting on"))
        #expect(try FastCGIConnection(path: fixture.socketPath).request("/echo").status == 200)
    }
}
