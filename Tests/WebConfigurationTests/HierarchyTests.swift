import Foundation
import Testing
@testable import WebConfiguration

struct HierarchyTests {
    @Test func noFilesAtAllGivesTheDocumentedDefaults() throws {
        let tree = try ConfigTree(appHost: nil)
        let settings = try tree.settings("/")
        #expect(settings.site.name == "Default Web Site")
        #expect(settings.asp == ASPSessionSettings(allowSessionState: true, keepSessionIdSecure: true, max: 4_294_967_295, timeoutSeconds: 1200))
        let session = settings.sessionState
        #expect(session.mode == .inProc)
        #expect(session.timeout == .seconds(20 * 60))
        #expect(session.cookieName == "ASP.NET_SessionId")
        #expect(session.cookieless == .useCookies)
        #expect(session.cookieSameSite == .lax)
        #expect(session.regenerateExpiredSessionId)
        #expect(session.sqlConnectionString == "data source=127.0.0.1;Integrated Security=SSPI")
        #expect(session.sqlCommandTimeout == .seconds(30))
        #expect(session.sqlConnectionRetryInterval == .seconds(0))
        #expect(!session.allowCustomSqlDatabase)
        #expect(session.useHostingIdentity)
        #expect(session.stateConnectionString == "tcpip=127.0.0.1:42424")
        #expect(session.stateNetworkTimeout == .seconds(10))
        #expect(session.customProvider == "" && session.partitionResolverType == "" && session.sessionIDManagerType == "")
        #expect(!session.compressionEnabled)
        #expect(session.providers.isEmpty)
        #expect(settings.enableSessionState == .true)
        #expect(settings.httpCookies == HTTPCookiesSettings(httpOnlyCookies: false, requireSSL: false, domain: "", sameSite: .unspecified))
        #expect(settings.executionTimeout == .seconds(110))
        #expect(settings.sources.keys.allSatisfy { $0.hasPrefix("system.webServer/asp/session/") })
    }

    @Test func theBuiltInFilesAreTheShippedFiles() throws {
        let conf = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../conf.d").standardized
        for (name, _, builtIn) in ConfigurationStore.machineFileNames {
            let shipped = try String(contentsOf: conf.appendingPathComponent(name), encoding: .utf8)
            #expect(shipped == builtIn, "conf.d/\(name) differs from its built-in copy: run scripts/embed-config")
        }
    }

    @Test func eachLevelOverridesTheOneAbove() throws {
        let tree = try ConfigTree([
            "conf/machine.config": BuiltInConfiguration.machineConfig.replacingOccurrences(
                of: "<system.web>", with: "<system.web><sessionState timeout=\"11\" cookieName=\"M\" compressionEnabled=\"true\" />"),
            "conf/web.config": webConfig("<sessionState timeout=\"12\" cookieName=\"W\" />"),
            "www/web.config": webConfig("<sessionState timeout=\"13\" />"),
            "www/app/web.config": webConfig("<sessionState timeout=\"14\" />\n<pages enableSessionState=\"false\" />"),
            "www/app/sub/web.config": webConfig("<pages enableSessionState=\"ReadOnly\" />"),
        ], appHost: ConfigTree.appHost(applications: ConfigTree.application("app")))
        let root = try tree.settings("/page")
        #expect(root.sessionState.timeout == .seconds(13 * 60))
        #expect(root.sessionState.cookieName == "W")
        #expect(root.sessionState.compressionEnabled)
        #expect(root.sources["system.web/sessionState/timeout"] == SourceLocation(file: tree.path("www/web.config"), line: 3))
        #expect(root.sources["system.web/sessionState/cookieName"] == SourceLocation(file: tree.path("conf/web.config"), line: 3))
        let sub = try tree.settings("/app/sub/page")
        #expect(sub.sessionState.timeout == .seconds(14 * 60))
        #expect(sub.enableSessionState == .readOnly)
        #expect(sub.application.path == "/app")
        #expect(try tree.settings("/app/other").enableSessionState == .false)
    }

    @Test func locationPathsTargetFoldersFilesAndApplications() throws {
        let tree = try ConfigTree([
            "www/web.config": webConfig(rest: """
                <location path="a/b"><system.web><pages enableSessionState="false" /></system.web></location>
                <location path=""><system.web><sessionState timeout="40" /></system.web></location>
                <location path="A/page.aspx"><system.web><pages enableSessionState="ReadOnly" /></system.web></location>
                <location path="app"><system.web><sessionState cookieName="FromParent" timeout="41" /></system.web></location>
                """),
            "www/app/web.config": webConfig("<sessionState timeout=\"42\" />"),
            "conf/web.config": webConfig(rest: """
                <location path="Web/app"><system.web><sessionState cookieless="AutoDetect" /></system.web></location>
                <location path="Other Site/app"><system.web><sessionState cookieless="UseUri" /></system.web></location>
                """),
        ], appHost: ConfigTree.appHost(applications: ConfigTree.application("app")))
        #expect(try tree.settings("/a/b/c").enableSessionState == .false)
        #expect(try tree.settings("/a/bc").enableSessionState == .true)
        #expect(try tree.settings("/a/page.aspx").enableSessionState == .readOnly)
        #expect(try tree.settings("/x").sessionState.timeout == .seconds(40 * 60))
        // The parent's <location path="app"> applies first; app/web.config overrides it.
        let app = try tree.settings("/app/x")
        #expect(app.sessionState.cookieName == "FromParent")
        #expect(app.sessionState.timeout == .seconds(42 * 60))
        #expect(app.sessionState.cookieless == .autoDetect)
        #expect(app.sources["system.web/sessionState/cookieless"]?.file == tree.path("conf/web.config"))
    }

