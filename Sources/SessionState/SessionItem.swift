public import Foundation

/// A typed session key: its name and the type of its value, declared once and used everywhere.
///
/// ```swift
/// extension SessionItem where Value == Cart {
///     static var cart: SessionItem<Cart> { "cart" }
/// }
/// let cart = session[.cart] ?? Cart()
/// try session.update(.visits, default: 0) { $0 += 1 }
/// ```
///
/// (Swift has no stored `static let` in a generic type's extension, hence the computed
/// property; a `static let` in a namespace of the app's own works too, as `session[Keys.cart]`.)
///
/// Names stay ASP's and ASP.NET's: compared ignoring case, so `"Cart"` and `"cart"` are one item,
/// and the string API (`session["cart"]`) reaches the same value. `String`, `Int`, `Double`,
/// `Bool`, `Date` and `Data` are stored as the matching ASP.NET types (an ASP.NET app sharing the
/// session reads them as such); any other `Codable` value is kept as is in process and as JSON
/// out of process, as `set(_:codable:)` does.
public struct SessionItem<Value: Codable & Sendable>: Sendable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The item's name in the session.
    public let name: String

    public init(_ name: String) {
        self.name = name
    }

    public init(stringLiteral name: String) {
        self.name = name
    }

    public var description: String { name }

    /// `value` as a session value: ASP.NET's own type where there is one.
    func encode(_ value: Value) -> SessionValue {
        (value as? any NativeSessionValue)?.sessionValue ?? .codable(value)
    }

    /// The stored value as `Value`, or nil when it holds something else.
    func decode(_ stored: SessionValue) -> Value? {
        if let native = Value.self as? any NativeSessionValue.Type {
            return native.init(sessionValue: stored) as? Value
        }
        return stored.decoded(as: Value.self)
    }
}

/// The types ASP.NET's session serialization knows by itself (`AltSerialization`).
protocol NativeSessionValue {
    init?(sessionValue: SessionValue)
    var sessionValue: SessionValue { get }
}

extension String: NativeSessionValue {
    init?(sessionValue: SessionValue) {
        guard case .string(let value) = sessionValue else { return nil }
        self = value
    }
    var sessionValue: SessionValue { .string(self) }
}

extension Int: NativeSessionValue {
    init?(sessionValue: SessionValue) {
        guard case .int(let value) = sessionValue else { return nil }
        self = value
    }
    var sessionValue: SessionValue { .int(self) }
}

extension Double: NativeSessionValue {
    init?(sessionValue: SessionValue) {
        switch sessionValue {
        case .double(let value): self = value
        case .int(let value): self = Double(value)
        default: return nil
        }
    }
    var sessionValue: SessionValue { .double(self) }
}

extension Bool: NativeSessionValue {
    init?(sessionValue: SessionValue) {
        guard case .bool(let value) = sessionValue else { return nil }
        self = value
    }
    var sessionValue: SessionValue { .bool(self) }
}

extension Date: NativeSessionValue {
    init?(sessionValue: SessionValue) {
        guard case .date(let value) = sessionValue else { return nil }
        self = value
    }
    var sessionValue: SessionValue { .date(self) }
}

extension Data: NativeSessionValue {
    init?(sessionValue: SessionValue) {
        guard case .data(let value) = sessionValue else { return nil }
        self = value
    }
    var sessionValue: SessionValue { .data(self) }
}

extension SessionObject {
    /// The value of `item`, or nil when the session has none (or a value of another type).
    public subscript<Value>(item: SessionItem<Value>) -> Value? {
        self[item.name].flatMap(item.decode)
    }

    /// Stores `value` under `item` (refused in a read-only request).
    public func set<Value>(_ item: SessionItem<Value>, _ value: Value) throws(SessionError) {
        try set(item.name, item.encode(value))
    }

    /// Changes `item`'s value, starting from `default` when it has none, and stores the result;
    /// returns it. (A read-write request holds the session's lock, so no other request changes
    /// the item in between.)
    @discardableResult
    public func update<Value>(_ item: SessionItem<Value>, default initial: Value, _ change: (inout Value) -> Void) throws(SessionError) -> Value {
        guard !isReadOnly else { throw .readOnly }
        var value = self[item] ?? initial
        change(&value)
        try set(item, value)
        return value
    }

    /// Removes `item` (refused in a read-only request).
    public func remove<Value>(_ item: SessionItem<Value>) throws(SessionError) {
        try remove(item.name)
    }
}
