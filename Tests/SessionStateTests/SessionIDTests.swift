import Testing
@testable import SessionState

/// An independent rendering of ASP.NET's `SessionIDManager` ID packing (README, Sessions): each 5-byte group is a 40-bit little-endian
/// number (the first four bytes as a little-endian Int32, the fifth above them), written out as
/// a bit string from its lowest bit, cut into eight 5-bit groups, each read lowest bit first.
func referenceEncode(_ bytes: [UInt8]) -> String {
    let alphabet = Array("abcdefghijklmnopqrstuvwxyz012345")
    var result = ""
    for start in stride(from: 0, to: bytes.count, by: 5) {
        var bits = ""
        for byte in bytes[start..<(start + 5)] {
            for bit in 0..<8 { bits.append((byte >> bit) & 1 == 1 ? "1" : "0") }
        }
        let characters = Array(bits)
        for chunk in 0..<8 {
            var index = 0
            for bit in 0..<5 where characters[chunk * 5 + bit] == "1" { index |= 1 << bit }
            result.append(alphabet[index])
        }
    }
    return result
}

struct ASPNETSessionIDTests {
    static let alphabet = Set("abcdefghijklmnopqrstuvwxyz012345")

    @Test func generatedIDsAre24DistinctCharactersOfTheAlphabetUniformlyDistributed() {
        let samples = 10_000
        var seen = Set<String>()
        var frequency: [Character: Int] = [:]
        for _ in 0..<samples {
            let id = ASPNETSessionID.generate()
            #expect(id.count == 24 && id.utf8.count == 24)
            for character in id {
                #expect(Self.alphabet.contains(character), "\(id)")
                frequency[character, default: 0] += 1
            }
            seen.insert(id)
        }
        #expect(seen.count == samples)
        #expect(Set(frequency.keys) == Self.alphabet)
        // 240 000 characters over 32 symbols: 7 500 each; a standard deviation is about 84.
        let expected = Double(samples * 24) / 32
        for (character, count) in frequency.sorted(by: { $0.key < $1.key }) {
            #expect(abs(Double(count) - expected) < expected * 0.25, "\(character): \(count)")
        }
    }

    @Test func generatedIDsPassTheirOwnValidation() {
        for _ in 0..<1000 {
            let id = ASPNETSessionID.generate()
            #expect(ASPNETSessionID.normalize(id) == id)
            #expect(ASPNETSessionID.normalize(id.uppercased()) == id)
        }
    }

    static let knownVectors: [(bytes: [UInt8], expected: String)] = [
        ([UInt8](repeating: 0, count: 15), String(repeating: "a", count: 24)),
        ([UInt8](repeating: 0xFF, count: 15), String(repeating: "5", count: 24)),
        // Bit 0 of the first byte: the first character's value 1.
        ([1] + [UInt8](repeating: 0, count: 14), "b" + String(repeating: "a", count: 23)),
        // Bit 5 of the little-endian word is the second character's lowest bit.
        ([0x20] + [UInt8](repeating: 0, count: 14), "ab" + String(repeating: "a", count: 22)),
        // Bits 30 and 31 of the word (top of byte 3) start the seventh character.
        ([0, 0, 0, 0x40, 0] + [UInt8](repeating: 0, count: 10), "aaaaaaba" + String(repeating: "a", count: 16)),
        ([0, 0, 0, 0x80, 0] + [UInt8](repeating: 0, count: 10), "aaaaaaca" + String(repeating: "a", count: 16)),
        // The fifth byte shifted left by two: its bit 0 is the seventh character's bit 2 (4 = e),
        // its bit 3 the eighth character's bit 0, its bit 7 the eighth character's bit 4 (16 = q).
        ([0, 0, 0, 0, 1] + [UInt8](repeating: 0, count: 10), "aaaaaaea" + String(repeating: "a", count: 16)),
        ([0, 0, 0, 0, 0x08] + [UInt8](repeating: 0, count: 10), "aaaaaaab" + String(repeating: "a", count: 16)),
        ([0, 0, 0, 0, 0x80] + [UInt8](repeating: 0, count: 10), "aaaaaaaq" + String(repeating: "a", count: 16)),
        // Groups are independent: the same pattern in the second and third group.
        ([UInt8](repeating: 0, count: 5) + [1, 0, 0, 0, 0] + [0, 0, 0, 0, 0x80], "aaaaaaaa" + "baaaaaaa" + "aaaaaaaq"),
    ]

    @Test(arguments: 0..<knownVectors.count)
    func encodesKnownBytesAsTheSpecDescribes(index: Int) {
        let (bytes, expected) = Self.knownVectors[index]
        #expect(referenceEncode(bytes) == expected)
        #expect(ASPNETSessionID.encode(bytes) == expected)
    }

