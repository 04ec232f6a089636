import Foundation

/// The serialized form of a session, for stores outside the process: compact, versioned.
///
/// Layout (version 1): the bytes `S` `H` and the version `1`; the timeout in minutes and the
/// item count as unsigned LEB128; then per item the key (LEB128 length + UTF-8), a type byte
/// and the value; then a trailing `0xFF` (a truncated blob is detected, as ASP.NET's).
///
/// | type | value |
/// |---|---|
/// | 1 String | LEB128 length + UTF-8 |
/// | 2 Int | zig-zag LEB128 (64-bit) |
/// | 3 Double | 8 bytes, IEEE 754 little-endian |
/// | 4 Bool | 1 byte, 0 or 1 |
/// | 5 Date | 8 bytes, seconds since 2001-01-01 (`Date`'s own reference, so exact) as IEEE 754 little-endian |
/// | 6 Data | LEB128 length + bytes |
/// | 7 Codable | LEB128 length + JSON (read back as `.encoded`, decoded when asked for) |
public enum SessionStateSerializer {
    public static let version: UInt8 = 1
    static let magic: [UInt8] = [0x53, 0x48]

    public enum Failure: Error, Sendable, Hashable, CustomStringConvertible {
        case corrupt(String)
        case unsupportedVersion(UInt8)
        case unencodable(key: String, reason: String)

        public var description: String {
            switch self {
            case .corrupt(let detail): "The session state information is invalid and might be corrupted (\(detail))."
            case .unsupportedVersion(let version): "The session state was written in format version \(version), which this build cannot read."
            case .unencodable(let key, let reason): "Unable to serialize the session state: the value of '\(key)' cannot be encoded as JSON (\(reason))."
            }
        }
    }

    public static func encode(_ data: SessionStateStoreData) throws(Failure) -> [UInt8] {
        var out = magic + [version]
        out.reserveCapacity(64)
        writeUnsigned(UInt64(max(0, data.timeout)), to: &out)
        writeUnsigned(UInt64(data.items.count), to: &out)
        for entry in data.items.entries {
            writeBytes(Array(entry.key.utf8), to: &out)
            switch entry.value {
            case .string(let value):
                out.append(1)
                writeBytes(Array(value.utf8), to: &out)
            case .int(let value):
                out.append(2)
                writeUnsigned(UInt64(bitPattern: Int64((value << 1) ^ (value >> (Int.bitWidth - 1)))), to: &out)
            case .double(let value):
                out.append(3)
                writeFixed(value.bitPattern, to: &out)
            case .bool(let value):
                out.append(4)
                out.append(value ? 1 : 0)
            case .date(let value):
                out.append(5)
                writeFixed(value.timeIntervalSinceReferenceDate.bitPattern, to: &out)
            case .data(let value):
                out.append(6)
                writeBytes(Array(value), to: &out)
            case .codable(let value):
                out.append(7)
                do {
                    writeBytes(Array(try JSONEncoder().encode(value)), to: &out)
                } catch {
                    throw .unencodable(key: entry.key, reason: "\(error)")
                }
            case .encoded(let json):
                out.append(7)
                writeBytes(Array(json), to: &out)
            }
        }
        out.append(0xFF)
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws(Failure) -> SessionStateStoreData {
        var reader = Reader(buffer: bytes)
        guard bytes.count >= 4, Array(bytes[0..<2]) == magic else { throw .corrupt("no header") }
        guard bytes[2] == version else { throw .unsupportedVersion(bytes[2]) }
        reader.offset = 3
        let timeout = try reader.unsigned()
        let count = try reader.unsigned()
        guard timeout <= UInt64(Int32.max), count <= UInt64(bytes.count) else { throw .corrupt("implausible header") }
        var items = SessionItems()
        for _ in 0..<count {
            let key = try reader.string()
            let value: SessionValue
            switch try reader.byte() {
            case 1: value = .string(try reader.string())
            case 2:
                let raw = try reader.unsigned()
                value = .int(Int(Int64(bitPattern: raw >> 1) ^ -Int64(bitPattern: raw & 1)))
            case 3: value = .double(Double(bitPattern: try reader.fixed()))
            case 4:
                let flag = try reader.byte()
                guard flag <= 1 else { throw .corrupt("bad Bool") }
                value = .bool(flag == 1)
            case 5: value = .date(Date(timeIntervalSinceReferenceDate: Double(bitPattern: try reader.fixed())))
            case 6: value = .data(Data(try reader.bytes()))
            case 7: value = .encoded(Data(try reader.bytes()))
            case let type: throw .corrupt("unknown type \(type)")
            }
            items[key] = value
        }
        guard try reader.byte() == 0xFF, reader.offset == bytes.count else { throw .corrupt("bad trailer") }
        items.markClean()
        return SessionStateStoreData(items: items, timeout: Int(timeout))
    }

    private static func writeUnsigned(_ value: UInt64, to out: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            out.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
    }

    private static func writeBytes(_ bytes: [UInt8], to out: inout [UInt8]) {
        writeUnsigned(UInt64(bytes.count), to: &out)
        out += bytes
    }

    private static func writeFixed(_ value: UInt64, to out: inout [UInt8]) {
        for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    private struct Reader {
        let buffer: [UInt8]
        var offset = 0

        mutating func byte() throws(Failure) -> UInt8 {
            guard offset < buffer.count else { throw .corrupt("truncated") }
            defer { offset += 1 }
            return buffer[offset]
        }

        mutating func unsigned() throws(Failure) -> UInt64 {
            var value: UInt64 = 0
            for shift in stride(from: 0, to: 64, by: 7) {
                let next = try byte()
                value |= UInt64(next & 0x7F) << UInt64(shift)
                if next < 0x80 { return value }
            }
            throw .corrupt("overlong number")
        }

        mutating func fixed() throws(Failure) -> UInt64 {
            var value: UInt64 = 0
            for shift in stride(from: 0, to: 64, by: 8) { value |= UInt64(try byte()) << UInt64(shift) }
            return value
        }

        mutating func bytes() throws(Failure) -> [UInt8] {
            let count = try unsigned()
            guard count <= UInt64(buffer.count - offset) else { throw .corrupt("truncated") }
            defer { offset += Int(count) }
            return Array(buffer[offset..<(offset + Int(count))])
        }

        mutating func string() throws(Failure) -> String {
            let raw = try bytes()
            guard let text = String(validating: raw, as: UTF8.self) else { throw .corrupt("invalid UTF-8") }
            return text
        }
    }
}
