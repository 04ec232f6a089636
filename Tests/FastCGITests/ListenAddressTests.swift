import FastCGI
import Testing

struct ListenAddressTests {
    @Test func parsesTheThreeForms() throws {
        #expect(try ListenAddress(parsing: "unix:/run/app.sock") == .unix(path: "/run/app.sock"))
        #expect(try ListenAddress(parsing: "127.0.0.1:9000") == .tcp(host: "127.0.0.1", port: 9000))
        #expect(try ListenAddress(parsing: "fd:0") == .inherited(fd: 0))
    }

    @Test(arguments: ["", "unix:", ":9000", "127.0.0.1:99999", "localhost", "fd:x", "unix:/" + String(repeating: "a", count: 120)])
    func rejectsMalformedAddresses(text: String) {
        #expect(throws: ListenAddressError.self) { try ListenAddress(parsing: text) }
    }

    @Test func errorsSayWhatIsWrong() {
        #expect(throws: ListenAddressError.self) { try ListenAddress(parsing: ":9000") }
        do {
            _ = try ListenAddress(parsing: ":9000")
        } catch {
            #expect(error.description.contains("every interface"))
        }
    }
}
