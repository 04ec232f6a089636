@testable import FastCGI
import Testing

struct RecordScannerTests {
    let scanner = RecordScanner(maxConnections: 12, maxRequests: 12)

    func record(_ type: UInt8, id: Int = 1, _ content: [UInt8] = []) -> [UInt8] {
        RecordScanner.record(type: type, id: id, content: content)
    }

    func pair(_ name: String, _ value: String) -> [UInt8] {
        [UInt8(name.utf8.count), UInt8(value.utf8.count)] + Array(name.utf8) + Array(value.utf8)
    }

    let begin = RecordScanner.record(type: 1, id: 1, content: [0, 1, 1, 0, 0, 0, 0, 0])

    func scan(_ bytes: [UInt8]) -> RecordScanner.Verdict {
        bytes.withUnsafeBytes { scanner.scan($0) }
    }

    @Test func completeRequestHeadIsReady() {
        let head = begin + record(4, pair("REQUEST_URI", "/")) + record(4)
        #expect(scan(head + record(5)) == .request(length: head.count))
    }

    @Test func partialHeadAsksForExactlyTheMissingBytes() {
        let params = record(4, pair("REQUEST_URI", "/"))
        #expect(scan(Array(begin.prefix(5))) == .needBytes(8))
        #expect(scan(begin) == .needBytes(16 + 8))
        #expect(scan(begin + params.prefix(10)) == .needBytes(16 + params.count))
        #expect(scan(begin + params) == .needBytes(16 + params.count + 8))
    }

    @Test func pairLongerThanTheStreamIsRejected() {
        let huge: [UInt8] = [0xFF, 0xFF, 0xFF, 0xF0, 0xFF, 0xFF, 0xFF, 0xF0, 65]
        #expect(scan(begin + record(4, huge) + record(4)) == .reject("PARAMS with a name-value pair longer than the stream"))
        // A four-byte length cut short is malformed too.
        #expect(scan(begin + record(4, [0x80, 0]) + record(4)) == .reject("PARAMS with a name-value pair longer than the stream"))
    }

    @Test func pairsMayStraddleRecords() {
        let pairs = pair("A", String(repeating: "x", count: 100)) + pair("B", "y")
        let bytes = begin + record(4, Array(pairs[..<50])) + record(4, Array(pairs[50...])) + record(4)
        #expect(scan(bytes) == .request(length: bytes.count))
    }

    @Test func getValuesIsAnsweredWithTheLimits() {
        let query = pair("FCGI_MAX_CONNS", "") + pair("FCGI_MPXS_CONNS", "") + pair("UNKNOWN", "")
        let bytes = record(9, id: 0, query)
        let reply = record(10, id: 0, pair("FCGI_MAX_CONNS", "12") + pair("FCGI_MPXS_CONNS", "0"))
        #expect(scan(bytes + begin) == .management(length: bytes.count, reply: reply))
    }

    @Test func unknownManagementTypeGetsUnknownType() {
        #expect(scan(record(77, id: 0)) == .management(length: 8, reply: record(11, id: 0, [77, 0, 0, 0, 0, 0, 0, 0])))
    }

    @Test func malformedGetValuesIsRejected() {
        #expect(scan(record(9, id: 0, [0x85, 0, 0])) == .reject("management record with a malformed name-value pair"))
    }

    @Test func nonResponderRolesAreRefused() {
        let authorizer = record(1, id: 7, [0, 2, 0, 0, 0, 0, 0, 0])
        #expect(scan(authorizer) == .unsupportedRole(role: 2, reply: record(3, id: 7, [0, 0, 0, 0, 3, 0, 0, 0])))
    }

