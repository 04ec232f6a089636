import CFastCGI

/// Checks the head of a FastCGI connection's byte stream: the records up to the end of a
/// request's PARAMS stream, or a management record between requests.
///
/// Every name-value pair is checked before anything is decoded (Debian's libfcgi 2.4.2, whose
/// parser the worker no longer uses, computed their sizes in `int` and crashed on huge ones).
/// Management records (FCGI_GET_VALUES and unknown types) are answered only at a request
/// boundary, with the pool's real limits; one anywhere inside a request, a record of another
/// request id (the worker does not multiplex) or a record before BEGIN_REQUEST closes the
/// connection.
struct RecordScanner {
    /// What the caller should do next with the bytes at the head of the connection.
    enum Verdict: Equatable {
        /// Not enough bytes yet: wait until at least this many are available from the head.
        case needBytes(Int)
        /// The stream opens with a management record of `length` bytes (header and padding
        /// included): consume it and answer with `reply`.
        case management(length: Int, reply: [UInt8])
        /// A responder request with complete, valid PARAMS is at the head: its BEGIN_REQUEST and
        /// PARAMS records take `length` bytes.
        case request(length: Int)
        /// A BEGIN_REQUEST for a role this host does not implement: answer with `reply`
        /// (END_REQUEST, FCGI_UNKNOWN_ROLE) and close.
        case unsupportedRole(role: Int, reply: [UInt8])
        /// A protocol violation: close the connection.
        case reject(String)
    }

    /// The largest PARAMS stream accepted. nginx never sends more than one 64 KiB record.
    var maxParamsLength = 65_535
    /// Answers to FCGI_GET_VALUES.
    var maxConnections: Int
    var maxRequests: Int

    /// The most bytes the scanner may ask to see: the PARAMS limit plus record overhead.
    var windowLimit: Int { maxParamsLength + 16 * 1024 }

    func scan(_ bytes: UnsafeRawBufferPointer) -> Verdict {
        var offset = 0
        var requestID: Int?
        // Where the PARAMS contents lie; pairs may straddle records, so several are joined.
        var paramsRanges: [Range<Int>] = []
        var paramsLength = 0

        while true {
            guard offset + headerLength <= windowLimit else { return .reject("request head exceeds \(windowLimit) bytes") }
            guard bytes.count - offset >= headerLength else { return .needBytes(offset + headerLength) }
            let version = bytes[offset]
            guard version == 1 else { return .reject("unsupported FastCGI protocol version \(version)") }
            let type = bytes[offset + 1]
            let id = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            let contentLength = Int(bytes[offset + 4]) << 8 | Int(bytes[offset + 5])
            let recordLength = headerLength + contentLength + Int(bytes[offset + 6])
            let end = offset + recordLength
            guard end <= windowLimit else { return .reject("request head exceeds \(windowLimit) bytes") }
            guard bytes.count >= end else { return .needBytes(end) }
            let content = UnsafeRawBufferPointer(rebasing: bytes[(offset + headerLength)..<(offset + headerLength + contentLength)])

            if type == RecordType.beginRequest, requestID == nil {
                guard id != 0 else { return .reject("BEGIN_REQUEST with request id 0") }
                guard contentLength == 8 else { return .reject("BEGIN_REQUEST body of \(contentLength) bytes") }
                let role = Int(content[0]) << 8 | Int(content[1])
                guard role == roleResponder else {
                    return .unsupportedRole(role: role, reply: Self.endRequest(id: id, protocolStatus: protocolStatusUnknownRole))
                }
                requestID = id
            } else if id == 0 {
                guard let names = Self.pairNames(content) else {
                    return .reject("management record with a malformed name-value pair")
                }
                guard offset == 0 else { return .reject("management record (type \(type)) inside a request") }
                return .management(length: recordLength, reply: reply(toManagementType: type, names: names))
            } else if requestID == nil {
                return .reject("record type \(type) for request \(id) before BEGIN_REQUEST")
            } else if id == requestID {
                guard type == RecordType.params else {
                    return .reject("record type \(type) before the end of PARAMS")
                }
                if contentLength == 0 {
                    let wellFormed = paramsRanges.count <= 1
                        ? Self.pairsAreWellFormed(UnsafeRawBufferPointer(rebasing: bytes[paramsRanges.first ?? 0..<0]))
                        : Self.pairsAreWellFormed(paramsRanges.flatMap { bytes[$0] })
                    guard wellFormed else { return .reject("PARAMS with a name-value pair longer than the stream") }
                    return .request(length: end)
                }
                paramsLength += contentLength
                guard paramsLength <= maxParamsLength else {
                    return .reject("PARAMS exceed \(maxParamsLength) bytes")
                }
                paramsRanges.append((offset + headerLength)..<(offset + headerLength + contentLength))
            } else {
                return .reject("record type \(type) for request \(id) inside request \(requestID ?? 0) (requests are not multiplexed)")
            }
            offset = end
        }
    }

