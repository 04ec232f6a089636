import Foundation
import Testing

/// Speaks FastCGI straight to the worker's socket, including what nginx never sends. After each
/// case the same worker process must still answer a normal request.
@Suite(.serialized)
final class RawFastCGITests {
    let fixture: Fixture

    init() throws {
        fixture = try Fixture(nginx: false, workerArguments: ["--max-body-size", "64K"])
    }

    deinit {
        fixture.stop()
    }

    /// A fresh connection still gets a normal answer, from the same process.
    func expectWorkerServes() throws {
        #expect(fixture.worker.isRunning)
        let reply = try FastCGIConnection(path: fixture.socketPath).request("/echo?ok=1")
        #expect(reply.status == 200)
        #expect(reply.protocolStatus == 0)
    }

    @Test func getValuesIsAnsweredWithThePoolsLimits() throws {
        let connection = try FastCGIConnection(path: fixture.socketPath)
        let names = FastCGIConnection.pairs([("FCGI_MAX_CONNS", ""), ("FCGI_MAX_REQS", ""), ("FCGI_MPXS_CONNS", ""), ("OTHER", "")])
        try connection.send(FastCGIConnection.record(type: FastCGIConnection.getValues, id: 0, content: names))
        let record = try #require(try connection.readRecord())
        #expect(record.type == FastCGIConnection.getValuesResult)
        // Connections: --max-connections (idle ones hold no thread); requests: --threads.
        #expect(record.content == FastCGIConnection.pairs([("FCGI_MAX_CONNS", "4096"), ("FCGI_MAX_REQS", "8"), ("FCGI_MPXS_CONNS", "0")]))
        // The same connection goes on to carry a request.
        let reply = try connection.request("/echo")
        #expect(reply.status == 200)
    }

    @Test func unknownManagementTypeGetsUnknownType() throws {
        let connection = try FastCGIConnection(path: fixture.socketPath)
        try connection.send(FastCGIConnection.record(type: 42, id: 0))
        let record = try #require(try connection.readRecord())
        #expect(record.type == FastCGIConnection.unknownType)
        #expect(record.content.first == 42)
        try expectWorkerServes()
    }

    @Test(arguments: [UInt16(2), 3, 99])
    func unsupportedRoleIsRefused(role: UInt16) throws {
        let connection = try FastCGIConnection(path: fixture.socketPath)
        try connection.send(FastCGIConnection.begin(role: role, keepConnection: false) + FastCGIConnection.record(type: FastCGIConnection.params))
        let record = try #require(try connection.readRecord())
        #expect(record.type == FastCGIConnection.endRequest)
        #expect(record.content[4] == 3)  // FCGI_UNKNOWN_ROLE
        #expect(try connection.isClosedByServer())
        try expectWorkerServes()
    }

    @Test func truncatedHeaderIsDropped() throws {
        let connection = try FastCGIConnection(path: fixture.socketPath)
        try connection.send([1, 1, 0])
        shutdown(connection.fd, Int32(SHUT_WR))
        #expect(try connection.isClosedByServer())
        try expectWorkerServes()
    }

    @Test func truncatedContentIsDropped() throws {
        let connection = try FastCGIConnection(path: fixture.socketPath)
        let params = FastCGIConnection.record(type: FastCGIConnection.params, content: FastCGIConnection.pairs([("REQUEST_URI", "/echo")]))
        try connection.send(FastCGIConnection.begin(keepConnection: false) + params.prefix(12))
        shutdown(connection.fd, Int32(SHUT_WR))
        #expect(try connection.isClosedByServer())
        try expectWorkerServes()
    }

    /// CVE-2025-23016's shape: lengths that make libfcgi allocate a negative size.
    @Test func paramsClaimingHugeLengthsAreRejected() throws {
        let connection = try FastCGIConnection(path: fixture.socketPath)
        let huge = FastCGIConnection.length(0x7FFF_FFF0) + FastCGIConnection.length(0x7FFF_FFF0) + Array("X".utf8)
        try connection.send(FastCGIConnection.begin(keepConnection: false) + FastCGIConnection.record(type: FastCGIConnection.params, content: huge) + FastCGIConnection.record(type: FastCGIConnection.params))
        #expect(try connection.isClosedByServer())
        #expect(fixture.workerLog.contains("PARAMS with a name-value pair longer than the stream"))
        try expectWorkerServes()
    }

