@testable import SessionHost
import Testing

struct URLPathTests {
    @Test(arguments: [
        ("/", "/"), ("/a/b", "/a/b"), ("/a//b/", "/a/b/"), ("/a/./b", "/a/b"), ("/a/b/../c", "/a/c"),
        ("/a/b/..", "/a/"), ("/%41%2fb", "/A/b"), ("/caf%C3%A9", "/café"), ("/a/%2e%2e/b", "/b"),
    ])
    func normalizes(raw: String, expected: String) {
        #expect(URLPath.normalize(Substring(raw)) == expected)
    }

    @Test(arguments: ["/..", "/a/../..", "/%2e%2e/etc", "relative", "", "/bad%zz", "/nul%00", "/%ff", "/%4"])
    func rejects(raw: String) {
        #expect(URLPath.normalize(Substring(raw)) == nil)
    }

    @Test func decodesQueryItems() {
        #expect(URLPath.queryItems("a=1&b=two+words&c=%26&flag&&d=") == [
            QueryItem(name: "a", value: "1"), QueryItem(name: "b", value: "two words"), QueryItem(name: "c", value: "&"),
            QueryItem(name: "flag", value: ""), QueryItem(name: "d", value: ""),
        ])
        #expect(URLPath.queryItems("bad=%zz&ok=1") == [QueryItem(name: "ok", value: "1")])
    }
}
