@testable import SessionHost
import Testing

struct StatusAllowListTests {
    @Test func loopbackIsAlwaysAllowed() throws {
        let list = StatusAllowList()
        for address in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] { #expect(list.allows(address), "\(address)") }
        for address in ["10.0.0.1", "", "localhost", "::2"] { #expect(!list.allows(address), "\(address)") }
    }

    @Test func networksMatchByPrefix() throws {
        let list = try StatusAllowList(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::ffff:198.51.100.0/120", "203.0.113.128/25"])
        #expect(list.allows("10.200.3.4"))
        #expect(!list.allows("11.0.0.1"))
        #expect(list.allows("192.0.2.7") && !list.allows("192.0.2.8"))
        #expect(list.allows("2001:db8:1::5") && !list.allows("2001:db9::1"))
        // A mapped client is matched as IPv4; a mapped entry names an IPv4 network.
        #expect(list.allows("::ffff:10.1.2.3"))
        #expect(list.allows("198.51.100.77") && list.allows("::ffff:198.51.100.1"))
        #expect(list.allows("203.0.113.200") && !list.allows("203.0.113.100"))
    }

    @Test(arguments: ["", "/", "10.0.0.1/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "example.org", "10.0.0.0/8/9"])
    func malformedEntriesAreRefused(entry: String) {
        #expect(throws: StatusAllowListError.self) { try StatusAllowList([entry]) }
    }
}
