public import SessionState
import Foundation

/// The serialized form of an ASP.NET session, as `System.Web.SessionState.SessionStateUtility`
/// and `SessionStateItemCollection` write it for the StateServer and SQLServer modes, so that a
/// .NET app and a Swift app can read each other's sessions.
///
/// Layout (little-endian, strings as .NET's `BinaryWriter`: 7-bit encoded byte count + UTF-8):
/// `Int32` timeout, `Boolean` hasItems, `Boolean` hasStaticObjects, the items if any, the static
/// objects if any, then the byte `0xFF`. The items: `Int32` count; if count > 0, `Int32` index of
/// the item with a null key (or -1), the other keys, `count` `Int32` end offsets of the values
/// (relative to the first value), the values. A value is a type byte and its payload:
///
/// | .NET type | id | payload | Swift value |
/// |---|---|---|---|
/// | String | 1 | string | `.string` |
/// | Int32 | 2 | 4 bytes | `.int` (an `Int` written back that fits) |
/// | Boolean | 3 | 1 byte | `.bool` |
/// | DateTime | 4 | `Int64` ticks | `.date` (ticks are taken as UTC: the blob has no time zone) |
/// | Byte, SByte, Int16, UInt16, UInt32, IntPtr | 6, 10, 11, 13, 14, 18 | 1–8 bytes | `.int` |
/// | Char | 7 | UTF-8 | `.string` |
/// | Single, Double | 8, 9 | 4, 8 bytes | `.double` |
/// | Int64 | 12 | 8 bytes | `.int` (an `Int` written back that does not fit Int32) |
/// | UInt64 | 15 | 8 bytes | `.int` up to `Int.max`, else `.dotNet` |
/// | Decimal, TimeSpan, Guid, UIntPtr, null | 5, 16, 17, 19, 21 | | `.dotNet` (kept as written) |
/// | Object (BinaryFormatter) | 20 | the formatter's bytes | `.dotNet` (kept as written) |
///
/// `Data` and `Codable` values have no .NET counterpart: they are written as type 20 with a
/// payload that starts `S` `H` and a kind byte (1: the bytes; 2: JSON), which .NET's
/// BinaryFormatter rejects. ASP.NET deserializes items one by one when first read, so a .NET
/// app fails only on such a key, never on the others. An item nobody changed is written back
/// byte for byte, so an Int64 or a Decimal a .NET app stored keeps its type.
///
/// With `compressionEnabled="true"` the whole form is raw Deflate (`DeflateStream`) followed by
/// one `0xFF` byte, as ASP.NET writes it.
public enum ASPNETSessionStateFormat {
    /// The session cannot be read (or a value cannot be written); `detail` says where.
    public struct Failure: Error, Sendable, Hashable, CustomStringConvertible {
        public enum Kind: Sendable, Hashable {
            /// ASP.NET's "The session state information is invalid and might be corrupted."
            case corrupt
            /// A value that cannot be serialized.
            case unencodable(key: String)
        }

        public var kind: Kind
        public var detail: String

        public var description: String {
            switch kind {
            case .corrupt: "The session state information is invalid and might be corrupted (\(detail))."
            case .unencodable(let key): "Unable to serialize the session state: the value of '\(key)' \(detail)."
            }
        }

        static func corrupt(_ detail: String) -> Failure { Failure(kind: .corrupt, detail: detail) }
    }

    /// The largest form `decode` inflates a compressed session to.
    public static let defaultDecompressedLimit = 64 << 20

    // MARK: Encoding

    public static func encode(_ data: SessionStateStoreData, compressed: Bool) throws(Failure) -> [UInt8] {
        var writer = DotNetWriter()
        writer.int32(Int32(clamping: data.timeout))
        let hasItems = data.items.count > 0
        writer.byte(hasItems ? 1 : 0)
        writer.byte(data.dotNetStaticObjects == nil ? 0 : 1)
        if hasItems { try encodeItems(data.items, into: &writer) }
        if let statics = data.dotNetStaticObjects { writer.bytes.append(contentsOf: statics) }
        writer.byte(0xFF)
        guard compressed else { return writer.bytes }
        // ASP.NET appends one 0xFF after the Deflate stream (so that SQL Server's ANSI_PADDING
        // cannot trim the image).
        return RawDeflate.compress(writer.bytes) + [0xFF]
    }

