/// ASP.NET session IDs (`SessionIDManager`): 24 characters from `a–z0–5`, 15 bytes (120 bits)
/// from the system CSPRNG, base-32 encoded.
public enum ASPNETSessionID {
    /// Index 0…31 → `a`…`z`, `0`…`5`.
    static let alphabet = Array("abcdefghijklmnopqrstuvwxyz012345".utf8)
    public static let length = 24
    /// Longer incoming values are treated as absent (`SessionIDMaxLength`).
    public static let maxLength = 80

    /// A new ID. `SystemRandomNumberGenerator` reads the kernel's CSPRNG (getrandom).
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: 15)
        for index in bytes.indices { bytes[index] = generator.next() }
        return encode(bytes)
    }

    /// ASP.NET's packing: each 5-byte group gives 8 characters; the first four bytes are read as a
    /// little-endian 32-bit integer and give six 5-bit groups from the low bits, its top two bits
    /// with the fifth byte give two more.
    static func encode(_ bytes: [UInt8]) -> String {
        var characters: [UInt8] = []
        characters.reserveCapacity(length)
        for group in stride(from: 0, to: bytes.count, by: 5) {
            var word = UInt32(bytes[group]) | UInt32(bytes[group + 1]) << 8 | UInt32(bytes[group + 2]) << 16 | UInt32(bytes[group + 3]) << 24
            for _ in 0..<6 {
                characters.append(alphabet[Int(word & 31)])
                word >>= 5
            }
            let last = UInt32(bytes[group + 4]) << 2 | word
            characters.append(alphabet[Int(last & 31)])
            characters.append(alphabet[Int((last >> 5) & 31)])
        }
        return String(decoding: characters, as: UTF8.self)
    }

    /// The ID an incoming value stands for, or nil when it is none: lower-cased first (as the
    /// default manager's `Decode`), then exactly 24 characters of the alphabet. Values over 80
    /// characters are nil too (never an error).
    public static func normalize(_ value: String) -> String? {
        mapBytes(of: value, length: length) { byte in
            let lower = (0x41...0x5A).contains(byte) ? byte | 0x20 : byte
            return (0x61...0x7A).contains(lower) || (0x30...0x35).contains(lower) ? lower : nil
        }
    }
}

/// Classic ASP session IDs: 24 upper-case letters from the CSPRNG (26^24, about 113 bits; IIS's
/// own values use only A–P), sent in a cookie `ASPSESSIONID` + 8 letters.
public enum ASPSessionID {
    public static let length = 24

    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        var letters: [UInt8] = []
        letters.reserveCapacity(length)
        while letters.count < length {
            // 234 = 9 × 26: rejecting the rest keeps every letter equally likely.
            let byte: UInt8 = generator.next()
            if byte < 234 { letters.append(0x41 + byte % 26) }
        }
        return String(decoding: letters, as: UTF8.self)
    }

    /// The ID an incoming cookie value stands for: 24 letters, upper-cased.
    public static func normalize(_ value: String) -> String? {
        mapBytes(of: value, length: length) { byte in
            let letter = (0x61...0x7A).contains(byte) ? byte & ~0x20 : byte
            return (0x41...0x5A).contains(letter) ? letter : nil
        }
    }

    /// `Session.SessionID`: a positive 32-bit number derived from the ID. Stable for the session's
    /// life (IIS numbers sessions as they start); like IIS's, it is not unique and is no key.
    public static func number(of id: String) -> Int {
        Int(fnv1a(id) & 0x7FFF_FFFF)
    }

    /// The cookie name of an application: `ASPSESSIONID` + 8 upper-case letters derived from the
    /// site and application path, so it survives restarts (IIS derives a new suffix per worker
    /// process, and browsers pile up cookies).
    public static func cookieName(site: Int, applicationPath: String) -> String {
        var hash = fnv1a("\(site):\(applicationPath.lowercased())")
        var suffix: [UInt8] = []
        for _ in 0..<8 {
            suffix.append(0x41 + UInt8(hash % 26))
            hash /= 26
        }
        return "ASPSESSIONID" + String(decoding: suffix, as: UTF8.self)
    }

    /// FNV-1a, 64 bits: stable across runs and platforms (Swift's `Hasher` is seeded per process).
    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return hash
    }
}

