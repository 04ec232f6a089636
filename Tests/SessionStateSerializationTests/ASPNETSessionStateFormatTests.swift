import Foundation
import Testing
@testable import SessionState
@testable import SessionStateSerialization

struct Cart: Codable, Sendable, Equatable {
    var lines: [String]
    var total: Double
}

struct NotJSON: Codable, Sendable {
    var value: Double  // NaN cannot be written as JSON
}

typealias Format = ASPNETSessionStateFormat

func items(_ pairs: KeyValuePairs<String, SessionValue>) -> SessionItems {
    var items = SessionItems()
    for (key, value) in pairs { items[key] = value }
    return items
}

/// Two values are the same kind and value (dates to .NET's 100 ns tick, NaNs by bits).
func same(_ a: SessionValue, _ b: SessionValue) -> Bool {
    switch (a, b) {
    case (.string(let x), .string(let y)): x == y
    case (.int(let x), .int(let y)): x == y
    case (.double(let x), .double(let y)): x.bitPattern == y.bitPattern || x == y
    case (.bool(let x), .bool(let y)): x == y
    case (.date(let x), .date(let y)): abs(x.timeIntervalSince(y)) < 1e-7 || abs(x.timeIntervalSince(y)) <= abs(x.timeIntervalSince1970) * 1e-15
    case (.data(let x), .data(let y)): x == y
    case (.encoded(let x), .encoded(let y)): x == y
    case (.dotNet(let x), .dotNet(let y)): x == y
    default: false
    }
}

/// .NET `BinaryWriter` output written out by hand, independently of the encoder.
enum Bytes {
    static func int32(_ value: Int32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) } }
    static func int64(_ value: Int64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) } }
    /// A string of fewer than 128 UTF-8 bytes: one length byte.
    static func string(_ text: String) -> [UInt8] { [UInt8(text.utf8.count)] + Array(text.utf8) }

    /// A session with timeout 20 and one item "k" whose value slot (type byte + payload) is given.
    static func oneItem(_ slot: [UInt8]) -> [UInt8] {
        int32(20) + [1, 0] + int32(1) + int32(-1) + string("k") + int32(Int32(slot.count)) + slot + [0xFF]
    }
}

struct ASPNETSessionStateFormatTests {
    static func roundTrip(_ data: SessionStateStoreData, compressed: Bool = false) throws -> SessionStateStoreData {
        try Format.decode(Format.encode(data, compressed: compressed), compressed: compressed)
    }