    @Test func getValuesClaimingHugeLengthsIsRejected() throws {
        let connection = try FastCGIConnection(path: fixture.socketPath)
        let huge = FastCGIConnection.length(0x7FFF_FFF0) + FastCGIConnection.length(0x7FFF_FFF0)
        try connection.send(FastCGIConnection.record(type: FastCGIConnection.getValues, id: 0, content: huge))
        #expect(try connection.isClosedByServer())
        try expectWorkerServes()
    }

    @Test func garbageBytesAreDropped() throws {
        let connection = try FastCGIConnection(path: fixture.socketPath)
        try connection.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8) + (0..<2000).map { UInt8(truncatingIfNeeded: $0 &* 97) })
        #expect(try connection.isClosedByServer())
        #expect(fixture.workerLog.contains("unsupported FastCGI protocol version"))
        try expectWorkerServes()
    }

    @Test func clientThatDisconnectsMidResponseDoesNotHurtTheWorker() throws {
        for _ in 0..<3 {
            let connection = try FastCGIConnection(path: fixture.socketPath)
            try connection.send(FastCGIConnection.requestBytes(uri: "/big?size=50000000", keepConnection: false))
            #expect(try !connection.receiveSome().isEmpty)
            // Closing with unread data makes the kernel reset the connection.
            var linger = linger(l_onoff: 1, l_linger: 0)
            setsockopt(connection.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
        }
        try expectWorkerServes()
    }

    @Test func keptConnectionCarriesSuccessiveRequests() throws {
        let connection = try FastCGIConnection(path: fixture.socketPath)
        for index in 0..<5 {
            let reply = try connection.request("/async?value=\(index)", keepConnection: true)
            #expect(reply.status == 200)
            #expect(String(decoding: reply.body, as: UTF8.self) == "async: \(index)\n")
        }
    }

    @Test func oversizedBodyIs413AndTheKeptConnectionStaysUsable() throws {
        let connection = try FastCGIConnection(path: fixture.socketPath)
        let reply = try connection.request("/body", method: "POST", body: [UInt8](repeating: 7, count: 200_000), keepConnection: true)
        #expect(reply.status == 413)
        let small = try connection.request("/body", method: "POST", body: [1, 2, 3], keepConnection: true)
        #expect(small.status == 200)
        #expect(small.body == [1, 2, 3])
    }

    @Test func paramsSplitAcrossRecordsAreAccepted() throws {
        let connection = try FastCGIConnection(path: fixture.socketPath)
        let pairs = FastCGIConnection.pairs(FastCGIConnection.standardParams(uri: "/echo?split=yes") + [("HTTP_X_LONG", String(repeating: "v", count: 3000))])
        var bytes = FastCGIConnection.begin(keepConnection: false)
        var offset = 0
        while offset < pairs.count {  // 1000-byte records: pairs straddle record boundaries
            let end = min(offset + 1000, pairs.count)
            bytes += FastCGIConnection.record(type: FastCGIConnection.params, content: Array(pairs[offset..<end]))
            offset = end
        }
        bytes += FastCGIConnection.record(type: FastCGIConnection.params) + FastCGIConnection.record(type: FastCGIConnection.stdin)
        try connection.send(bytes)
        let reply = try connection.readReply()
        #expect(reply.status == 200)
        #expect(String(decoding: reply.body, as: UTF8.self).contains("query: split=yes"))
    }

    @Test func pathClimbingAboveTheRootIs400() throws {
        let reply = try FastCGIConnection(path: fixture.socketPath).request("/files/../../etc/passwd")
        #expect(reply.status == 400)
        try expectWorkerServes()
    }

    @Test func socketIsCreatedWithMode0660() throws {
        var status = stat()
        #expect(stat(fixture.socketPath, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o660)
    }
}
