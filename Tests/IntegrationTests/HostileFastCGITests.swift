import Foundation
import Glibc
import Testing

/// What an attacker who can reach the worker's socket might send: management records where no
/// web server puts them, huge lengths, aborted and multiplexed requests, pipelining, heads in
/// pieces, stalls, and a mutation fuzzer. After each case the process is alive and a fresh
/// connection is served.
@Suite(.serialized)
final class HostileFastCGITests {
    let fixture: Fixture
    typealias FCGI = FastCGIConnection

    init() throws {
        fixture = try Fixture(nginx: false, workerArguments: [
            "--threads", "4", "--max-body-size", "64K", "--request-head-timeout", "0.5", "--request-body-timeout", "0.5",
        ])
    }

    deinit {
        fixture.stop()
    }

    func expectWorkerServes(sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(fixture.worker.isRunning, sourceLocation: sourceLocation)
        let reply = try FCGI(path: fixture.socketPath).request("/echo?ok=1")
        #expect(reply.status == 200, sourceLocation: sourceLocation)
    }

    /// FCGI_GET_VALUES with `names` names, or with one pair claiming lengths near 2^31.
    static func getValues(names: Int) -> [UInt8] {
        if names == 0 { return FCGI.record(type: FCGI.getValues, id: 0, content: FCGI.length(0x7FFF_FFF0) + FCGI.length(0x7FFF_FFF0)) }
        let pairs = (0..<names).map { ("FCGI_MAX_CONNS_\($0)", "") }
        return FCGI.record(type: FCGI.getValues, id: 0, content: FCGI.pairs(pairs))
    }

    static let params = FCGI.pairs(FCGI.standardParams(method: "POST", uri: "/body", bodyLength: 10))

    /// A request with a GET_VALUES record at `place`.
    static func request(withManagementRecord record: [UInt8], at place: String) -> [UInt8] {
        let begin = FCGI.begin(keepConnection: true)
        let half = params.count / 2
        let firstParams = FCGI.record(type: FCGI.params, content: Array(params[..<half]))
        let secondParams = FCGI.record(type: FCGI.params, content: Array(params[half...]))
        let endParams = FCGI.record(type: FCGI.params)
        let stdin = FCGI.record(type: FCGI.stdin, content: Array("0123456789".utf8)) + FCGI.record(type: FCGI.stdin)
        switch place {
        case "after BEGIN_REQUEST": return begin + record + firstParams + secondParams + endParams + stdin
        case "between PARAMS records": return begin + firstParams + record + secondParams + endParams + stdin
        case "after the PARAMS end": return begin + firstParams + secondParams + endParams + record + stdin
        default: return begin + firstParams + secondParams + endParams + FCGI.record(type: FCGI.stdin, content: [1, 2, 3]) + record + stdin
        }
    }

    @Test(arguments: [4, 10, 50, 0], ["after BEGIN_REQUEST", "between PARAMS records", "after the PARAMS end", "inside STDIN"])
    func managementRecordsInsideARequestCloseTheConnection(names: Int, place: String) throws {
        let connection = try FCGI(path: fixture.socketPath)
        try connection.send(Self.request(withManagementRecord: Self.getValues(names: names), at: place))
        #expect(try connection.isClosedByServer())
        try expectWorkerServes()
    }

    @Test(arguments: [4, 10, 50])
    func getValuesBetweenKeptRequestsIsAnswered(names: Int) throws {
        let connection = try FCGI(path: fixture.socketPath)
        #expect(try connection.request("/echo?first=1", keepConnection: true).status == 200)
        try connection.send(Self.getValues(names: names))
        let record = try #require(try connection.readRecord())
        #expect(record.type == FCGI.getValuesResult)
        #expect(record.content.isEmpty)  // none of the names is known
        #expect(try connection.request("/echo?second=1", keepConnection: true).status == 200)
        try expectWorkerServes()
    }

    @Test func getValuesWithHugeLengthsBetweenKeptRequestsClosesTheConnection() throws {
        let connection = try FCGI(path: fixture.socketPath)
        #expect(try connection.request("/echo?first=1", keepConnection: true).status == 200)
        try connection.send(Self.getValues(names: 0))
        #expect(try connection.isClosedByServer())
        try expectWorkerServes()
    }

    @Test func abortRequestMidBodyEndsTheRequestWithoutRunningIt() throws {
        let connection = try FCGI(path: fixture.socketPath)
        let head = FCGI.begin(keepConnection: true) + FCGI.record(type: FCGI.params, content: Self.params) + FCGI.record(type: FCGI.params)
        try connection.send(head + FCGI.record(type: FCGI.stdin, content: [1, 2, 3]) + FCGI.record(type: 2))
        let reply = try connection.readReply()
        #expect(reply.stdout.isEmpty)
        #expect(reply.protocolStatus == 0)
        #expect(try connection.isClosedByServer())
        try expectWorkerServes()
    }

    @Test func aSecondBeginRequestClosesTheConnection() throws {
        let connection = try FCGI(path: fixture.socketPath)
        try connection.send(FCGI.begin(keepConnection: true) + FCGI.begin(id: 2, keepConnection: true))
        #expect(try connection.isClosedByServer())
        #expect(fixture.workerLog.contains("requests are not multiplexed"))
        try expectWorkerServes()
    }

