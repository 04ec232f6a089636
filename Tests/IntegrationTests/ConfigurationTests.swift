import Foundation
import Glibc
import Testing

/// Per-URL configuration through nginx: values reach handlers, invalid configuration gets the
/// 500.19 page on its URLs only, and edits are picked up without a restart.
@Suite(.serialized)
struct ConfigurationTests {
    /// A config dir and site root for the worker, removed at the end.
    final class Tree {
        let root = FileManager.default.temporaryDirectory.appending(path: "sessionhost-config-\(UUID().uuidString.prefix(8))").path

        init() throws {
            try write("conf/applicationHost.config", """
                <configuration>
                  <system.applicationHost><sites>
                    <site name="Test" id="1">
                      <application path="/"><virtualDirectory path="/" physicalPath="../www" /></application>
                      <application path="/settings/app"><virtualDirectory path="/" physicalPath="../www/settings/app" /></application>
                    </site>
                  </sites></system.applicationHost>
                </configuration>
                """)
            try write("www/settings/a/web.config", Self.pages("ReadOnly"))
            try write("www/settings/app/web.config", "<configuration><system.web><sessionState timeout=\"33\" /></system.web></configuration>")
        }

        deinit { try? FileManager.default.removeItem(atPath: root) }

        static func pages(_ value: String) -> String {
            "<configuration>\n<system.web>\n<pages enableSessionState=\"\(value)\" />\n</system.web>\n</configuration>\n"
        }

        func write(_ relative: String, _ text: String) throws {
            let path = root + "/" + relative
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
    }

    static func settings(_ fixture: Fixture, _ path: String) throws -> [String: Any] {
        let reply = try fixture.get(path)
        guard reply.status == 200 else { throw Sockets.Failure("\(path): \(reply.status) \(reply.text)") }
        return try JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any] ?? [:]
    }

    @Test func handlersSeeTheSettingsOfTheirURL() throws {
        let tree = try Tree()
        let fixture = try Fixture(workerArguments: ["--config-dir", tree.root + "/conf"])
        defer { fixture.stop() }
        #expect(try Self.settings(fixture, "/settings/a/page")["enableSessionState"] as? String == "ReadOnly")
        #expect(try Self.settings(fixture, "/settings/a/")["enableSessionState"] as? String == "ReadOnly")
        let app = try Self.settings(fixture, "/settings/app/x?q=1")
        #expect((app["sessionState"] as? [String: Any])?["timeout"] as? Int == 33)
        #expect(app["enableSessionState"] as? String == "true")
        #expect(try Self.settings(fixture, "/settings/b/page")["enableSessionState"] as? String == "true")
    }

    @Test func invalidConfigurationGivesThe50019PageOnItsURLsOnly() throws {
        let tree = try Tree()
        try tree.write("www/settings/bad/web.config", "<configuration>\n<system.web>\n<pages enableSessionState=\"Sometimes\" />\n</system.web>\n</configuration>\n")
        let fixture = try Fixture(workerArguments: ["--config-dir", tree.root + "/conf"])
        defer { fixture.stop() }
        let reply = try fixture.get("/settings/bad/page")
        #expect(reply.status == 500)
        #expect(reply.text.contains("HTTP Error 500.19"))
        #expect(reply.text.contains(tree.root + "/www/settings/bad/web.config"))
        #expect(reply.text.contains("<tr><th>Line</th><td>3</td></tr>"))
        #expect(reply.text.contains("<tr><th>Attribute</th><td>enableSessionState</td></tr>"))
        #expect(reply.text.contains("The &#39;enableSessionState&#39; attribute must be one of the following values: true, false, ReadOnly."))
        // The other URLs keep working, and the error is logged with file and line.
        #expect(try Self.settings(fixture, "/settings/a/page")["enableSessionState"] as? String == "ReadOnly")
        #expect(try fixture.get("/settings/bad/other").status == 500)
        #expect(fixture.workerLog.contains("www/settings/bad/web.config:3: The 'enableSessionState' attribute must be one of the following values"))
    }

    @Test func detailsCanBeHiddenFromEveryone() throws {
        let tree = try Tree()
        try tree.write("www/settings/web.config", "<configuration><system.web><pages enableSessionState=\"maybe\" /></system.web></configuration>")
        let fixture = try Fixture(workerArguments: ["--config-dir", tree.root + "/conf", "--config-errors", "none"])
        defer { fixture.stop() }
        let reply = try fixture.get("/settings/a/x")
        #expect(reply.status == 500)
        #expect(reply.text.contains("HTTP Error 500.19"))
        #expect(!reply.text.contains("web.config"))
        #expect(!reply.text.contains("maybe"))
        #expect(fixture.workerLog.contains("The 'enableSessionState' attribute must be one of the following values"))
    }

    @Test func editsArePickedUpWithoutARestart() throws {
        let tree = try Tree()
        let fixture = try Fixture(workerArguments: ["--config-dir", tree.root + "/conf", "--config-check-interval", "0.1"])
        defer { fixture.stop() }
        #expect(try Self.settings(fixture, "/settings/a/x")["enableSessionState"] as? String == "ReadOnly")
        try tree.write("www/settings/a/web.config", Tree.pages("false"))
        try fixture.waitUntil("the edit is seen") { try Self.settings(fixture, "/settings/a/x")["enableSessionState"] as? String == "false" }
        // A broken edit fails only the URLs below it; fixing it restores them.
        try tree.write("www/settings/a/web.config", "<configuration><system.web>")
        try fixture.waitUntil("the broken edit is seen") { try fixture.get("/settings/a/x").status == 500 }
        #expect(try Self.settings(fixture, "/settings/b/x")["enableSessionState"] as? String == "true")
        try tree.write("www/settings/a/web.config", Tree.pages("ReadOnly"))
        try fixture.waitUntil("the fix is seen") { (try? Self.settings(fixture, "/settings/a/x"))?["enableSessionState"] as? String == "ReadOnly" }
    }

    @Test func sighupReloadsAtOnce() throws {
        let tree = try Tree()
        // Checks for changes are an hour apart: only SIGHUP can make the worker see the edit.
        let fixture = try Fixture(workerArguments: ["--config-dir", tree.root + "/conf", "--config-check-interval", "3600"])
        defer { fixture.stop() }
        #expect(try Self.settings(fixture, "/settings/a/x")["enableSessionState"] as? String == "ReadOnly")
        try tree.write("www/settings/a/web.config", Tree.pages("true"))
        #expect(try Self.settings(fixture, "/settings/a/x")["enableSessionState"] as? String == "ReadOnly")
        kill(fixture.worker.processIdentifier, SIGHUP)
        try fixture.waitUntil("SIGHUP reloads") { try Self.settings(fixture, "/settings/a/x")["enableSessionState"] as? String == "true" }
        #expect(fixture.worker.isRunning)
        #expect(fixture.workerLog.contains("configuration reloaded"))
    }
}