    static func pairsAreWellFormed<Bytes: Collection>(_ content: Bytes) -> Bool where Bytes.Element == UInt8, Bytes.Index == Int {
        forEachPair(content) { _, _ in } != nil
    }

    /// The names of the name-value pairs in `content`, or nil if a pair's lengths run past it.
    static func pairNames<Bytes: Collection>(_ content: Bytes) -> [String]? where Bytes.Element == UInt8, Bytes.Index == Int {
        var names: [String] = []
        return forEachPair(content) { name, _ in names.append(String(decoding: content[name], as: UTF8.self)) }.map { names }
    }

    /// Calls `body` with the ranges of each pair's name and value; nil if a pair's lengths run
    /// past the end.
    private static func forEachPair<Bytes: Collection>(_ content: Bytes, _ body: (Range<Int>, Range<Int>) -> Void) -> Void? where Bytes.Element == UInt8, Bytes.Index == Int {
        var index = content.startIndex
        while index < content.endIndex {
            guard let nameLength = FastCGIParams.length(content, at: &index), let valueLength = FastCGIParams.length(content, at: &index),
                  nameLength <= content.endIndex - index,
                  valueLength <= content.endIndex - index - nameLength
            else { return nil }
            body(index..<(index + nameLength), (index + nameLength)..<(index + nameLength + valueLength))
            index += nameLength + valueLength
        }
        return ()
    }

    func reply(toManagementType type: UInt8, names: [String]) -> [UInt8] {
        guard type == RecordType.getValues else {
            // FCGI_UNKNOWN_TYPE: the body names the type, then seven reserved bytes.
            return Self.record(type: RecordType.unknownType, id: 0, content: [type, 0, 0, 0, 0, 0, 0, 0])
        }
        var content: [UInt8] = []
        for name in names {
            let value: String
            switch name {
            case "FCGI_MAX_CONNS": value = String(maxConnections)
            case "FCGI_MAX_REQS": value = String(maxRequests)
            case "FCGI_MPXS_CONNS": value = "0"
            default: continue  // the spec says unknown names are left out of the reply
            }
            content.append(UInt8(name.utf8.count))
            content.append(UInt8(value.utf8.count))
            content.append(contentsOf: name.utf8)
            content.append(contentsOf: value.utf8)
        }
        return Self.record(type: RecordType.getValuesResult, id: 0, content: content)
    }

    static func endRequest(id: Int, protocolStatus: UInt8) -> [UInt8] {
        record(type: RecordType.endRequest, id: id, content: [0, 0, 0, 0, protocolStatus, 0, 0, 0])
    }

    /// One record with `content`, padded to a multiple of eight bytes.
    static func record(type: UInt8, id: Int, content: [UInt8]) -> [UInt8] {
        let padding = (8 - content.count % 8) % 8
        var bytes: [UInt8] = [
            1, type, UInt8(id >> 8), UInt8(id & 0xFF),
            UInt8(content.count >> 8), UInt8(content.count & 0xFF), UInt8(padding), 0,
        ]
        bytes += content
        bytes += repeatElement(0, count: padding)
        return bytes
    }
}

/// FastCGI 1.0 record types (the specification's section 8), from libfcgi's `fastcgi.h`.
enum RecordType {
    static let beginRequest = UInt8(FCGI_BEGIN_REQUEST)
    static let abortRequest = UInt8(FCGI_ABORT_REQUEST)
    static let endRequest = UInt8(FCGI_END_REQUEST)
    static let params = UInt8(FCGI_PARAMS)
    static let stdin = UInt8(FCGI_STDIN)
    static let stdout = UInt8(FCGI_STDOUT)
    static let getValues = UInt8(FCGI_GET_VALUES)
    static let getValuesResult = UInt8(FCGI_GET_VALUES_RESULT)
    static let unknownType = UInt8(FCGI_UNKNOWN_TYPE)
}

let headerLength = Int(FCGI_HEADER_LEN)
let roleResponder = Int(FCGI_RESPONDER)
let protocolStatusUnknownRole = UInt8(FCGI_UNKNOWN_ROLE)
let keepConnectionFlag = UInt8(FCGI_KEEP_CONN)
/// The most content one record carries.
let maxRecordContent = Int(FCGI_MAX_LENGTH)
