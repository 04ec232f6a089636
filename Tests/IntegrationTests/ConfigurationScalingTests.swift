import Foundation
import Glibc
import Testing

/// Hostile URLs and slow startup checks against a running worker: over-long paths get 414 before
/// any configuration work, deep URLs under raised limits cost what their existing prefix costs
/// (judged from the store's counters the test worker reports, not from time), and the worker
/// serves while its startup check of the whole tree is still running.
@Suite(.serialized)
struct ConfigurationScalingTests {
    /// The store's counters, from the test worker's /config-statistics.
    static func statistics(_ fixture: Fixture) throws -> [String: Int] {
        let reply = try FastCGIConnection(path: fixture.socketPath).request("/config-statistics")
        var values: [String: Int] = [:]
        for line in String(decoding: reply.stdout, as: UTF8.self).split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, let value = Int(parts[1].trimmingCharacters(in: .whitespaces)) { values[String(parts[0])] = value }
        }
        return values
    }

    static func deepPath(_ segments: Int, tag: Int) -> String {
        "/settings/x\(tag)" + String(repeating: "/a", count: segments - 2)
    }

    @Test func overLongPathsGet414ThroughNginxAndRawFastCGI() throws {
        let fixture = try Fixture()
        defer { fixture.stop() }
        try fixture.waitUntil("the startup check finishes") { fixture.workerLog.contains("configuration check finished") }
        // 4000 segments: 8 KB, inside nginx's default request-line buffer.
        let deep = try fixture.get(Self.deepPath(4000, tag: 1))
        #expect(deep.status == 414)
        #expect(deep.text.contains("longer than this server accepts"))
        let raw = try FastCGIConnection(path: fixture.socketPath).request(Self.deepPath(10_000, tag: 2))
        #expect(raw.status == 414)
        // Many short segments: 300 × "/a" is 600 bytes, over the 255-segment limit.
        #expect(try fixture.get(Self.deepPath(300, tag: 3)).status == 414)
        #expect(try fixture.get(Self.deepPath(255, tag: 4)).status == 200)
        #expect(try fixture.get("/settings/a/b/c").status == 200)
        let statistics = try Self.statistics(fixture)
        // The rejected paths never reached the store.
        #expect(statistics["memoisedURLBytes"].map { $0 < 64 * 1024 } == true)
        #expect(fixture.workerLog.contains("request path over the limit"))
    }

    @Test func deepURLsUnderRaisedLimitsCostWhatTheirPrefixCosts() throws {
        let fixture = try Fixture(nginx: false, workerArguments: ["--max-url-length", "65536", "--max-url-segments", "20000"])
        defer { fixture.stop() }
        // The startup check resolves paths too; the counters are compared once it is done.
        try fixture.waitUntil("the startup check finishes") { fixture.workerLog.contains("configuration check finished") }
        let connection = try FastCGIConnection(path: fixture.socketPath)
        #expect(try connection.request("/settings/first", keepConnection: true).status == 200)
        func cost(_ path: String) throws -> [String: Int] {
            let before = try Self.statistics(fixture)
            let reply = try connection.request(path, keepConnection: true)
            #expect(reply.status == 200)
            let after = try Self.statistics(fixture)
            return after.merging(before) { $0 - $1 }
        }
        let shallow = try cost("/settings/x0/a/b/c")
        let deep = try cost(Self.deepPath(10_000, tag: 1))
        #expect(deep["pathProbes"] == shallow["pathProbes"])
        #expect(deep["resolutions"] == 0 && deep["filesParsed"] == 0, "\(deep) \(shallow)")
        let start = try Self.statistics(fixture)
        for tag in 2..<1002 {
            let reply = try connection.request(Self.deepPath(4000, tag: tag), keepConnection: true)
            #expect(reply.status == 200)
        }
        let end = try Self.statistics(fixture)
        #expect(try #require(end["memoisedURLBytes"]) <= (try #require(end["memoisedURLByteLimit"])))
        #expect(end["memoisedDirectories"] == start["memoisedDirectories"])
        #expect(end["watchedPaths"] == start["watchedPaths"])
        #expect(end["resolutions"] == start["resolutions"])
        #expect(fixture.worker.isRunning)
    }

    @Test func theWorkerServesWhileItsStartupCheckRuns() throws {
        let tree = try ConfigurationTests.Tree()
        // Folders with web.config files, so the check has paths to pause on.
        for index in 0..<5 { try tree.write("www/settings/f\(index)/web.config", ConfigurationTests.Tree.pages("false")) }
        let fixture = try Fixture(workerArguments: ["--config-dir", tree.root + "/conf", "--startup-check-pause", "30"])
        defer { fixture.stop() }
        #expect(try ConfigurationTests.settings(fixture, "/settings/f3/page")["enableSessionState"] as? String == "false")
        #expect(try ConfigurationTests.settings(fixture, "/settings/a/page")["enableSessionState"] as? String == "ReadOnly")
        // The check started before the answer and has not finished: it pauses 30 s per path.
        let log = fixture.workerLog
        #expect(log.contains("configuration check started"))
        #expect(!log.contains("configuration check finished"))
    }

    @Test func theStartupCheckLogsEveryError() throws {
        let tree = try ConfigurationTests.Tree()
        try tree.write("www/broken/web.config", "<configuration><system.web><pages enableSessionState=\"maybe\" /></system.web></configuration>")
        try tree.write("www/other/web.config", "<configuration><system.web><sessionState mode=\"Bogus\" /></system.web></configuration>")
        let fixture = try Fixture(nginx: false, workerArguments: ["--config-dir", tree.root + "/conf"])
        defer { fixture.stop() }
        try fixture.waitUntil("the startup check finishes") { fixture.workerLog.contains("configuration check finished") }
        let log = fixture.workerLog
        #expect(log.contains("www/broken/web.config:1"))
        #expect(log.contains("www/other/web.config:1"))
        #expect(log.contains("2 configuration errors"))
    }
}