    @Test func protocolViolationsAreRejected() {
        #expect(scan(Array("GET / HTTP/1.1\r\n".utf8)) == .reject("unsupported FastCGI protocol version 71"))
        #expect(scan(record(1, id: 0, [0, 1, 0, 0, 0, 0, 0, 0])) == .reject("BEGIN_REQUEST with request id 0"))
        #expect(scan(record(1, id: 1, [0, 1, 0, 0])) == .reject("BEGIN_REQUEST body of 4 bytes"))
        #expect(scan(begin + record(5)) == .reject("record type 5 before the end of PARAMS"))
    }

    @Test func managementRecordsInsideARequestAndOtherRequestIDsAreRejected() {
        let getValues = record(9, id: 0, pair("FCGI_MAX_CONNS", "") + pair("A", "") + pair("B", "") + pair("C", ""))
        #expect(scan(begin + getValues + record(4)) == .reject("management record (type 9) inside a request"))
        #expect(scan(begin + record(4, pair("A", "b")) + getValues) == .reject("management record (type 9) inside a request"))
        #expect(scan(begin + record(1, id: 2, [0, 1, 0, 0, 0, 0, 0, 0])) == .reject("record type 1 for request 2 inside request 1 (requests are not multiplexed)"))
        #expect(scan(record(5, id: 3)) == .reject("record type 5 for request 3 before BEGIN_REQUEST"))
    }

    @Test func paramsDecodeIntoPairsInOrder() {
        let content = pair("A", "1") + pair("LONG", String(repeating: "v", count: 120)) + pair("A", "2")
        let params = content.withUnsafeBytes { FastCGIParams(encoded: $0) }
        #expect(params?.map(\.name) == ["A", "LONG", "A"])
        #expect(params?.map(\.value) == ["1", String(repeating: "v", count: 120), "2"])
        #expect(params?["A"] == "1" && params?["LONG"]?.count == 120)
        #expect(params?["B"] == nil && params?[""] == nil)
        // A pair whose value runs past the end, a four-byte length cut short.
        #expect((pair("A", "12").dropLast()).withUnsafeBytes { FastCGIParams(encoded: $0) } == nil)
        #expect([UInt8]([0x80, 0, 0]).withUnsafeBytes { FastCGIParams(encoded: $0) } == nil)
    }

    @Test func paramsBuiltFromStringsMatchTheDecodedOnes() {
        var params = FastCGIParams([(name: "REQUEST_METHOD", value: "GET"), (name: "", value: "empty name")])
        params.append(name: "HTTP_X_UNICODE", value: "grüße")
        #expect(params.count == 3)
        #expect(params["REQUEST_METHOD"] == "GET" && params[""] == "empty name" && params["HTTP_X_UNICODE"] == "grüße")
        #expect(params["REQUEST_METHO"] == nil && params["request_method"] == nil)
    }

    /// PARAMS records of one content byte and up to 255 padding bytes reach the window with
    /// little content. A header that would end past the window is rejected, not waited for: the
    /// read buffer is exactly the window, so the wait would never end.
    @Test func aHeaderThatCannotFitTheWindowIsRejected() {
        func padded(_ padding: Int) -> [UInt8] {
            [1, 4, 0, 1, 0, 1, UInt8(padding), 0, 0x41] + [UInt8](repeating: 0, count: padding)
        }
        let target = scanner.windowLimit - 7
        var bytes = begin
        while target - bytes.count >= 264 + 9 { bytes += padded(255) }
        bytes += padded(target - bytes.count - 9)
        #expect(bytes.count == target)
        bytes += [1, 4, 0, 1, 0, 0, 0]
        #expect(bytes.withUnsafeBytes { scanner.scan($0) } == .reject("request head exceeds \(scanner.windowLimit) bytes"))
    }

    @Test func paramsOverTheLimitAreRejected() {
        var small = scanner
        small.maxParamsLength = 100
        let bytes = begin + record(4, pair("A", String(repeating: "x", count: 120))) + record(4)
        #expect(bytes.withUnsafeBytes { small.scan($0) } == .reject("PARAMS exceed 100 bytes"))
    }
}
