import Glibc

/// One request as the web server sent it: its CGI parameters and its whole body.
///
/// Everything is copied out of the connection's read buffer, so the value outlives the request.
public struct FastCGIRequest: Sendable {
    /// The CGI parameters in the order the web server sent them (`REQUEST_METHOD`,
    /// `REQUEST_URI`, `HTTP_COOKIE`, …).
    public var params: FastCGIParams
    /// The request body (FCGI_STDIN), read in full and within the configured limit.
    public var body: [UInt8]

    public init(params: FastCGIParams, body: [UInt8] = []) {
        self.params = params
        self.body = body
    }
}

/// CGI parameters, kept as the bytes the web server sent.
///
/// A request carries a few dozen pairs and a handler reads a handful, so the pairs stay in one
/// buffer with an index of where each name and value lies; a lookup compares bytes and only the
/// value found becomes a `String`. (Decoding every pair up front cost about 30 strings per
/// request on the hello path.)
public struct FastCGIParams: Sendable, Sequence {
    /// Names and values back to back.
    private var bytes: [UInt8]
    /// Where each pair lies in `bytes`, in the order sent.
    private var entries: [Entry]

    private struct Entry {
        var nameStart: UInt32
        var nameLength: UInt32
        var valueLength: UInt32

        var valueStart: Int { Int(nameStart) + Int(nameLength) }
    }

    public init(_ pairs: [(name: String, value: String)] = []) {
        bytes = []
        entries = []
        entries.reserveCapacity(pairs.count)
        for pair in pairs { append(name: pair.name, value: pair.value) }
    }

    /// The pairs of a PARAMS stream (FastCGI's length-prefixed name-value pairs); nil if a
    /// pair's lengths run past the end.
    init?(encoded content: UnsafeRawBufferPointer) {
        bytes = []
        bytes.reserveCapacity(content.count)
        entries = []
        entries.reserveCapacity(32)
        var index = 0
        while index < content.count {
            guard let nameLength = Self.length(content, at: &index), let valueLength = Self.length(content, at: &index),
                  nameLength <= content.count - index,
                  valueLength <= content.count - index - nameLength
            else { return nil }
            entries.append(Entry(nameStart: UInt32(bytes.count), nameLength: UInt32(nameLength), valueLength: UInt32(valueLength)))
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: content[index..<(index + nameLength + valueLength)]))
            index += nameLength + valueLength
        }
    }

    /// A pair's name or value length at `index` (one byte, or four with the top bit set), and
    /// `index` moved past it; nil if it runs past the end. (A function with an `inout` index,
    /// not a closure capturing it: a captured variable is checked for exclusive access on every
    /// use.)
    static func length<Bytes: Collection>(_ content: Bytes, at index: inout Int) -> Int? where Bytes.Element == UInt8, Bytes.Index == Int {
        guard index < content.endIndex else { return nil }
        if content[index] & 0x80 == 0 {
            defer { index += 1 }
            return Int(content[index])
        }
        guard content.endIndex - index >= 4 else { return nil }
        defer { index += 4 }
        return Int(content[index] & 0x7F) << 24 | Int(content[index + 1]) << 16
            | Int(content[index + 2]) << 8 | Int(content[index + 3])
    }

    /// The first value sent under `name`.
    public subscript(name: String) -> String? {
        var name = name
        return name.withUTF8 { key in
            bytes.withUnsafeBufferPointer { all -> String? in
                for entry in entries where Int(entry.nameLength) == key.count {
                    let start = Int(entry.nameStart)
                    guard key.isEmpty || memcmp(all.baseAddress! + start, key.baseAddress!, key.count) == 0 else { continue }
                    return String(decoding: UnsafeBufferPointer(rebasing: all[entry.valueStart..<(entry.valueStart + Int(entry.valueLength))]), as: UTF8.self)
                }
                return nil
            }
        }
    }

    public mutating func append(name: String, value: String) {
        entries.append(Entry(nameStart: UInt32(bytes.count), nameLength: UInt32(name.utf8.count), valueLength: UInt32(value.utf8.count)))
        bytes.append(contentsOf: name.utf8)
        bytes.append(contentsOf: value.utf8)
    }

    public var count: Int { entries.count }

    public func makeIterator() -> Iterator {
        Iterator(params: self)
    }

    /// The pairs in the order sent, decoded as they are reached.
    public struct Iterator: IteratorProtocol {
        fileprivate let params: FastCGIParams
        fileprivate var position = 0

        public mutating func next() -> (name: String, value: String)? {
            guard position < params.entries.count else { return nil }
            let entry = params.entries[position]
            position += 1
            let name = Int(entry.nameStart)..<entry.valueStart
            let value = entry.valueStart..<(entry.valueStart + Int(entry.valueLength))
            return (String(decoding: params.bytes[name], as: UTF8.self), String(decoding: params.bytes[value], as: UTF8.self))
        }
    }
}