    @Test func inheritInChildApplicationsFalseStopsAtNestedApplications() throws {
        let tree = try ConfigTree([
            "www/web.config": webConfig(rest: """
                <location path="." inheritInChildApplications="false"><system.web><sessionState timeout="50" /></system.web></location>
                """),
        ], appHost: ConfigTree.appHost(applications: ConfigTree.application("app")))
        #expect(try tree.settings("/folder/x").sessionState.timeout == .seconds(50 * 60))
        #expect(try tree.settings("/app/x").sessionState.timeout == .seconds(20 * 60))
    }

    @Test func virtualDirectoriesAndSitesMapToTheirFolders() throws {
        let tree = try ConfigTree([
            "media/web.config": webConfig("<pages enableSessionState=\"false\" />"),
            "other/web.config": webConfig("<sessionState timeout=\"7\" />"),
        ], appHost: ConfigTree.appHost(
            applications: "<application path=\"/app\"><virtualDirectory path=\"/\" physicalPath=\"../www/app\" /><virtualDirectory path=\"/media\" physicalPath=\"../media\" /></application>",
            rest: "").replacingOccurrences(of: "</sites>", with: """
                <site name="Other" id="7"><application path="/"><virtualDirectory path="/" physicalPath="\(FileManager.default.temporaryDirectory.path)/does-not-matter" /></application></site>
                </sites>
                """))
        #expect(try tree.settings("/app/media/x").enableSessionState == .false)
        #expect(try tree.settings("/app/other/x").enableSessionState == .true)
        #expect(try tree.settings("/", site: .name("other")).site.id == 7)
        #expect(try tree.settings("/", site: .id(7)).sessionState.timeout == .seconds(20 * 60))
        let missing = tree.store().configuration(site: .name("nope"), path: "/")
        #expect(throws: ConfigurationErrors.self) { try missing.get() }
    }

    @Test func connectionStringNamesAreResolved() throws {
        let tree = try ConfigTree([
            "www/web.config": webConfig(
                "<sessionState mode=\"SQLServer\" sqlConnectionString=\"Db\" stateConnectionString=\"State\" />",
                rest: """
                <connectionStrings>
                  <add name="db" connectionString="Server=127.0.0.1;User ID=sa" />
                  <add name="State" connectionString="tcpip=127.0.0.1:1234" providerName="x" />
                </connectionStrings>
                """),
        ])
        let settings = try tree.settings("/")
        #expect(settings.sessionState.sqlConnectionString == "Server=127.0.0.1;User ID=sa")
        #expect(settings.sessionState.stateConnectionString == "tcpip=127.0.0.1:1234")
        #expect(settings.connectionStrings.map(\.providerName) == ["System.Data.SqlClient", "x"])
    }

    @Test func providersMergeWithAddRemoveAndClear() throws {
        let tree = try ConfigTree([
            "www/web.config": webConfig("""
                <sessionState mode="Custom" customProvider="Redis"><providers>
                <add name="Redis" type="Store.Redis" host="127.0.0.1" port="6379" />
                <add name="Pg" type="Store.Postgres" />
                <add name="Pg" type="Store.Postgres" />
                </providers></sessionState>
                """),
            "www/a/web.config": webConfig("<sessionState><providers><remove name=\"PG\" /><remove name=\"unknown\" /></providers></sessionState>"),
            "www/b/web.config": webConfig("<sessionState mode=\"InProc\"><providers><clear /><add name=\"Mem\" type=\"Store.Memory\" /></providers></sessionState>"),
        ], appHost: ConfigTree.appHost(applications: ConfigTree.application("a") + ConfigTree.application("b")))
        let root = try tree.settings("/")
        #expect(root.sessionState.providers == [
            ProviderSettings(name: "Redis", type: "Store.Redis", parameters: ["host": "127.0.0.1", "port": "6379"]),
            ProviderSettings(name: "Pg", type: "Store.Postgres", parameters: [:]),
        ])
        #expect(try tree.settings("/a/").sessionState.providers.map(\.name) == ["Redis"])
        #expect(try tree.settings("/b/").sessionState.providers.map(\.name) == ["Mem"])
    }

    @Test func attributeLinesAreTheLinesOfTheAttributes() throws {
        let tree = try ConfigTree([
            "www/web.config": "<configuration>\n  <system.web>\n    <sessionState\n      mode=\"InProc\"\n\n      timeout=\"9\" />\n  </system.web>\n</configuration>\n",
        ])
        let settings = try tree.settings("/")
        #expect(settings.sources["system.web/sessionState/mode"]?.line == 4)
        #expect(settings.sources["system.web/sessionState/timeout"]?.line == 6)
    }
}