/// `value` with each byte mapped, or nil when it is not `length` bytes long or `map` rejects a
/// byte.
private func mapBytes(of value: String, length: Int, _ map: (UInt8) -> UInt8?) -> String? {
    guard value.utf8.count == length else { return nil }
    var mapped: [UInt8] = []
    mapped.reserveCapacity(length)
    for byte in value.utf8 {
        guard let next = map(byte) else { return nil }
        mapped.append(next)
    }
    return String(decoding: mapped, as: UTF8.self)
}

/// `sessionIDManagerType` (ASP.NET's `ISessionIDManager`): how an application's ASP.NET session
/// IDs are made, checked, and written into (and read from) the cookie or URL. Swift cannot load
/// a type by name, so the app registers its managers (`SessionOptions.idManagers`) under the
/// type names a web.config gives; `builtIn` (ASP.NET's `SessionIDManager`) is the default.
///
/// Whatever a manager says, SessionHost checks every ID before it reaches a store (1–80
/// characters of `A–Z a–z 0–9 - _ .`: IDs travel in cookies, URLs and store keys), and an ID
/// that no store knows is still never adopted.
public struct SessionIDManager: Sendable {
    /// The name `sessionIDManagerType` gives (e.g. the .NET type name of an existing web.config).
    public var typeName: String
    /// A new ID (`CreateSessionID`); use the system CSPRNG.
    public var create: @Sendable () -> String
    /// Whether an ID (decoded) is one this manager could have made (`Validate`).
    public var validate: @Sendable (String) -> Bool
    /// The ID as the cookie or URL carries it (`Encode`).
    public var encode: @Sendable (String) -> String
    /// The ID a cookie or URL value stands for, nil when none (`Decode`).
    public var decode: @Sendable (String) -> String?

    public init(
        typeName: String, create: @escaping @Sendable () -> String, validate: @escaping @Sendable (String) -> Bool,
        encode: @escaping @Sendable (String) -> String = { $0 }, decode: @escaping @Sendable (String) -> String? = { $0 }
    ) {
        self.typeName = typeName
        self.create = create
        self.validate = validate
        self.encode = encode
        self.decode = decode
    }

    /// ASP.NET's `SessionIDManager`: 24 characters of `a–z0–5` (`ASPNETSessionID`).
    public static let builtIn = SessionIDManager(
        typeName: builtInTypeName, create: ASPNETSessionID.generate,
        validate: { ASPNETSessionID.normalize($0) == $0 }, decode: ASPNETSessionID.normalize)

    static let builtInTypeName = "System.Web.SessionState.SessionIDManager"

    /// Whether `id` may travel in a cookie, a URL and a store key at all.
    public static func isSafe(_ id: String) -> Bool {
        let bytes = id.utf8
        guard (1...ASPNETSessionID.maxLength).contains(bytes.count) else { return false }
        return bytes.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x2D || byte == 0x5F || byte == 0x2E
        }
    }

    /// The ID an incoming cookie or URL value stands for: decoded, then checked by SessionHost
    /// and by the manager. Nil when it is none (never an error).
    public func incomingID(_ value: String) -> String? {
        // The built-in manager's decoding already checks everything (and is on every request).
        if typeName == Self.builtInTypeName { return ASPNETSessionID.normalize(value) }
        // A value far over the limit is not decoded at all.
        guard value.utf8.count <= 4 * ASPNETSessionID.maxLength, let id = decode(value), Self.isSafe(id), validate(id) else { return nil }
        return id
    }

    /// A new ID, checked as incoming ones are; nil when the manager made one SessionHost cannot
    /// send.
    public func newID() -> String? {
        let id = create()
        return Self.isSafe(id) && validate(id) ? id : nil
    }

    /// The value that carries `id`, if it can travel in a cookie and a URL.
    public func outgoingValue(_ id: String) -> String? {
        let value = encode(id)
        return Self.isSafe(value) ? value : nil
    }
}