    /// The items alone, as `SessionStateItemCollection.Serialize` writes them (no timeout, flags
    /// or trailer): the form Microsoft's Redis provider (v5) keeps under a session's
    /// `_SessionStateItemCollection` key. An empty collection is its count alone. `compressed`:
    /// raw Deflate (SessionHost's option; Microsoft's provider does not compress).
    public static func encodeItems(_ items: SessionItems, compressed: Bool = false) throws(Failure) -> [UInt8] {
        var writer = DotNetWriter()
        try encodeItems(items, into: &writer)
        return compressed ? RawDeflate.compress(writer.bytes) : writer.bytes
    }

    /// Items written by `SessionStateItemCollection.Serialize` (see `encodeItems(_:)`); every
    /// byte must belong to them.
    public static func decodeItems(_ bytes: [UInt8], compressed: Bool = false, decompressedLimit: Int = defaultDecompressedLimit) throws(Failure) -> SessionItems {
        var plain = bytes
        if compressed { plain = try inflate(bytes, limit: decompressedLimit) }
        var reader = DotNetReader(bytes: plain)
        let items = try decodeItems(&reader)
        guard reader.offset == plain.count else { throw .corrupt("\(plain.count - reader.offset) bytes after the items") }
        return items
    }

    private static func inflate(_ bytes: [UInt8], limit: Int) throws(Failure) -> [UInt8] {
        do { return try RawDeflate.decompress(bytes, limit: limit) } catch {
            switch error {
            case .corrupt(let detail): throw .corrupt(detail)
            case .tooLarge(let limit): throw .corrupt("it inflates to more than \(limit) bytes")
            }
        }
    }

    private static func encodeItems(_ items: SessionItems, into writer: inout DotNetWriter) throws(Failure) {
        let entries = items.entries
        writer.int32(Int32(entries.count))
        guard !entries.isEmpty else { return }
        writer.int32(-1)  // no item with a null key
        for entry in entries { writer.string(entry.key) }
        var values = DotNetWriter()
        var ends: [Int32] = []
        ends.reserveCapacity(entries.count)
        for entry in entries {
            if let serialized = entry.serialized {
                values.bytes.append(contentsOf: serialized)
            } else {
                try encodeValue(entry.value, key: entry.key, into: &values)
            }
            ends.append(Int32(values.bytes.count))
        }
        for end in ends { writer.int32(end) }
        writer.bytes.append(contentsOf: values.bytes)
    }

    /// Marks SessionHost's own type-20 payloads (`Data`, `Codable`); BinaryFormatter streams
    /// start with a zero byte.
    static let ownPayloadMark: [UInt8] = [0x53, 0x48]
    static let ticksAtUnixEpoch: Int64 = 621_355_968_000_000_000
    static let maxTicks: Int64 = 3_155_378_975_999_999_999

    private static func encodeValue(_ value: SessionValue, key: String, into writer: inout DotNetWriter) throws(Failure) {
        switch value {
        case .string(let text):
            writer.byte(TypeID.string)
            writer.string(text)
        case .int(let number):
            if let small = Int32(exactly: number) {
                writer.byte(TypeID.int32)
                writer.int32(small)
            } else {
                writer.byte(TypeID.int64)
                writer.int64(Int64(number))
            }
        case .bool(let flag):
            writer.byte(TypeID.boolean)
            writer.byte(flag ? 1 : 0)
        case .double(let number):
            writer.byte(TypeID.double)
            writer.int64(Int64(bitPattern: number.bitPattern))
        case .date(let date):
            let ticks = (date.timeIntervalSince1970 * 10_000_000).rounded()
            guard ticks.isFinite, let offset = Int64(exactly: ticks),
                  case let (total, overflow) = ticksAtUnixEpoch.addingReportingOverflow(offset), !overflow,
                  (0...maxTicks).contains(total)
            else { throw Failure(kind: .unencodable(key: key), detail: "is a date outside .NET's DateTime range (years 1–9999)") }
            writer.byte(TypeID.dateTime)
            writer.int64(total)
        case .data(let bytes):
            writer.byte(TypeID.object)
            writer.bytes += ownPayloadMark + [1]
            writer.bytes.append(contentsOf: bytes)
        case .codable(let codable):
            let json: Data
            do { json = try JSONEncoder().encode(codable) } catch {
                throw Failure(kind: .unencodable(key: key), detail: "cannot be encoded as JSON (\(error))")
            }
            writer.byte(TypeID.object)
            writer.bytes += ownPayloadMark + [2]
            writer.bytes.append(contentsOf: json)
        case .encoded(let json):
            writer.byte(TypeID.object)
            writer.bytes += ownPayloadMark + [2]
            writer.bytes.append(contentsOf: json)
        case .dotNet(let kept):
            writer.byte(kept.typeID)
            writer.bytes.append(contentsOf: kept.payload)
        }
    }

