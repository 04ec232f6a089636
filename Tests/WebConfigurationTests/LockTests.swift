import Foundation
import Testing
@testable import WebConfiguration

struct LockTests {
    static let iisLocked = Resolver.lockedMessageIIS
    static let netLocked = Resolver.lockedMessage
    static let machineToApplication = "It is an error to use a section registered as allowDefinition='MachineToApplication' beyond application level.  This error can be caused by a virtual directory not being configured as an application in IIS."

    @Test func theASPSectionIsLockedUnlessApplicationHostUnlocksIt() throws {
        let unlock = """
            <location path="Web/open" overrideMode="Allow"><system.webServer><asp /></system.webServer></location>
            <location path="Web/open/closed" overrideMode="Deny"><system.webServer><asp><session max="9" /></asp></system.webServer></location>
            """
        let tree = try ConfigTree([
            "www/web.config": aspConfig("<session timeout=\"00:30:00\" />"),
            "www/open/web.config": aspConfig("<session timeout=\"00:31:00\" />"),
            "www/open/deeper/web.config": aspConfig("<session timeout=\"00:32:00\" />"),
            "www/open/closed/web.config": aspConfig("<session timeout=\"00:33:00\" />"),
        ], appHost: ConfigTree.appHost(rest: unlock))
        #expect(tree.describe(errorsOf: "/x") == ["www/web.config:3: \(Self.iisLocked)"])
        try tree.remove("www/web.config")
        #expect(try tree.settings("/open/x").asp.timeoutSeconds == 31 * 60)
        #expect(try tree.settings("/open/deeper/x").asp.timeoutSeconds == 32 * 60)
        #expect(tree.describe(errorsOf: "/open/closed/x") == ["www/open/closed/web.config:3: \(Self.iisLocked)"])
        try tree.remove("www/open/closed/web.config")
        #expect(try tree.settings("/open/closed/x").asp.max == 9)
    }

    @Test func unlockingTheWholeServerWithAnEmptyPath() throws {
        let tree = try ConfigTree([
            "www/a/web.config": aspConfig("<session allowSessionState=\"false\" />"),
        ], appHost: ConfigTree.appHost(rest: "<location path=\"\" overrideMode=\"Allow\"><system.webServer><asp /></system.webServer></location>"))
        #expect(try tree.settings("/a/").asp.allowSessionState == false)
        #expect(try tree.settings("/b/").asp.allowSessionState == true)
    }

    @Test func allowOverrideFalseLocksASPNETSectionsBelow() throws {
        let tree = try ConfigTree([
            "www/web.config": webConfig(rest: """
                <location path="" allowOverride="false"><system.web><pages enableSessionState="ReadOnly" /></system.web></location>
                <location path="sub" allowOverride="true"><system.web><httpCookies requireSSL="true" /></system.web></location>
                """),
            "www/sub/web.config": webConfig("<pages enableSessionState=\"true\" />\n<httpCookies requireSSL=\"false\" />"),
        ])
        #expect(tree.describe(errorsOf: "/sub/x") == ["www/sub/web.config:3: \(Self.netLocked)"])
        #expect(try tree.settings("/other").enableSessionState == .readOnly)
    }

    @Test func overrideModeDenyInApplicationHostForOneApplication() throws {
        let tree = try ConfigTree([
            "www/app/web.config": webConfig("<pages enableSessionState=\"false\" />"),
        ], appHost: ConfigTree.appHost(applications: ConfigTree.application("app")))
        try tree.write("conf/web.config", webConfig(rest: "<location path=\"Web/app\" overrideMode=\"Deny\"><system.web><pages enableSessionState=\"true\" /></system.web></location>"))
        #expect(tree.describe(errorsOf: "/app/") == ["www/app/web.config:3: \(Self.netLocked)"])
    }

    @Test func attributeAndElementLocks() throws {
        let tree = try ConfigTree([
            "www/web.config": webConfig("""
                <sessionState lockAttributes="timeout, cookieName" />
                """),
            "www/a/web.config": webConfig("<sessionState mode=\"Off\" />"),
            "www/b/web.config": webConfig("<sessionState timeout=\"5\" />"),
            "www/c/web.config": webConfig("<sessionState lockAllAttributesExcept=\"mode\" />"),
            "www/c/d/web.config": webConfig("<sessionState mode=\"Off\" regenerateExpiredSessionId=\"false\" />"),
            "www/e/web.config": webConfig("<sessionState lockElements=\"providers\" />"),
            "www/e/f/web.config": webConfig("<sessionState><providers><clear /></providers></sessionState>"),
            "www/g/web.config": webConfig("<sessionState lockAttributes=\"colour\" />"),
        ], appHost: ConfigTree.appHost(applications: ["a", "b", "c", "c/d", "e", "e/f", "g"].map(ConfigTree.application).joined()))
        #expect(try tree.settings("/a/").sessionState.mode == .off)
        #expect(tree.describe(errorsOf: "/b/") == ["www/b/web.config:3: The attribute 'timeout' has been locked in a higher level configuration."])
        #expect(tree.errors("/b/").first?.attribute == "timeout")
        #expect(tree.describe(errorsOf: "/c/d/") == ["www/c/d/web.config:3: The attribute 'regenerateExpiredSessionId' has been locked in a higher level configuration."])
        #expect(tree.describe(errorsOf: "/e/f/") == ["www/e/f/web.config:3: The element 'providers' has been locked in a higher level configuration."])
        let invalid = try #require(tree.errors("/g/").first)
        #expect(invalid.message.hasPrefix("The attribute 'colour' is not valid in the locked list for this section. The following attributes can be locked: mode, timeout, cookieName"))
        #expect(invalid.attribute == "lockAttributes")
    }

