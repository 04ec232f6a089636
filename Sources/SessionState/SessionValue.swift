public import Foundation

/// A value kept in a session. In-process stores keep it as is; out-of-process stores keep its
/// serialized form (`ASPNETSessionStateFormat` in SessionStateSerialization).
public enum SessionValue: Sendable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case date(Date)
    case data(Data)
    /// Any `Codable` value, kept as the value itself in process.
    case codable(any Codable & Sendable)
    /// A `Codable` value read back from a serialized session, decoded when first asked for as
    /// a type (the bytes are JSON).
    case encoded(Data)
    /// A value a .NET app stored whose type has no Swift counterpart here (Decimal, TimeSpan,
    /// Guid, null, an object serialized with BinaryFormatter, …), kept as ASP.NET wrote it.
    case dotNet(DotNetValue)

    /// The value as JSON-compatible text for diagnostics (the probe app, logs).
    public var jsonValue: Any {
        switch self {
        case .string(let value): value
        case .int(let value): value
        case .double(let value): value
        case .bool(let value): value
        case .date(let value): value.ISO8601Format()
        case .data(let value): value.base64EncodedString()
        case .codable(let value): (try? JSONEncoder().encode(value)).flatMap { String(data: $0, encoding: .utf8) } ?? "\(value)"
        case .encoded(let value): String(decoding: value, as: UTF8.self)
        case .dotNet(let value): value.description
        }
    }

    /// The `Codable` value of type `T`, decoding the serialized form if needed; nil for other
    /// kinds of value or JSON of another shape.
    public func decoded<T: Codable & Sendable>(as type: T.Type) -> T? {
        switch self {
        case .codable(let value): value as? T
        case .encoded(let data): try? JSONDecoder().decode(T.self, from: data)
        default: nil
        }
    }
}

/// A value in ASP.NET's serialized form (`System.Web.Util.AltSerialization`: a type id and its
/// payload) that SessionHost keeps without interpreting, so that it is written back unchanged.
public struct DotNetValue: Sendable, Hashable, CustomStringConvertible {
    /// AltSerialization's type id (5 Decimal, 16 TimeSpan, 17 Guid, 20 Object, 21 null, …).
    public var typeID: UInt8
    /// The bytes after the type id.
    public var payload: [UInt8]

    public init(typeID: UInt8, payload: [UInt8]) {
        self.typeID = typeID
        self.payload = payload
    }

    /// The .NET type's name.
    public var typeName: String {
        switch typeID {
        case 5: "System.Decimal"
        case 15: "System.UInt64"
        case 16: "System.TimeSpan"
        case 17: "System.Guid"
        case 19: "System.UIntPtr"
        case 20: "System.Object (BinaryFormatter)"
        case 21: "null"
        default: "type \(typeID)"
        }
    }

    public var description: String { typeID == 21 ? "null" : "\(typeName), \(payload.count) bytes" }
}

/// The items of one session: keys compare ignoring case (as ASP.NET's and ASP's), kept in the
/// order they were first set. Sessions hold a handful of items, so a scan beats hashing.
public struct SessionItems: Sendable {
    package struct Entry: Sendable {
        package var key: String
        /// The key lower-cased, for lookups.
        var folded: String
        package var value: SessionValue
        /// The value's bytes as an out-of-process store read them, while nobody changed it: it
        /// is written back exactly so (ASP.NET does the same, so types Swift has no counterpart
        /// for survive a Swift request).
        package var serialized: [UInt8]?
    }

    package internal(set) var entries: [Entry] = []
    /// Set by every change; the release step saves a session only when it is dirty, new, or its
    /// timeout changed.
    public internal(set) var isDirty = false

    public init() {}

    public var count: Int { entries.count }
    public var keys: [String] { entries.map(\.key) }

    public subscript(key: String) -> SessionValue? {
        get {
            let folded = key.lowercased()
            return entries.first { $0.folded == folded }?.value
        }
        set {
            let folded = key.lowercased()
            let index = entries.firstIndex { $0.folded == folded }
            isDirty = true
            switch (index, newValue) {
            case (let index?, let value?):
                entries[index].value = value
                entries[index].serialized = nil
            case (let index?, nil): entries.remove(at: index)
            case (nil, let value?): entries.append(Entry(key: key, folded: folded, value: value))
            case (nil, nil): break
            }
        }
    }

    public mutating func removeAll() {
        isDirty = true
        entries.removeAll()
    }

    /// The items in order, as (key, value).
    public var elements: [(key: String, value: SessionValue)] {
        entries.map { ($0.key, $0.value) }
    }

    /// Adds an item read from a store, with its serialized form, without marking the items
    /// changed.
    package mutating func appendStored(key: String, value: SessionValue, serialized: [UInt8]) {
        entries.append(Entry(key: key, folded: key.lowercased(), value: value, serialized: serialized))
    }

    /// Marks the items saved.
    mutating func markClean() { isDirty = false }
}
