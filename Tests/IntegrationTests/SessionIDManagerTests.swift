import Foundation
import Testing

/// `sessionIDManagerType` through nginx: an app's own ID manager makes, encodes and decodes the
/// IDs of the applications that name it; its IDs are still checked (length, characters) and an
/// unknown one is still never adopted; a type nobody registered is a configuration error.
@Suite(.serialized)
struct SessionIDManagerTests {
    static func tree(_ type: String = "SessionProbe.SignedIDManager") throws -> SessionTree {
        var applications = SessionTree.standardApplications
        applications["/signed"] = SessionTree.webConfig(systemWeb: #"<sessionState sessionIDManagerType="\#(type)" />"#)
        return try SessionTree(applications: applications)
    }

    @Test func anAppsIDManagerMakesAndReadsTheIDs() throws {
        let tree = try Self.tree()
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let browser = Browser(fixture)
        let first = try browser.probe("/signed/probe?set=a&v=1")
        let id = try #require(first.aspNet?.id)
        #expect(id.wholeMatch(of: /p-[0-9a-f]{30}/) != nil, "\(id)")
        // The cookie carries the encoded form; the next request decodes it.
        #expect(browser.cookies["ASP.NET_SessionId"] == id + ".ok")
        #expect(try browser.probe("/signed/probe?get=a").json["get"] as? String == "1")
        // Other applications keep the built-in manager.
        #expect(try Browser(fixture).probe("/probe?set=b&v=1").aspNet?.id?.count == 24)

        // What the manager's decode refuses, what SessionHost's checks refuse (too long, other
        // characters) and what no store knows all get a new ID.
        for cookie in [id, "p-\(String(repeating: "a", count: 100)).ok", "p-<script>aaaaaaaaaaaaaaaaaaaaaa.ok", "p-\(String(repeating: "b", count: 30)).ok"] {
            let stranger = Browser(fixture, cookies: ["ASP.NET_SessionId": cookie])
            let answer = try stranger.probe("/signed/probe?set=c&v=1")
            #expect(answer.aspNet?.id != id && answer.aspNet?.id != String(repeating: "b", count: 30))
            #expect(answer.aspNet?.isNew == true, "\(cookie)")
        }
    }

    @Test func anUnregisteredIDManagerIsAConfigurationError() throws {
        let tree = try Self.tree("My.Company.IDManager, My.Assembly")
        let output = try Fixture.runProduct("session-probe", ["check-config", "--config-dir", tree.configDirectory])
        #expect(output.status == 1)
        #expect(output.text.contains("signed/web.config:3: The session ID manager type 'My.Company.IDManager, My.Assembly' cannot be loaded"), "\(output.text)")
        let fixture = try Fixture.sessions(tree)
        defer { fixture.finish() }
        let page = try fixture.get("/signed/probe")
        #expect(page.status == 500)
        #expect(page.text.contains("HTTP Error 500.19"))
    }
}