    @Test func encodeAgreesWithTheBitStringReferenceOnRandomBytes() {
        var random = SplitMix64(seed: 0x5E55_1011)
        for _ in 0..<2000 {
            let bytes = (0..<15).map { _ in UInt8.random(in: 0...255, using: &random) }
            #expect(ASPNETSessionID.encode(bytes) == referenceEncode(bytes), "\(bytes)")
        }
        let ascending = (0..<15).map { UInt8($0) }
        #expect(ASPNETSessionID.encode(ascending) == referenceEncode(ascending))
    }

    @Test(arguments: [
        ("abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstuvwx"),
        ("ABCDEFGHIJKLMNOPQRSTUVWX", "abcdefghijklmnopqrstuvwx"),
        ("yz012345yz012345yz012345", "yz012345yz012345yz012345"),
        ("YZ012345Yz012345yZ012345", "yz012345yz012345yz012345"),
        ("aaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaa"),
    ])
    func normalizeAcceptsAndLowerCases(input: String, expected: String) {
        #expect(ASPNETSessionID.normalize(input) == expected)
    }

    @Test(arguments: [
        "",
        String(repeating: "a", count: 23),
        String(repeating: "a", count: 25),
        String(repeating: "a", count: 80),
        String(repeating: "a", count: 81),
        String(repeating: "a", count: 200),
        "abcdefghijklmnopqrstuvw6",
        "abcdefghijklmnopqrstuvw7",
        "8bcdefghijklmnopqrstuvwx",
        "abcdefghijk9mnopqrstuvwx",
        "abcdefghijklmnopqrstuvw-",
        "abcdefghijklmnopqrstuvw_",
        "abcdefghijklmnopqrstuvw ",
        " abcdefghijklmnopqrstuvw",
        "abcdefghijklmnopqrstuv%41",
        "abcdefghijklmnopqrstuvw.",
        "abcdefghijklmnopqrstuvw\0",
        "abcdefghijklmnopqrstuvwé",
        "abcdefghijklmnopqrstuvé", // 23 characters, 24 UTF-8 bytes
        "abcdefghijklmnopqrstuvwxÿ",
        "abcdefghijklmnopqrstuvw\u{212A}", // KELVIN SIGN: not folded to "k", rejected
        "abcdefghijklmnopqrstu🙂",
    ])
    func normalizeRejects(input: String) {
        #expect(ASPNETSessionID.normalize(input) == nil)
    }
}

struct ASPSessionIDTests {
    @Test func generatedIDsAre24DistinctUpperCaseLettersUsingAllLetters() {
        let samples = 10_000
        var seen = Set<String>()
        var frequency: [UInt8: Int] = [:]
        for _ in 0..<samples {
            let id = ASPSessionID.generate()
            #expect(id.utf8.count == 24)
            for byte in id.utf8 {
                #expect((0x41...0x5A).contains(byte), "\(id)")
                frequency[byte, default: 0] += 1
            }
            seen.insert(id)
        }
        #expect(seen.count == samples)
        #expect(frequency.count == 26)
        let expected = Double(samples * 24) / 26
        for (letter, count) in frequency {
            #expect(abs(Double(count) - expected) < expected * 0.25, "\(UnicodeScalar(letter)): \(count)")
        }
    }

    @Test(arguments: [
        ("ABCDEFGHIJKLMNOPQRSTUVWX", "ABCDEFGHIJKLMNOPQRSTUVWX"),
        ("abcdefghijklmnopqrstuvwx", "ABCDEFGHIJKLMNOPQRSTUVWX"),
        ("JfdoAmpAgacbdmlnLfbccnci", "JFDOAMPAGACBDMLNLFBCCNCI"),
        ("ZZZZZZZZZZZZZZZZZZZZZZZZ", "ZZZZZZZZZZZZZZZZZZZZZZZZ"),
    ])
    func normalizeAcceptsAndUpperCases(input: String, expected: String) {
        #expect(ASPSessionID.normalize(input) == expected)
    }

    @Test(arguments: [
        "",
        String(repeating: "A", count: 23),
        String(repeating: "A", count: 25),
        String(repeating: "A", count: 200),
        "ABCDEFGHIJKLMNOPQRSTUVW0",
        "ABCDEFGHIJKLMNOPQRSTUVW5",
        "ABCDEFGHIJKLMNOPQRSTUVW-",
        "ABCDEFGHIJKLMNOPQRSTUVW@", // 0x40, just below A
        "ABCDEFGHIJKLMNOPQRSTUVW[", // 0x5B, just above Z
        "ABCDEFGHIJKLMNOPQRSTUVW`", // 0x60, just below a
        "ABCDEFGHIJKLMNOPQRSTUVW{", // 0x7B, just above z
        "ABCDEFGHIJKLMNOPQRSTUVWÄ",
        "ABCDEFGHIJKLMNOPQRSTUVÄ", // 23 characters, 24 UTF-8 bytes
    ])
    func normalizeRejects(input: String) {
        #expect(ASPSessionID.normalize(input) == nil)
    }