    // MARK: Decoding

    /// The session in `bytes`; `compressed` as the application's `compressionEnabled`.
    public static func decode(_ bytes: [UInt8], compressed: Bool, decompressedLimit: Int = defaultDecompressedLimit) throws(Failure) -> SessionStateStoreData {
        var plain = bytes
        if compressed { plain = try inflate(bytes, limit: decompressedLimit) }
        var reader = DotNetReader(bytes: plain)
        let timeout = try reader.int32()
        let hasItems = try reader.boolean()
        let hasStatics = try reader.boolean()
        var items = SessionItems()
        if hasItems { items = try decodeItems(&reader) }
        var statics: [UInt8]?
        if hasStatics {
            let start = reader.offset
            try skipStaticObjects(&reader)
            statics = Array(plain[start..<reader.offset])
        }
        guard try reader.byte() == 0xFF else { throw .corrupt("no 0xFF after the items") }
        guard reader.offset == plain.count else { throw .corrupt("\(plain.count - reader.offset) bytes after the end") }
        var data = SessionStateStoreData(items: items, timeout: Int(timeout))
        data.dotNetStaticObjects = statics
        return data
    }

    private static func decodeItems(_ reader: inout DotNetReader) throws(Failure) -> SessionItems {
        let count = Int(try reader.int32())
        // Each item takes at least a type byte and an offset: a count beyond that is a lie.
        guard count >= 0, count <= reader.remaining / 5 else { throw .corrupt("an item count of \(count)") }
        var items = SessionItems()
        guard count > 0 else { return items }
        let nullKey = Int(try reader.int32())
        guard nullKey == -1 || (0..<count).contains(nullKey) else { throw .corrupt("a null-key index of \(nullKey)") }
        var keys: [String] = []
        keys.reserveCapacity(count)
        for index in 0..<count {
            // The item ASP.NET stores under a null key reads as the empty key (see README).
            keys.append(index == nullKey ? "" : try reader.string())
        }
        var ends: [Int] = []
        ends.reserveCapacity(count)
        for _ in 0..<count { ends.append(Int(try reader.int32())) }
        let valuesStart = reader.offset
        var previous = 0
        for (key, end) in zip(keys, ends) {
            guard end > previous, end <= reader.remaining + (reader.offset - valuesStart) else {
                throw .corrupt("the value of '\(key)' ends at offset \(end)")
            }
            let slot = Array(reader.bytes[(valuesStart + previous)..<(valuesStart + end)])
            let value: SessionValue
            do { value = try decodeValue(slot) } catch {
                throw .corrupt("the value of '\(key)': \(error.detail)")
            }
            items.appendStored(key: key, value: value, serialized: slot)
            previous = end
        }
        reader.offset = valuesStart + previous
        return items
    }