    static let values: [(String, SessionValue)] = [
        ("string", .string("hello")),
        ("empty string", .string("")),
        ("unicode", .string("ünïcødé ✓ 日本語 🇨🇭 e\u{301}")),
        ("NUL inside", .string("a\0b")),
        ("long string", .string(String(repeating: "x", count: 100_000))),
        ("int 0", .int(0)),
        ("int -1", .int(-1)),
        ("int32 max", .int(Int(Int32.max))),
        ("int32 min", .int(Int(Int32.min))),
        ("past int32", .int(Int(Int32.max) + 1)),
        ("int max", .int(.max)),
        ("int min", .int(.min)),
        ("double pi", .double(.pi)),
        ("double -0", .double(-0.0)),
        ("double inf", .double(.infinity)),
        ("double nan payload", .double(Double(bitPattern: 0xFFF8_0000_DEAD_BEEF))),
        ("double tiny", .double(.leastNonzeroMagnitude)),
        ("bool true", .bool(true)),
        ("bool false", .bool(false)),
        ("date 1970", .date(Date(timeIntervalSince1970: 0))),
        ("date ticks", .date(Date(timeIntervalSince1970: 1_700_000_000.123_456_7))),
        ("date year 1", .date(Date(timeIntervalSince1970: -62_135_596_800))),
        ("date distant future", .date(.distantFuture)),
        ("data empty", .data(Data())),
        ("data bytes", .data(Data([0, 0xFF, 0x80]))),
        ("data 1 MB", .data(Data((0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }))),
        ("encoded", .encoded(Data(#"{"a":1}"#.utf8))),
        ("decimal", .dotNet(DotNetValue(typeID: 5, payload: Bytes.int32(12_345) + Bytes.int32(0) + Bytes.int32(0) + Bytes.int32(2 << 16)))),
        ("null", .dotNet(DotNetValue(typeID: 21, payload: []))),
        ("binary formatter", .dotNet(DotNetValue(typeID: 20, payload: [0, 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0, 0, 0, 0, 0, 11]))),
    ]

    @Test(arguments: 0..<values.count)
    func everyValueSurvivesARoundTrip(index: Int) throws {
        let (name, value) = Self.values[index]
        for compressed in [false, true] {
            let data = SessionStateStoreData(items: items(["First": .int(7), name: value, "last": .string("end")]), timeout: 20)
            let back = try Self.roundTrip(data, compressed: compressed)
            #expect(back.timeout == 20)
            #expect(back.items.keys == ["First", name, "last"])
            let restored = try #require(back.items[name])
            #expect(same(restored, value), "\(name): \(restored)")
            #expect(!back.items.isDirty)
        }
    }

    @Test func manyItemsKeepOrderAndSpelling() throws {
        var all = SessionItems()
        for (name, value) in Self.values { all[name.uppercased()] = value }
        let back = try Self.roundTrip(SessionStateStoreData(items: all, timeout: 525_600))
        #expect(back.timeout == 525_600)
        #expect(back.items.keys == all.keys)
        for (key, value) in all.elements {
            #expect(back.items[key].map { same($0, value) } == true, "\(key)")
        }
    }

    @Test func theLayoutIsASPNETs() throws {
        let data = SessionStateStoreData(items: items(["k": .int(-2), "b": .bool(true), "s": .string("é"), "L": .int(1 << 40)]), timeout: 300)
        let expected: [UInt8] = Bytes.int32(300) + [1, 0]  // timeout, hasItems, no static objects
            + Bytes.int32(4) + Bytes.int32(-1)  // count, no null key
            + Bytes.string("k") + Bytes.string("b") + Bytes.string("s") + Bytes.string("L")
            + Bytes.int32(5) + Bytes.int32(7) + Bytes.int32(11) + Bytes.int32(20)  // end offsets
            + [2] + Bytes.int32(-2)  // Int32
            + [3, 1]  // Boolean
            + [1, 2, 0xC3, 0xA9]  // String
            + [12] + Bytes.int64(1 << 40)  // Int64
            + [0xFF]
        #expect(try Format.encode(data, compressed: false) == expected)
        // An empty session: no item table at all.
        #expect(try Format.encode(SessionStateStoreData(timeout: 20), compressed: false) == Bytes.int32(20) + [0, 0, 0xFF])
        #expect(try Format.decode(Bytes.int32(20) + [0, 0, 0xFF], compressed: false).items.count == 0)
    }

    /// Blobs as a .NET app writes them, one per AltSerialization type.
    @Test func everyDotNetTypeReads() throws {
        func read(_ slot: [UInt8]) throws -> SessionValue {
            try #require(try Format.decode(Bytes.oneItem(slot), compressed: false).items["K"])
        }
        #expect(same(try read([1] + Bytes.string("Grüße")), .string("Grüße")))
        #expect(same(try read([2] + Bytes.int32(-7)), .int(-7)))
        #expect(same(try read([3, 1]), .bool(true)))
        #expect(same(try read([3, 0]), .bool(false)))
        // 2024-01-02T03:04:05.0060007Z in ticks.
        let ticks: Int64 = 638_397_614_450_060_007
        #expect(same(try read([4] + Bytes.int64(ticks)), .date(Date(timeIntervalSince1970: 1_704_164_645.006_000_7))))
        #expect(same(try read([6, 200]), .int(200)))
        #expect(same(try read([7, 0x41]), .string("A")))
        #expect(same(try read([7, 0xE2, 0x82, 0xAC]), .string("€")))
        #expect(same(try read([8] + Bytes.int32(Int32(bitPattern: Float(1.5).bitPattern))), .double(1.5)))
        #expect(same(try read([9] + Bytes.int64(Int64(bitPattern: (2.25).bitPattern))), .double(2.25)))
        #expect(same(try read([10, 0xFE]), .int(-2)))
        #expect(same(try read([11, 0xFE, 0xFF]), .int(-2)))
        #expect(same(try read([12] + Bytes.int64(-5_000_000_000)), .int(-5_000_000_000)))
        #expect(same(try read([13, 0xFE, 0xFF]), .int(65_534)))
        #expect(same(try read([14, 0xFF, 0xFF, 0xFF, 0xFF]), .int(4_294_967_295)))
        #expect(same(try read([15] + Bytes.int64(42)), .int(42)))
        #expect(same(try read([15] + Bytes.int64(-1)), .dotNet(DotNetValue(typeID: 15, payload: Bytes.int64(-1)))))
        #expect(same(try read([18] + Bytes.int64(-9)), .int(-9)))
        for (type, size) in [(UInt8(5), 16), (16, 8), (17, 16), (19, 8)] {
            let payload = (0..<size).map { UInt8($0 + 1) }
            #expect(same(try read([type] + payload), .dotNet(DotNetValue(typeID: type, payload: payload))))
        }
        #expect(same(try read([21]), .dotNet(DotNetValue(typeID: 21, payload: []))))
        #expect(same(try read([20, 0, 1, 0, 0, 0]), .dotNet(DotNetValue(typeID: 20, payload: [0, 1, 0, 0, 0]))))
        // SessionHost's own type-20 forms.
        #expect(same(try read([20, 0x53, 0x48, 1, 9, 8]), .data(Data([9, 8]))))
        #expect(same(try read([20, 0x53, 0x48, 2] + Array("[1]".utf8)), .encoded(Data("[1]".utf8))))
    }

    /// As ASP.NET: an item nobody changed goes back byte for byte (an Int64 stays an Int64, a
    /// Decimal a Decimal); a changed one is written from its Swift value.
    @Test func unchangedItemsAreWrittenBackAsTheyWere() throws {
        let blob = Bytes.int32(20) + [1, 0] + Bytes.int32(3) + Bytes.int32(-1)
            + Bytes.string("small") + Bytes.string("price") + Bytes.string("name")
            + Bytes.int32(9) + Bytes.int32(26) + Bytes.int32(31)
            + [12] + Bytes.int64(5)  // Int64 5
            + [5] + Bytes.int32(1999) + Bytes.int32(0) + Bytes.int32(0) + Bytes.int32(2 << 16)  // 19.99m
            + [1] + Bytes.string("bob")
            + [0xFF]
        var data = try Format.decode(blob, compressed: false)
        #expect(same(try #require(data.items["small"]), .int(5)))
        #expect(try Format.encode(data, compressed: false) == blob)
        // Changing one item re-encodes only it: "name" becomes a 5-byte String slot.
        data.items["name"] = .string("alice")
        let changed = try Format.encode(data, compressed: false)
        #expect(Array(changed[(changed.count - 8)...]) == [1] + Bytes.string("alice") + [0xFF])
        #expect(changed.count == blob.count + 2)
        // Setting the Int64 item again writes an Int32 (the value fits).
        data.items["SMALL"] = .int(6)
        let again = try Format.decode(Format.encode(data, compressed: false), compressed: false)
        #expect(same(try #require(again.items["small"]), .int(6)))
        #expect(again.items.entries.first?.serialized == [2] + Bytes.int32(6))
        #expect(again.items.keys == ["small", "price", "name"])
    }

    @Test func compressedBlobsAreRawDeflateWithAPadByte() throws {
        // zlib.compressobj(6, DEFLATED, -15) of the one-item session {"a": Int32 7}, made with
        // Python, plus ASP.NET's 0xFF.
        let deflated: [UInt8] = [19, 97, 96, 96, 96, 4, 66, 6, 134, 255, 64, 192, 152, 200, 10, 100, 49, 177, 131, 184, 0]
        let data = try Format.decode(deflated + [0xFF], compressed: true)
        #expect(same(try #require(data.items["a"]), .int(7)))
        // Without the pad byte (a store that trimmed it) it still reads.
        #expect(try Format.decode(deflated, compressed: true).items.count == 1)
        let written = try Format.encode(data, compressed: true)
        #expect(written.last == 0xFF)
        #expect(try Format.decode(written, compressed: true).items.keys == ["a"])
        // Compression pays on repetitive content.
        let big = SessionStateStoreData(items: items(["page": .string(String(repeating: "<li>row</li>", count: 2000))]), timeout: 20)
        #expect(try Format.encode(big, compressed: true).count < 500)
        // Corrupt, truncated or uncompressed input is an error, never a crash.
        #expect(throws: Format.Failure.self) { try Format.decode(Array(deflated.prefix(8)), compressed: true) }
        #expect(throws: Format.Failure.self) { try Format.decode(Bytes.oneItem([2] + Bytes.int32(1)), compressed: true) }
        #expect(throws: Format.Failure.self) { try Format.decode([0xFF, 0xFF, 0xFF], compressed: true) }
        // A bomb is stopped at the limit.
        let bomb = try Format.encode(SessionStateStoreData(items: items(["z": .string(String(repeating: "z", count: 2_000_000))]), timeout: 20), compressed: true)
        let error = #expect(throws: Format.Failure.self) { try Format.decode(bomb, compressed: true, decompressedLimit: 1_000_000) }
        #expect(error?.detail == "it inflates to more than 1000000 bytes")
    }

    @Test func codableAndDataValuesHaveTheirOwnForm() throws {
        let cart = Cart(lines: ["book", "pen"], total: 12.5)
        let data = SessionStateStoreData(items: items(["cart": .codable(cart), "raw": .data(Data([1, 2]))]), timeout: 20)
        let blob = try Format.encode(data, compressed: false)
        // Type 20 with "SH" and the kind: a BinaryFormatter stream starts with a zero byte, so a
        // .NET app fails on these keys only.
        #expect(Array(blob.suffix(7)) == [20, 0x53, 0x48, 1, 1, 2, 0xFF])
        let back = try Format.decode(blob, compressed: false)
        #expect(back.items["cart"]?.decoded(as: Cart.self) == cart)
        #expect(same(try #require(back.items["raw"]), .data(Data([1, 2]))))
    }

    @Test func aValueThatCannotBeWrittenNamesItsKey() {
        let notJSON = SessionStateStoreData(items: items(["ok": .int(1), "Bad": .codable(NotJSON(value: .nan))]), timeout: 20)
        let error = #expect(throws: Format.Failure.self) { try Format.encode(notJSON, compressed: false) }
        #expect(error?.kind == .unencodable(key: "Bad"))
        #expect(error?.description.hasPrefix("Unable to serialize the session state: the value of 'Bad' cannot be encoded as JSON") == true)
        let farFuture = SessionStateStoreData(items: items(["when": .date(Date(timeIntervalSince1970: 1e12))]), timeout: 20)
        #expect((#expect(throws: Format.Failure.self) { try Format.encode(farFuture, compressed: false) })?.kind == .unencodable(key: "when"))
    }

    // MARK: Corrupt input

    static func valid() throws -> [UInt8] {
        try Format.encode(SessionStateStoreData(items: items([
            "name": .string("alice"), "n": .int(-123_456), "big": .int(1 << 50), "pi": .double(.pi), "ok": .bool(true),
            "when": .date(Date(timeIntervalSince1970: 1)), "raw": .data(Data([1, 2, 3])),
            "cart": .codable(Cart(lines: ["x"], total: 1)),
        ]), timeout: 20), compressed: false)
    }

    static func failure(_ bytes: [UInt8]) -> Format.Failure? {
        do {
            _ = try Format.decode(bytes, compressed: false)
            return nil
        } catch {
            return error
        }
    }

    @Test func everyTruncationIsRejected() throws {
        let blob = try Self.valid()
        #expect(try Format.decode(blob, compressed: false).items.count == 8)
        for length in 0..<blob.count {
            #expect(Self.failure(Array(blob.prefix(length)))?.kind == .corrupt, "prefix of \(length) of \(blob.count) bytes")
        }
    }

    @Test func aBadTrailerIsCorrupt() throws {
        let blob = try Self.valid()
        #expect(Self.failure(Array(blob.dropLast()) + [0xFE]) == .corrupt("no 0xFF after the items"))
        #expect(Self.failure(blob + [0xFF]) == .corrupt("1 bytes after the end"))
        #expect(Self.failure(blob) == nil)
        #expect(Format.Failure.corrupt("x").description == "The session state information is invalid and might be corrupted (x).")
    }

    @Test func malformedValuesAreCorrupt() {
        #expect(Self.failure(Bytes.oneItem([0])) == .corrupt("the value of 'k': unknown type id 0"))
        #expect(Self.failure(Bytes.oneItem([22])) == .corrupt("the value of 'k': unknown type id 22"))
        #expect(Self.failure(Bytes.oneItem([2, 1, 2, 3])) == .corrupt("the value of 'k': type 2 with 3 bytes instead of 4"))
        #expect(Self.failure(Bytes.oneItem([1, 5, 0x61])) == .corrupt("the value of 'k': it ends early"))
        #expect(Self.failure(Bytes.oneItem([1, 1, 0x61, 0x62])) == .corrupt("the value of 'k': 1 bytes after a string"))
        #expect(Self.failure(Bytes.oneItem([7, 0x41, 0x42])) == .corrupt("the value of 'k': a Char of 2 bytes"))
        #expect(Self.failure(Bytes.oneItem([21, 0])) == .corrupt("the value of 'k': type 21 with 1 bytes instead of 0"))
        #expect(Self.failure(Bytes.oneItem([4] + Bytes.int64(Int64.max & 0x3FFF_FFFF_FFFF_FFFF))) != nil)
        // A string length with a sixth 7-bit group.
        #expect(Self.failure(Bytes.oneItem([1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])) == .corrupt("the value of 'k': a malformed string length"))
    }

    @Test func hugeCountsOffsetsAndLengthsAreRejectedWithoutAllocating() {
        let header = Bytes.int32(20) + [1, 0]
        #expect(Self.failure(header + Bytes.int32(Int32.max) + [0xFF]) == .corrupt("an item count of 2147483647"))
        #expect(Self.failure(header + Bytes.int32(-1) + [0xFF]) == .corrupt("an item count of -1"))
        #expect(Self.failure(header + Bytes.int32(1) + Bytes.int32(5) + Bytes.string("k") + Bytes.int32(1) + [3, 1, 0xFF]) == .corrupt("a null-key index of 5"))
        // An end offset past the data, one going backwards, a zero-length value.
        let two = header + Bytes.int32(2) + Bytes.int32(-1) + Bytes.string("a") + Bytes.string("b")
        #expect(Self.failure(two + Bytes.int32(2) + Bytes.int32(1_000_000) + [3, 1, 3, 0, 0xFF]) == .corrupt("the value of 'b' ends at offset 1000000"))
        #expect(Self.failure(two + Bytes.int32(2) + Bytes.int32(1) + [3, 1, 3, 0, 0xFF]) == .corrupt("the value of 'b' ends at offset 1"))
        #expect(Self.failure(two + Bytes.int32(0) + Bytes.int32(2) + [3, 1, 0xFF]) == .corrupt("the value of 'a' ends at offset 0"))
        // A key length of 2^31-1.
        #expect(Self.failure(header + Bytes.int32(1) + Bytes.int32(-1) + [0xFF, 0xFF, 0xFF, 0xFF, 0x07] + [0xFF]) == .corrupt("it ends early"))
    }

    @Test func theNullKeyItemReadsAsTheEmptyKey() throws {
        let blob = Bytes.int32(20) + [1, 0] + Bytes.int32(2) + Bytes.int32(0) + Bytes.string("b")
            + Bytes.int32(2) + Bytes.int32(4) + [3, 1, 3, 0] + [0xFF]
        let data = try Format.decode(blob, compressed: false)
        #expect(data.items.keys == ["", "b"])
        #expect(same(try #require(data.items[""]), .bool(true)))
    }

    @Test func staticObjectsAreKeptAndWrittenBack() throws {
        // Two objects: one not yet created (type name, late bound), one holding a String.
        let statics = Bytes.int32(2)
            + Bytes.string("cache") + [0] + Bytes.string("System.Collections.Hashtable") + [0]
            + Bytes.string("label") + [1] + [1] + Bytes.string("hi")
        let blob = Bytes.int32(20) + [1, 1] + Bytes.int32(1) + Bytes.int32(-1) + Bytes.string("k") + Bytes.int32(2) + [3, 1]
            + statics + [0xFF]
        let data = try Format.decode(blob, compressed: false)
        #expect(data.dotNetStaticObjects == statics)
        #expect(try Format.encode(data, compressed: false) == blob)
        // One holding a BinaryFormatter object cannot be delimited.
        let opaque = Bytes.int32(20) + [0, 1] + Bytes.int32(1) + Bytes.string("x") + [1, 20, 0, 1] + [0xFF]
        #expect(Self.failure(opaque) == .corrupt("a static object of type 20, which SessionHost cannot read"))
    }

    /// A bounded mutation fuzzer over valid blobs: every mutant decodes or fails cleanly.
    @Test func mutatedBlobsNeverCrash() throws {
        let blob = try Self.valid()
        var state: UInt64 = 0x5E55_1011
        func next() -> Int {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int(truncatingIfNeeded: (z ^ (z >> 31)) >> 1)
        }
        var decoded = 0
        for _ in 0..<5000 {
            var mutant = blob
            for _ in 0..<(1 + next() % 4) {
                let index = next() % mutant.count
                switch next() % 3 {
                case 0: mutant[index] = UInt8(truncatingIfNeeded: next())
                case 1: mutant.remove(at: index)
                default: mutant.insert(UInt8(truncatingIfNeeded: next()), at: index)
                }
            }
            if let data = try? Format.decode(mutant, compressed: false) {
                decoded += 1
                _ = try? Format.encode(data, compressed: false)
            }
        }
        #expect(decoded < 5000)
    }
}