    @Test func sessionNumberIsPositiveStableAndFitsALong() {
        var numbers = Set<Int>()
        for _ in 0..<1000 {
            let id = ASPSessionID.generate()
            let number = ASPSessionID.number(of: id)
            #expect(number > 0 && number <= Int(Int32.max))
            #expect(ASPSessionID.number(of: id) == number)
            numbers.insert(number)
        }
        // Not unique by contract, but a 31-bit hash of 1000 IDs should practically never collide much.
        #expect(numbers.count > 990)
        #expect(ASPSessionID.number(of: "JFDOAMPAGACBDMLNLFBCCNCI") != ASPSessionID.number(of: "JFDOAMPAGACBDMLNLFBCCNCJ"))
    }

    @Test func sessionNumberIsTheSameInEveryProcess() {
        // FNV-1a, not Swift's per-process-seeded Hasher: a pinned value catches a change.
        #expect(ASPSessionID.number(of: "JFDOAMPAGACBDMLNLFBCCNCI") == Int(ASPSessionID.fnv1a("JFDOAMPAGACBDMLNLFBCCNCI") & 0x7FFF_FFFF))
        #expect(ASPSessionID.fnv1a("") == 0xcbf2_9ce4_8422_2325)
        #expect(ASPSessionID.fnv1a("a") == 0xaf63_dc4c_8601_ec8c) // published FNV-1a 64 test vector
        #expect(ASPSessionID.fnv1a("foobar") == 0x8594_4171_f739_67e8) // published FNV-1a 64 test vector
    }

    @Test(arguments: [(1, "/"), (1, "/shop"), (2, "/"), (7, "/A/Deep/App"), (1, "/ünï")])
    func cookieNameIsASPSESSIONIDPlusEightUpperCaseLetters(site: Int, path: String) {
        let name = ASPSessionID.cookieName(site: site, applicationPath: path)
        #expect(name.hasPrefix("ASPSESSIONID"))
        #expect(name.utf8.count == 20)
        #expect(name.utf8.dropFirst(12).allSatisfy { (0x41...0x5A).contains($0) }, "\(name)")
        #expect(ASPSessionID.cookieName(site: site, applicationPath: path) == name)
        #expect(ASPSessionID.cookieName(site: site, applicationPath: path.uppercased()) == name)
        #expect(ASPSessionID.cookieName(site: site, applicationPath: path.lowercased()) == name)
    }

    @Test func cookieNamesDifferBetweenApplicationsAndSites() {
        let root = ASPSessionID.cookieName(site: 1, applicationPath: "/")
        let shop = ASPSessionID.cookieName(site: 1, applicationPath: "/shop")
        #expect(root != shop)
        #expect(ASPSessionID.cookieName(site: 1, applicationPath: "/SHOP") == shop)
        #expect(ASPSessionID.cookieName(site: 2, applicationPath: "/") != root)
        // Many applications: suffixes are spread (8 letters, ~37 bits).
        let names = Set((0..<500).map { ASPSessionID.cookieName(site: 1, applicationPath: "/app\($0)") })
        #expect(names.count == 500)
    }
}

/// The checks every ID manager's IDs pass, whatever the manager says.
struct SessionIDManagerCheckTests {
    static let lenient = SessionIDManager(typeName: "T", create: { "made.by-T_1" }, validate: { _ in true })

    @Test func idsAreCheckedForLengthAndCharacters() {
        #expect(Self.lenient.incomingID("abc-DEF_123.x") == "abc-DEF_123.x")
        #expect(Self.lenient.incomingID("") == nil)
        #expect(Self.lenient.incomingID(String(repeating: "a", count: 81)) == nil)
        #expect(Self.lenient.incomingID(String(repeating: "a", count: 80)) != nil)
        for bad in ["a b", "a;b", "a=b", "a/b", "é", "a\u{0}b", "(S(x))"] { #expect(Self.lenient.incomingID(bad) == nil, "\(bad)") }
        #expect(Self.lenient.newID() == "made.by-T_1")
        let broken = SessionIDManager(typeName: "B", create: { "no spaces allowed" }, validate: { _ in true })
        #expect(broken.newID() == nil)
        let picky = SessionIDManager(typeName: "P", create: { "x" }, validate: { $0.count > 3 })
        #expect(picky.newID() == nil && picky.incomingID("abcd") == "abcd")
    }

    @Test func theBuiltInManagerIsASPNETs() {
        let id = ASPNETSessionID.generate()
        #expect(SessionIDManager.builtIn.incomingID(id.uppercased()) == id)
        #expect(SessionIDManager.builtIn.newID()?.count == 24)
        #expect(SessionIDManager.builtIn.incomingID("p-0123") == nil)
    }
}