    /// One value slot (type byte and payload) as the Swift value it reads as.
    static func decodeValue(_ slot: [UInt8]) throws(Failure) -> SessionValue {
        var reader = DotNetReader(bytes: slot)
        let type = try reader.byte()
        let payload = slot.count - 1
        func exact(_ size: Int) throws(Failure) {
            guard payload == size else { throw .corrupt("type \(type) with \(payload) bytes instead of \(size)") }
        }
        let value: SessionValue
        switch type {
        case TypeID.string:
            value = .string(try reader.string())
            guard reader.remaining == 0 else { throw .corrupt("\(reader.remaining) bytes after a string") }
        case TypeID.int32: try exact(4); value = .int(Int(try reader.int32()))
        case TypeID.boolean: try exact(1); value = .bool(try reader.byte() != 0)
        case TypeID.dateTime:
            try exact(8)
            let ticks = try reader.int64()
            guard (0...maxTicks).contains(ticks & 0x3FFF_FFFF_FFFF_FFFF) else { throw .corrupt("DateTime ticks \(ticks)") }
            // The two top bits are DateTime.Kind in ToBinary(); Ticks never sets them.
            value = .date(Date(timeIntervalSince1970: Double((ticks & 0x3FFF_FFFF_FFFF_FFFF) - ticksAtUnixEpoch) / 10_000_000))
        case TypeID.byte: try exact(1); value = .int(Int(try reader.byte()))
        case TypeID.sbyte: try exact(1); value = .int(Int(Int8(bitPattern: try reader.byte())))
        case TypeID.char:
            let text = String(decoding: slot.dropFirst(), as: UTF8.self)
            guard (1...3).contains(payload), text.unicodeScalars.count == 1 else { throw .corrupt("a Char of \(payload) bytes") }
            value = .string(text)
        case TypeID.single: try exact(4); value = .double(Double(Float(bitPattern: UInt32(truncatingIfNeeded: try reader.int32()))))
        case TypeID.double: try exact(8); value = .double(Double(bitPattern: UInt64(bitPattern: try reader.int64())))
        case TypeID.int16: try exact(2); value = .int(Int(Int16(truncatingIfNeeded: try reader.unsigned(2))))
        case TypeID.int64: try exact(8); value = .int(Int(try reader.int64()))
        case TypeID.uint16: try exact(2); value = .int(Int(try reader.unsigned(2)))
        case TypeID.uint32: try exact(4); value = .int(Int(try reader.unsigned(4)))
        case TypeID.uint64:
            try exact(8)
            let number = try reader.unsigned(8)
            value = number <= UInt64(Int.max) ? .int(Int(number)) : .dotNet(DotNetValue(typeID: type, payload: Array(slot.dropFirst())))
        case TypeID.intPtr:
            guard payload == 4 || payload == 8 else { throw .corrupt("an IntPtr of \(payload) bytes") }
            value = .int(payload == 4 ? Int(try reader.int32()) : Int(try reader.int64()))
        case TypeID.decimal: try exact(16); value = .dotNet(DotNetValue(typeID: type, payload: Array(slot.dropFirst())))
        case TypeID.timeSpan: try exact(8); value = .dotNet(DotNetValue(typeID: type, payload: Array(slot.dropFirst())))
        case TypeID.guid: try exact(16); value = .dotNet(DotNetValue(typeID: type, payload: Array(slot.dropFirst())))
        case TypeID.uintPtr:
            guard payload == 4 || payload == 8 else { throw .corrupt("a UIntPtr of \(payload) bytes") }
            value = .dotNet(DotNetValue(typeID: type, payload: Array(slot.dropFirst())))
        case TypeID.null: try exact(0); value = .dotNet(DotNetValue(typeID: type, payload: []))
        case TypeID.object:
            let content = Array(slot.dropFirst())
            if content.starts(with: ownPayloadMark + [1]) {
                value = .data(Data(content.dropFirst(3)))
            } else if content.starts(with: ownPayloadMark + [2]) {
                value = .encoded(Data(content.dropFirst(3)))
            } else {
                value = .dotNet(DotNetValue(typeID: type, payload: content))
            }
        default:
            throw .corrupt("unknown type id \(type)")
        }
        return value
    }

    /// Moves past `HttpStaticObjectsCollection`'s form (objects of `<object runat="server"
    /// scope="session">` in global.asax): `Int32` count, then per object its name, `Boolean`
    /// hasInstance, and the instance (type byte and payload) or the declared type name and
    /// `Boolean` lateBound. Instances serialized with BinaryFormatter cannot be delimited.
    private static func skipStaticObjects(_ reader: inout DotNetReader) throws(Failure) {
        let count = Int(try reader.int32())
        guard count >= 0, count <= reader.remaining / 2 else { throw .corrupt("a static object count of \(count)") }
        for _ in 0..<count {
            _ = try reader.string()
            if try reader.boolean() {
                let type = try reader.byte()
                switch type {
                case TypeID.string: _ = try reader.string()
                case TypeID.null: break
                default:
                    guard let size = TypeID.fixedSize[type] else {
                        throw .corrupt("a static object of type \(type), which SessionHost cannot read")
                    }
                    try reader.skip(size)
                }
            } else {
                _ = try reader.string()
                _ = try reader.boolean()
            }
        }
    }