    @Test func lockedCollectionItems() throws {
        let tree = try ConfigTree([
            "www/web.config": webConfig("<sessionState><providers><add name=\"P\" type=\"T\" lockItem=\"true\" /></providers></sessionState>"),
            "www/a/web.config": webConfig("<sessionState><providers><clear /></providers></sessionState>"),
            "www/b/web.config": webConfig("<sessionState><providers><remove name=\"p\" /></providers></sessionState>"),
        ], appHost: ConfigTree.appHost(applications: ConfigTree.application("a") + ConfigTree.application("b")))
        #expect(tree.describe(errorsOf: "/a/") == ["www/a/web.config:3: A collection item has been locked in a higher level configuration. The collection may not be cleared."])
        #expect(tree.describe(errorsOf: "/b/") == ["www/b/web.config:3: The collection item has been locked in a higher level configuration and may not be changed."])
    }

    @Test func sessionStateBelowAnApplicationRootIsAnError() throws {
        let tree = try ConfigTree([
            "www/web.config": webConfig(rest: """
                <location path="sub"><system.web><sessionState timeout="5" /></system.web></location>
                <location path="app"><system.web><sessionState timeout="6" /></system.web></location>
                """),
            "www/dir/web.config": webConfig("<sessionState timeout=\"7\" />"),
            "www/app/inner/web.config": webConfig("<pages enableSessionState=\"false\" />"),
        ], appHost: ConfigTree.appHost(applications: ConfigTree.application("app")))
        #expect(tree.describe(errorsOf: "/dir/x") == ["www/dir/web.config:3: \(Self.machineToApplication)"])
        #expect(tree.describe(errorsOf: "/sub/x") == ["www/web.config:5: \(Self.machineToApplication)"])
        // A <location> targeting an application root is fine, and pages varies per folder.
        let inner = try tree.settings("/app/inner/x")
        #expect(inner.sessionState.timeout == .seconds(6 * 60))
        #expect(inner.enableSessionState == .false)
    }

    @Test func theDeclarationIsDataNotCode() throws {
        let everywhere = BuiltInConfiguration.machineConfig.replacingOccurrences(
            of: "allowDefinition=\"MachineToApplication\"", with: "allowDefinition=\"Everywhere\"")
        let tree = try ConfigTree([
            "conf/machine.config": everywhere,
            "www/dir/web.config": webConfig("<sessionState timeout=\"7\" />"),
        ])
        #expect(try tree.settings("/dir/x").sessionState.timeout == .seconds(7 * 60))

        let noLocation = BuiltInConfiguration.machineConfig.replacingOccurrences(
            of: "<section name=\"pages\" type=\"System.Web.Configuration.PagesSection, System.Web\" />",
            with: "<section name=\"pages\" type=\"System.Web.Configuration.PagesSection, System.Web\" allowLocation=\"false\" />")
        try tree.write("conf/machine.config", noLocation)
        try tree.write("www/web.config", webConfig(rest: "<location path=\"a\"><system.web><pages enableSessionState=\"false\" /></system.web></location>"))
        #expect(tree.describe(errorsOf: "/a/") == ["www/web.config:5: This section is not allowed in <location> elements.  This section has been marked allowLocation=\"false\"."])

        let undeclared = BuiltInConfiguration.machineConfig.replacingOccurrences(
            of: "<section name=\"pages\" type=\"System.Web.Configuration.PagesSection, System.Web\" />", with: "")
        try tree.write("conf/machine.config", undeclared)
        try tree.remove("www/web.config")
        try tree.write("www/web.config", webConfig("<pages enableSessionState=\"false\" />"))
        #expect(tree.describe(errorsOf: "/") == ["www/web.config:3: Unrecognized configuration section system.web/pages."])
        try tree.write("www/web.config", "<configuration><configSections><sectionGroup name=\"system.web\"><section name=\"pages\" type=\"x\" /></sectionGroup></configSections><system.web><pages enableSessionState=\"false\" /></system.web></configuration>")
        #expect(try tree.settings("/").enableSessionState == .false)
    }
}
