import Foundation
import Testing
@testable import SessionState

struct Cart: Codable, Sendable, Equatable {
    var lines: [String]
    var total: Double
    var note: String?
}

struct NotJSON: Codable, Sendable {
    var value: Double // NaN cannot be written as JSON
}

struct SerializerTests {
    typealias Failure = SessionStateSerializer.Failure

    static func roundTrip(_ data: SessionStateStoreData) throws -> SessionStateStoreData {
        try SessionStateSerializer.decode(SessionStateSerializer.encode(data))
    }

    static let values: [(String, SessionValue)] = {
        var random = SplitMix64(seed: 42)
        let large = Data((0..<1_000_000).map { _ in UInt8.random(in: 0...255, using: &random) })
        return [
            ("string", .string("hello")),
            ("empty string", .string("")),
            ("unicode", .string("ünïcødé ✓ 日本語 🇨🇭 e\u{301}")),
            ("NUL inside", .string("a\0b")),
            ("long string", .string(String(repeating: "x", count: 100_000))),
            ("int 0", .int(0)),
            ("int 1", .int(1)),
            ("int -1", .int(-1)),
            ("int 63", .int(63)),
            ("int -64", .int(-64)),
            ("int 64", .int(64)),
            ("int -65", .int(-65)),
            ("int 300", .int(300)),
            ("int max", .int(.max)),
            ("int min", .int(.min)),
            ("int min+1", .int(.min + 1)),
            ("double 0", .double(0)),
            ("double -0", .double(-0.0)),
            ("double pi", .double(.pi)),
            ("double inf", .double(.infinity)),
            ("double -inf", .double(-.infinity)),
            ("double nan", .double(.nan)),
            ("double signalling nan", .double(.signalingNaN)),
            ("double nan payload", .double(Double(bitPattern: 0xFFF8_0000_DEAD_BEEF))),
            ("double tiny", .double(.leastNonzeroMagnitude)),
            ("double huge", .double(.greatestFiniteMagnitude)),
            ("bool true", .bool(true)),
            ("bool false", .bool(false)),
            ("date now", .date(Date())),
            ("date fraction", .date(Date(timeIntervalSinceReferenceDate: 800_000_000.123_456_789))),
            ("date 1970", .date(Date(timeIntervalSince1970: 0))),
            ("date distant past", .date(.distantPast)),
            ("date distant future", .date(.distantFuture)),
            ("data empty", .data(Data())),
            ("data small", .data(Data([0, 0xFF, 0x80]))),
            ("data 1 MB", .data(large)),
            ("encoded", .encoded(Data(#"{"a":1}"#.utf8))),
        ]
    }()

    @Test(arguments: 0..<values.count)
    func everyValueSurvivesARoundTrip(index: Int) throws {
        let (name, value) = Self.values[index]
        let data = SessionStateStoreData(items: items(["First": .int(7), name: value, "last": .string("end")]), timeout: 20)
        let back = try Self.roundTrip(data)
        #expect(back.timeout == 20)
        #expect(back.items.keys == ["First", name, "last"])
        let restored = try #require(back.items[name])
        #expect(same(restored, value), "\(name): \(restored)")
        #expect(!back.items.isDirty)
    }

    @Test func manyItemsInOneBlobKeepOrderAndSpelling() throws {
        var all = SessionItems()
        for (name, value) in Self.values { all[name.uppercased()] = value }
        let back = try Self.roundTrip(SessionStateStoreData(items: all, timeout: 525_600))
        #expect(back.timeout == 525_600)
        #expect(back.items.keys == all.keys)
        for (key, value) in all.elements {
            #expect(back.items[key].map { same($0, value) } == true, "\(key)")
        }
    }

    @Test func codableValuesComeBackEncodedAndDecodeAsTheirType() throws {
        let cart = Cart(lines: ["book", "pen"], total: 12.5, note: nil)
        let data = SessionStateStoreData(items: items(["cart": .codable(cart), "list": .codable([1, 2, 3])]), timeout: 20)
        let back = try Self.roundTrip(data)
        let restored = try #require(back.items["cart"])
        guard case .encoded(let json) = restored else {
            Issue.record("expected .encoded, got \(restored)")
            return
        }
        #expect(try JSONDecoder().decode(Cart.self, from: json) == cart)
        #expect(restored.decoded(as: Cart.self) == cart)
        #expect(restored.decoded(as: [Int].self) == nil)
        #expect(back.items["list"]?.decoded(as: [Int].self) == [1, 2, 3])
        // In process the value is kept as is.
        #expect(SessionValue.codable(cart).decoded(as: Cart.self) == cart)
        #expect(SessionValue.string("x").decoded(as: String.self) == nil)

        // Through the session API.
        let contents = SessionContents(data: back, isNew: false, isReadOnly: true, timeoutRange: 1...10, timeoutMessage: { _ in "" })
        let session = ASPNETSession(contents: contents, sessionID: ASPNETSessionID.generate(), mode: .sqlServer, cookieMode: .useCookies, isCookieless: false)
        #expect(session.value("CART", as: Cart.self) == cart)
        #expect(session.value("cart", as: String.self) == nil)

        // A second round trip keeps the JSON as is.
        let again = try Self.roundTrip(back)
        #expect(again.items["cart"].map { same($0, restored) } == true)
    }

    @Test func aValueThatCannotBeJSONIsReported() {
        let data = SessionStateStoreData(items: items(["ok": .int(1), "Bad": .codable(NotJSON(value: .nan))]), timeout: 20)
        let error = #expect(throws: Failure.self) { _ = try SessionStateSerializer.encode(data) }
        guard case .unencodable(let key, _)? = error else {
            Issue.record("expected .unencodable, got \(String(describing: error))")
            return
        }
        #expect(key == "Bad")
        #expect(error?.description.hasPrefix("Unable to serialize the session state: the value of 'Bad' cannot be encoded as JSON") == true)
    }

    @Test func fourShortStringsMakeACompactBlob() throws {
        let data = SessionStateStoreData(items: items(["user": .string("alice"), "lang": .string("en-GB"), "theme": .string("dark"), "step": .string("3")]), timeout: 20)
        let blob = try SessionStateSerializer.encode(data)
        #expect(blob.count < 80, "\(blob.count) bytes")
        #expect(Array(blob.prefix(3)) == [0x53, 0x48, 1])
        #expect(blob.last == 0xFF)
        // An empty session: header, timeout, count, trailer.
        #expect(try SessionStateSerializer.encode(SessionStateStoreData(timeout: 20)) == [0x53, 0x48, 1, 20, 0, 0xFF])
    }

    @Test func theLayoutIsTheDocumentedOne() throws {
        let data = SessionStateStoreData(items: items(["k": .int(-2), "b": .bool(true), "s": .string("é")]), timeout: 300)
        let blob = try SessionStateSerializer.encode(data)
        #expect(blob == [
            0x53, 0x48, 1,
            0xAC, 0x02, // 300 as LEB128
            3,
            1, 0x6B, 2, 3, // "k", Int, zig-zag(-2) = 3
            1, 0x62, 4, 1, // "b", Bool, true
            1, 0x73, 1, 2, 0xC3, 0xA9, // "s", String, 2 bytes of UTF-8
            0xFF,
        ])
    }

    // MARK: Corrupt input

    static func valid() throws -> [UInt8] {
        try SessionStateSerializer.encode(SessionStateStoreData(items: items([
            "name": .string("alice"), "n": .int(-123_456), "pi": .double(.pi), "ok": .bool(true),
            "when": .date(Date(timeIntervalSinceReferenceDate: 1)), "raw": .data(Data([1, 2, 3])),
            "cart": .codable(Cart(lines: ["x"], total: 1, note: "n")),
        ]), timeout: 20))
    }

    static func failure(_ bytes: [UInt8]) -> Failure? {
        do {
            _ = try SessionStateSerializer.decode(bytes)
            return nil
        } catch {
            return error
        }
    }

    @Test func everyTruncationIsRejected() throws {
        let blob = try Self.valid()
        #expect(try SessionStateSerializer.decode(blob).items.count == 7)
        for length in 0..<blob.count {
            let failure = Self.failure(Array(blob.prefix(length)))
            guard case .corrupt? = failure else {
                Issue.record("prefix of \(length) of \(blob.count) bytes: \(String(describing: failure))")
                continue
            }
        }
    }

    @Test func aWrongMagicIsCorrupt() throws {
        var blob = try Self.valid()
        blob[0] = 0x54
        #expect(Self.failure(blob) == .corrupt("no header"))
        blob = try Self.valid()
        blob[1] = 0
        #expect(Self.failure(blob) == .corrupt("no header"))
        #expect(Self.failure([]) == .corrupt("no header"))
        #expect(Self.failure(Array("<html>".utf8)) == .corrupt("no header"))
    }

    @Test(arguments: [UInt8(0), 2, 3, 0x7F, 0xFF])
    func anotherVersionIsUnsupported(version: UInt8) throws {
        var blob = try Self.valid()
        blob[2] = version
        let failure = Self.failure(blob)
        #expect(failure == .unsupportedVersion(version))
        #expect(failure?.description == "The session state was written in format version \(version), which this build cannot read.")
    }

    @Test func aBadTrailerIsCorrupt() throws {
        let blob = try Self.valid()
        #expect(Self.failure(Array(blob.dropLast()) + [0xFE]) == .corrupt("bad trailer"))
        #expect(Self.failure(Array(blob.dropLast()) + [0x00]) == .corrupt("bad trailer"))
        #expect(Self.failure(blob + [0xFF]) == .corrupt("bad trailer"))
        #expect(Self.failure(blob + [0x00]) == .corrupt("bad trailer"))
        #expect(Self.failure(blob)?.description == nil)
        #expect(Failure.corrupt("bad trailer").description == "The session state information is invalid and might be corrupted (bad trailer).")
    }

    /// A hand-built blob with one item "k" whose type byte and payload are given.
    static func oneItem(type: UInt8, payload: [UInt8]) -> [UInt8] {
        [0x53, 0x48, 1, 20, 1, 1, 0x6B, type] + payload + [0xFF]
    }

    @Test func theHandBuiltBlobIsValid() throws {
        let data = try SessionStateSerializer.decode(Self.oneItem(type: 4, payload: [1]))
        #expect(data.items["k"].map { same($0, .bool(true)) } == true)
    }

    @Test(arguments: [UInt8(0), 8, 20, 21, 0x80, 0xFF])
    func anUnknownTypeByteIsCorrupt(type: UInt8) {
        #expect(Self.failure(Self.oneItem(type: type, payload: [0])) == .corrupt("unknown type \(type)"))
    }

    @Test func otherMalformedPayloadsAreCorrupt() {
        // A Bool that is neither 0 nor 1.
        #expect(Self.failure(Self.oneItem(type: 4, payload: [2])) == .corrupt("bad Bool"))
        // Invalid UTF-8 in a value and in a key.
        #expect(Self.failure(Self.oneItem(type: 1, payload: [2, 0xC3, 0x28])) == .corrupt("invalid UTF-8"))
        #expect(Self.failure(Self.oneItem(type: 1, payload: [1, 0xFF])) == .corrupt("invalid UTF-8"))
        #expect(Self.failure(Self.oneItem(type: 1, payload: [3, 0xED, 0xA0, 0x80])) == .corrupt("invalid UTF-8")) // a surrogate
        #expect(Self.failure([0x53, 0x48, 1, 20, 1, 2, 0xC0, 0x80, 4, 1, 0xFF]) == .corrupt("invalid UTF-8")) // overlong NUL key
        // A number with more than ten 7-bit groups.
        #expect(Self.failure(Self.oneItem(type: 2, payload: [UInt8](repeating: 0x80, count: 11) + [0])) == .corrupt("overlong number"))
        // Doubles and dates need 8 bytes.
        #expect(Self.failure(Self.oneItem(type: 3, payload: [1, 2, 3])) != nil)
        #expect(Self.failure(Self.oneItem(type: 5, payload: [])) != nil)
    }

    @Test func hugeCountsAndLengthsAreRejectedWithoutAllocating() {
        let maxLEB: [UInt8] = [UInt8](repeating: 0xFF, count: 9) + [0x01] // UInt64.max
        // Item count.
        #expect(Self.failure([0x53, 0x48, 1, 20] + maxLEB + [0xFF]) == .corrupt("implausible header"))
        #expect(Self.failure([0x53, 0x48, 1, 20, 0x7F, 0xFF]) == .corrupt("implausible header"))
        // Timeout beyond Int32.
        #expect(Self.failure([0x53, 0x48, 1] + maxLEB + [0, 0xFF]) == .corrupt("implausible header"))
        #expect(Self.failure([0x53, 0x48, 1, 0x80, 0x80, 0x80, 0x80, 0x08, 0, 0xFF]) == .corrupt("implausible header")) // 2^31
        // String, data and JSON lengths.
        for type: UInt8 in [1, 6, 7] {
            #expect(Self.failure(Self.oneItem(type: type, payload: maxLEB)) == .corrupt("truncated"))
            #expect(Self.failure(Self.oneItem(type: type, payload: [0xFF, 0xFF, 0x03])) == .corrupt("truncated"))
        }
        // Key length.
        #expect(Self.failure([0x53, 0x48, 1, 20, 1] + maxLEB + [0xFF]) == .corrupt("truncated"))
        // More items announced than present.
        #expect(Self.failure([0x53, 0x48, 1, 20, 3, 1, 0x6B, 4, 1, 0xFF]) != nil)
    }

    @Test func randomMutationsNeverCrashAndDecodedResultsReencode() throws {
        let blob = try Self.valid()
        var random = SplitMix64(seed: 0xF022)
        var accepted = 0
        var rejected = 0
        for _ in 0..<2000 {
            var bytes = blob
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                switch Int.random(in: 0..<6, using: &random) {
                case 0 where !bytes.isEmpty: bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                case 1 where !bytes.isEmpty: bytes[Int.random(in: 0..<bytes.count, using: &random)] ^= 1 << UInt8.random(in: 0..<8, using: &random)
                case 2: bytes.insert(UInt8.random(in: 0...255, using: &random), at: Int.random(in: 0...bytes.count, using: &random))
                case 3 where !bytes.isEmpty: bytes.remove(at: Int.random(in: 0..<bytes.count, using: &random))
                case 4: bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &random)))
                case 5 where !bytes.isEmpty: bytes[Int.random(in: 0..<bytes.count, using: &random)] = [0x00, 0x7F, 0x80, 0xFF].randomElement(using: &random)!
                default: break
                }
            }
            do {
                let data = try SessionStateSerializer.decode(bytes)
                accepted += 1
                // Whatever was accepted is a session that can be stored again.
                let again = try SessionStateSerializer.decode(SessionStateSerializer.encode(data))
                #expect(again.items.keys == data.items.keys)
                #expect(again.timeout == data.timeout)
            } catch {
                rejected += 1
            }
        }
        #expect(accepted + rejected == 2000)
        #expect(rejected > 1000) // most mutations must be noticed
    }
}