    /// `System.Web.Util.AltSerialization`'s type ids.
    enum TypeID {
        static let string: UInt8 = 1, int32: UInt8 = 2, boolean: UInt8 = 3, dateTime: UInt8 = 4
        static let decimal: UInt8 = 5, byte: UInt8 = 6, char: UInt8 = 7, single: UInt8 = 8
        static let double: UInt8 = 9, sbyte: UInt8 = 10, int16: UInt8 = 11, int64: UInt8 = 12
        static let uint16: UInt8 = 13, uint32: UInt8 = 14, uint64: UInt8 = 15, timeSpan: UInt8 = 16
        static let guid: UInt8 = 17, intPtr: UInt8 = 18, uintPtr: UInt8 = 19, object: UInt8 = 20
        static let null: UInt8 = 21

        /// Payload sizes of the fixed-size types on a 64-bit .NET (pointers are 8 bytes).
        static let fixedSize: [UInt8: Int] = [
            int32: 4, boolean: 1, dateTime: 8, decimal: 16, byte: 1, single: 4, double: 8, sbyte: 1,
            int16: 2, int64: 8, uint16: 2, uint32: 4, uint64: 8, timeSpan: 8, guid: 16, intPtr: 8, uintPtr: 8,
        ]
    }
}

/// .NET `BinaryWriter`'s encodings.
struct DotNetWriter {
    var bytes: [UInt8] = []

    mutating func byte(_ value: UInt8) { bytes.append(value) }

    mutating func int32(_ value: Int32) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func int64(_ value: Int64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// `Write7BitEncodedInt`: seven bits per byte, low bits first, the top bit set on all but the last.
    mutating func sevenBitInt(_ value: Int) {
        var rest = UInt32(truncatingIfNeeded: value)
        while rest >= 0x80 {
            bytes.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    mutating func string(_ text: String) {
        sevenBitInt(text.utf8.count)
        bytes.append(contentsOf: text.utf8)
    }
}

/// .NET `BinaryReader`'s decodings, bounds-checked.
struct DotNetReader {
    let bytes: [UInt8]
    var offset = 0

    var remaining: Int { bytes.count - offset }

    private mutating func take(_ count: Int) throws(ASPNETSessionStateFormat.Failure) -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else { throw .corrupt("it ends early") }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    mutating func skip(_ count: Int) throws(ASPNETSessionStateFormat.Failure) { _ = try take(count) }

    mutating func byte() throws(ASPNETSessionStateFormat.Failure) -> UInt8 { try take(1).first! }

    mutating func boolean() throws(ASPNETSessionStateFormat.Failure) -> Bool { try byte() != 0 }

    /// A little-endian unsigned integer of `size` bytes.
    mutating func unsigned(_ size: Int) throws(ASPNETSessionStateFormat.Failure) -> UInt64 {
        try take(size).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    mutating func int32() throws(ASPNETSessionStateFormat.Failure) -> Int32 { Int32(truncatingIfNeeded: try unsigned(4)) }

    mutating func int64() throws(ASPNETSessionStateFormat.Failure) -> Int64 { Int64(bitPattern: try unsigned(8)) }

    mutating func sevenBitInt() throws(ASPNETSessionStateFormat.Failure) -> Int {
        var value: UInt32 = 0
        for shift in stride(from: 0, through: 28, by: 7) {
            let byte = try byte()
            value |= UInt32(byte & 0x7F) << UInt32(shift)
            if byte & 0x80 == 0 {
                guard value <= UInt32(Int32.max) else { break }
                return Int(value)
            }
        }
        throw .corrupt("a malformed string length")
    }

    mutating func string() throws(ASPNETSessionStateFormat.Failure) -> String {
        let length = try sevenBitInt()
        return String(decoding: try take(length), as: UTF8.self)
    }
}