    @Test func pipelinedRequestsAreServedInOrder() throws {
        let connection = try FCGI(path: fixture.socketPath)
        let three = (1...3).flatMap { FCGI.requestBytes(id: UInt16($0), uri: "/echo?n=\($0)", keepConnection: true) }
        try connection.send(three)
        for index in 1...3 {
            let reply = try connection.readReply()
            #expect(reply.status == 200)
            #expect(String(decoding: reply.body, as: UTF8.self).contains("query: n=\(index)"))
        }
        try expectWorkerServes()
    }

    @Test func aHeadInPiecesIsReadWhole() throws {
        let bytes = FCGI.requestBytes(uri: "/echo?pieces=1", keepConnection: false)
        // BEGIN_REQUEST alone, the rest 50 ms later (as Apache writes it).
        let split = try FCGI(path: fixture.socketPath)
        try split.send(Array(bytes[..<16]))
        usleep(50_000)
        try split.send(Array(bytes[16...]))
        #expect(try split.readReply().status == 200)
        // One byte per write.
        let trickle = try FCGI(path: fixture.socketPath)
        for byte in bytes { try trickle.send([byte]) }
        let reply = try trickle.readReply()
        #expect(reply.status == 200)
        #expect(String(decoding: reply.body, as: UTF8.self).contains("query: pieces=1"))
        try expectWorkerServes()
    }

    @Test func aStalledHeadIsClosedAfterTheHeadTimeout() throws {
        let connection = try FCGI(path: fixture.socketPath)
        let bytes = FCGI.requestBytes(uri: "/echo", keepConnection: false)
        try connection.send(Array(bytes[..<20]))
        #expect(try connection.isClosedByServer())
        #expect(fixture.workerLog.contains("the request head stalled"))
        try expectWorkerServes()
    }

    @Test func aStalledBodyIsClosedAfterTheBodyTimeout() throws {
        let connection = try FCGI(path: fixture.socketPath)
        let head = FCGI.begin(keepConnection: false) + FCGI.record(type: FCGI.params, content: Self.params) + FCGI.record(type: FCGI.params)
        try connection.send(head + FCGI.record(type: FCGI.stdin, content: [1, 2, 3]))
        #expect(try connection.isClosedByServer())
        #expect(fixture.workerLog.contains("the request body stalled"))
        try expectWorkerServes()
    }

    /// Valid request streams with bytes flipped, inserted, dropped or cut: a fixed seed, so a
    /// failure reproduces. Every stream ends with the write side shut, so the worker sees the end
    /// at once; every 250 cases and at the end a fresh connection must be served.
    @Test func mutatedRequestStreamsNeverTakeTheWorkerDown() throws {
        var random = SplitMix(seed: 0x5E55_1011)
        let seeds = [
            FCGI.requestBytes(uri: "/echo?a=1", keepConnection: true),
            FCGI.requestBytes(uri: "/body", method: "POST", body: Array(repeating: 7, count: 300), keepConnection: true)
                + FCGI.requestBytes(id: 2, uri: "/echo", keepConnection: false),
            Self.getValues(names: 3) + FCGI.requestBytes(uri: "/echo", keepConnection: false),
        ]
        for index in 0..<3000 {
            var bytes = seeds[index % seeds.count]
            for _ in 0..<(1 + random.next(4)) {
                let position = random.next(bytes.count)
                switch random.next(5) {
                case 0: bytes[position] ^= UInt8(1 << random.next(8))
                case 1: bytes[position] = UInt8(random.next(256))
                case 2: bytes.insert(contentsOf: (0..<random.next(9)).map { _ in UInt8(random.next(256)) }, at: position)
                case 3: bytes.remove(at: position)
                default: bytes = Array(bytes[..<max(1, position)])
                }
                if bytes.isEmpty { bytes = [1] }
            }
            let connection = try FCGI(path: fixture.socketPath)
            try? connection.send(bytes)
            shutdown(connection.fd, Int32(SHUT_WR))
            _ = try? connection.isClosedByServer()
            if index % 250 == 249 { try expectWorkerServes() }
        }
        try expectWorkerServes()
    }
}

/// A small deterministic generator (SplitMix64), so the fuzzer's cases are the same every run.
struct SplitMix {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next(_ bound: Int) -> Int {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return bound <= 0 ? 0 : Int(z % UInt64(bound))
    }
}

/// `--socket-mode` and `--socket-group`, for web servers running as another user.
struct SocketOwnershipTests {
    @Test func theSocketGetsTheModeAndGroupAsked() throws {
        let group = try #require(getgrnam("nogroup")).pointee.gr_gid
        let fixture = try Fixture(nginx: false, workerArguments: ["--socket-mode", "0666", "--socket-group", "nogroup"])
        defer { fixture.stop() }
        var status = stat()
        #expect(stat(fixture.socketPath, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o666)
        #expect(status.st_gid == group)
        #expect(try FastCGIConnection(path: fixture.socketPath).request("/echo").status == 200)
    }

    @Test func anUnknownGroupIsRefusedAtStartup() throws {
        let process = Process()
        process.executableURL = Fixture.products.appending(path: "TestWorker")
        let socket = FileManager.default.temporaryDirectory.appending(path: "sessionhost-group-\(UUID().uuidString.prefix(8)).sock").path
        process.arguments = ["serve", "--listen", "unix:\(socket)", "--socket-group", "no-such-group-here"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus != 0)
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.contains("no group 'no-such-group-here'"))
    }
}
