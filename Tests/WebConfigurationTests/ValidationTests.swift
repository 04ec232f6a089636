import Foundation
import Testing
@testable import WebConfiguration

struct ValidationTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var element: String
        var message: String
        var attribute: String?
        var testDescription: String { element }
    }

    static let sessionStateCases: [Case] = [
        Case(element: "<sessionState mode=\"inproc\" />",
             message: "The value of the property 'mode' cannot be parsed. The error is: The enumeration value must be one of the following: Off, InProc, StateServer, SQLServer, Custom.", attribute: "mode"),
        Case(element: "<sessionState mode=\"1\" />",
             message: "The value of the property 'mode' cannot be parsed. The error is: The enumeration value must be one of the following: Off, InProc, StateServer, SQLServer, Custom.", attribute: "mode"),
        Case(element: "<sessionState timeout=\"abc\" />",
             message: "The value of the property 'timeout' cannot be parsed. The error is: Input string was not in a correct format.", attribute: "timeout"),
        Case(element: "<sessionState timeout=\"0\" />",
             message: "The value for the property 'timeout' is not valid. The error is: The value must be inside the range 00:01:00-10675199.02:48:05.4775807.", attribute: "timeout"),
        Case(element: "<sessionState timeout=\"525601\" />",
             message: "For InProc and StateServer modes, the session timeout value cannot be larger than one year.", attribute: "timeout"),
        Case(element: "<sessionState mode=\"StateServer\" timeout=\"Infinite\" />",
             message: "For InProc and StateServer modes, the session timeout value cannot be larger than one year.", attribute: "timeout"),
        Case(element: "<sessionState cookieless=\"yes\" />",
             message: "The 'cookieless' attribute must be one of the following values: true, false, UseUri, UseCookies, AutoDetect, UseDeviceProfile.", attribute: "cookieless"),
        Case(element: "<sessionState cookieSameSite=\"-1\" />",
             message: "The value of the property 'cookieSameSite' cannot be parsed. The error is: The enumeration value must be one of the following: None, Lax, Strict.", attribute: "cookieSameSite"),
        Case(element: "<sessionState regenerateExpiredSessionId=\"yes\" />",
             message: "The value of the property 'regenerateExpiredSessionId' cannot be parsed. The error is: yes is not a valid value for Boolean.", attribute: "regenerateExpiredSessionId"),
        Case(element: "<sessionState stateNetworkTimeout=\"0\" />",
             message: "The value for the property 'stateNetworkTimeout' is not valid. The error is: The time span value must be positive.", attribute: "stateNetworkTimeout"),
        Case(element: "<sessionState sqlCommandTimeout=\"30s\" />",
             message: "The value of the property 'sqlCommandTimeout' cannot be parsed. The error is: The expected format is an integer value in seconds.", attribute: "sqlCommandTimeout"),
        Case(element: "<sessionState mode=\"Custom\" />",
             message: "The custom session state store provider name '' is invalid.", attribute: "mode"),
        Case(element: "<sessionState mode=\"Custom\" customProvider=\"Redis\" />",
             message: "The custom session state store provider 'Redis' is not found.", attribute: "customProvider"),
        Case(element: "<sessionState partitionResolverType=\"My.Resolver\" />",
             message: "Cannot use 'partitionResolver' unless the mode is 'StateServer' or 'SQLServer'.", attribute: "partitionResolverType"),
        Case(element: "<sessionState Timeout=\"5\" />",
             message: "Unrecognized attribute 'Timeout'. Note that attribute names are case-sensitive.", attribute: "Timeout"),
        Case(element: "<sessionState><store /></sessionState>", message: "Unrecognized element 'store'."),
        Case(element: "<sessionState><providers><add name=\"x\" /></providers></sessionState>",
             message: "Required attribute 'type' not found.", attribute: "type"),
        Case(element: "<sessionState><providers><add name=\"x\" type=\"A\" /><add name=\"X\" type=\"B\" /></providers></sessionState>",
             message: "The entry 'X' has already been added.", attribute: "name"),
        Case(element: "<pages enableSessionState=\"True\" />",
             message: "The 'enableSessionState' attribute must be one of the following values: true, false, ReadOnly.", attribute: "enableSessionState"),
        Case(element: "<httpRuntime executionTimeout=\"Infinite\" />",
             message: "The value of the property 'executionTimeout' cannot be parsed. The error is: The expected format is an integer value in seconds.", attribute: "executionTimeout"),
        Case(element: "<sessionState>text</sessionState>", message: "The configuration section cannot contain a CDATA or text element."),
    ]

    @Test(arguments: sessionStateCases)
    func aspNetValues(_ testCase: Case) throws {
        let tree = try ConfigTree(["www/web.config": webConfig(testCase.element)])
        let errors = tree.errors("/")
        #expect(errors.map(\.message) == [testCase.message])
        #expect(errors.first?.location == SourceLocation(file: tree.path("www/web.config"), line: 3))
        #expect(errors.first?.attribute == testCase.attribute)
    }

    static let accepted: [String] = [
        "<sessionState timeout=\"525600\" />",
        "<sessionState mode=\"SQLServer\" timeout=\"Infinite\" sqlConnectionString=\"Server=db;User ID=x\" />",
        "<sessionState mode=\"SQLServer\" allowCustomSqlDatabase=\"true\" sqlConnectionString=\"Server=db;Database=Mine\" />",
        "<sessionState mode=\"StateServer\" stateConnectionString=\"tcpip=[::1]:42424\" partitionResolverType=\"\" />",
        "<sessionState mode=\"Off\" cookieless=\"true\" regenerateExpiredSessionId=\" FALSE \" />",
        "<sessionState mode=\"Custom\" customProvider=\"redis\"><providers><add name=\"Redis\" type=\"R\" /></providers></sessionState>",
        "<pages enableSessionState=\"ReadOnly\" theme=\"Blue\"><namespaces /></pages>",
        "<httpRuntime executionTimeout=\"90\" maxRequestLength=\"4096\" />",
    ]

    @Test(arguments: accepted)
    func acceptedValues(_ element: String) throws {
        let tree = try ConfigTree(["www/web.config": webConfig(element)])
        _ = try tree.settings("/")
    }

    static let aspCases: [Case] = [
        Case(element: "<session timeout=\"00:20:30\" />",
             message: "The value for the property 'timeout' is not valid. The error is: The value must be a whole number of minutes.", attribute: "timeout"),
        Case(element: "<session timeout=\"366.00:00:00\" />",
             message: "The value for the property 'timeout' is not valid. The error is: The value must be inside the range 00:00:00-365.00:00:00.", attribute: "timeout"),
        Case(element: "<session timeout=\"20\" />",
             message: "The value of the property 'timeout' cannot be parsed. The error is: The expected format is hh:mm:ss (or d.hh:mm:ss).", attribute: "timeout"),
        Case(element: "<session max=\"many\" />",
             message: "The value of the property 'max' cannot be parsed. The error is: The value must be an integer from 0 to 4294967295 (or -1 for unlimited).", attribute: "max"),
        Case(element: "<session keepSessionIdSecure=\"1\" />",
             message: "The value of the property 'keepSessionIdSecure' cannot be parsed. The error is: 1 is not a valid value for Boolean.", attribute: "keepSessionIdSecure"),
        Case(element: "<session cookieName=\"x\" />",
             message: "Unrecognized attribute 'cookieName'. Note that attribute names are case-sensitive.", attribute: "cookieName"),
    ]

    @Test(arguments: aspCases)
    func aspValues(_ testCase: Case) throws {
        // Set in applicationHost.config, where the section is not locked.
        let appHost = ConfigTree.appHost(rest: "<system.webServer>\n<asp>\n\(testCase.element)\n</asp>\n</system.webServer>")
        let tree = try ConfigTree(appHost: appHost)
        let errors = tree.errors("/")
        #expect(errors.map(\.message) == [testCase.message])
        let line = 1 + (appHost.components(separatedBy: "\n").firstIndex(of: testCase.element) ?? -2)
        #expect(errors.first.map { tree.describe($0) }?.hasPrefix("conf/applicationHost.config:\(line): ") == true)
        #expect(errors.first?.attribute == testCase.attribute)
    }

    @Test func aspValuesParse() throws {
        let appHost = ConfigTree.appHost(rest: "<system.webServer><asp enableParentPaths=\"true\"><cache /><session timeout=\"1.02:03:00\" max=\"-1\" allowSessionState=\"False\" /></asp></system.webServer>")
        let settings = try ConfigTree(appHost: appHost).settings("/")
        #expect(settings.asp == ASPSessionSettings(allowSessionState: false, keepSessionIdSecure: true, max: .max, timeoutSeconds: 93_780))
        #expect(ConfigurationReport.json(settings).contains("\"timeout\": \"26:03:00\""))
    }

    static let fileCases: [(text: String, expected: String)] = [
        ("<configuration>\n<system.web>\n<sessionState mode=\"InProc\">\n</system.web>\n</configuration>",
         "www/web.config:4: Malformed XML: Opening and ending tag mismatch: sessionState line 3 and system.web"),
        ("<configuration>\n<a x='1' x='2'/>\n</configuration>", "www/web.config:2: Malformed XML: Attribute x redefined"),
        ("<?xml version=\"1.0\"?>\n<!DOCTYPE configuration [<!ENTITY e \"x\">]>\n<configuration />",
         "www/web.config:2: A <!DOCTYPE> is not allowed in configuration files."),
        ("<configuration><system.web>&ext;</system.web></configuration>", "www/web.config:1: Malformed XML: Entity 'ext' not defined"),
        ("<settings />", "www/web.config:1: The root element must be <configuration>, not <settings>."),
        ("", "www/web.config:1: Malformed XML: Document is empty"),
        ("<configuration>\n<location path=\"/a\" />\n</configuration>",
         "www/web.config:2: <location> path attribute must be a relative virtual path. It cannot start with any of ' ' '.' '/' or '\\'."),
        ("<configuration>\n<location path=\"a/\" />\n</configuration>",
         "www/web.config:2: <location> path attribute must be a relative virtual path. It cannot end with any of ' ' '.' '/' or '\\'."),
        ("<configuration>\n<location path=\"a:b\" />\n</configuration>",
         "www/web.config:2: <location> path attribute must be a relative virtual path. It cannot contain any of '?' ':' '\\' '*' '\"' '<' '>' or '|'."),
        ("<configuration>\n<location path=\"a\" allowOverride=\"false\"\n overrideMode=\"Deny\" />\n</configuration>",
         "www/web.config:3: A <location> tag may contain only one of the 'allowOverride' or 'overrideMode' attributes."),
        ("<configuration>\n<location overrideMode=\"Never\" />\n</configuration>",
         "www/web.config:2: The 'overrideMode' and 'overrideModeDefault' attributes must be one of the following values: Inherited, Allow, Deny."),
        ("<configuration>\n<location allowOverride=\"no\" />\n</configuration>",
         "www/web.config:2: The property 'allowOverride' must have value 'true' or 'false'."),
        ("<configuration>\n<location path=\"a\">\n<location path=\"b\" />\n</location>\n</configuration>",
         "www/web.config:3: <location> sections are allowed only within <configuration> sections."),
        ("<configuration>\n<system.web><pages /></system.web>\n<system.web>\n<pages />\n</system.web>\n</configuration>",
         "www/web.config:4: Sections must only appear once per config file.  See the help topic <location> for exceptions."),
        ("<configuration>\n<appSettings />\n<configSections />\n</configuration>",
         "www/web.config:3: Only one <configSections> element allowed per config file and if present must be the first child of the root <configuration> element."),
        ("<configuration>\n<configSections><sectionGroup name=\"system.web\">\n<section name=\"sessionState\" type=\"x\" />\n</sectionGroup></configSections>\n</configuration>",
         "www/web.config:3: Section or group name 'sessionState' is already defined. Updates to this may only occur at the configuration level where it is defined."),
        ("<configuration>\n<configSections>\n<section name=\"mine\" type=\"x\" allowDefinition=\"Anywhere\" />\n</configSections>\n</configuration>",
         "www/web.config:3: The 'allowDefinition' attribute must be one of the following values: Everywhere, MachineOnly, MachineToWebRoot, MachineToApplication, AppHostOnly."),
    ]

    @Test(arguments: fileCases.indices)
    func malformedFiles(_ index: Int) throws {
        let (text, expected) = Self.fileCases[index]
        let tree = try ConfigTree(["www/web.config": text])
        #expect(tree.describe(errorsOf: "/") == [expected])
    }

    @Test func oversizedFilesAreRejected() throws {
        let padding = String(repeating: "<!-- padding -->\n", count: 20_000)
        let tree = try ConfigTree(["www/web.config": "<configuration>\n\(padding)</configuration>"])
        let errors = tree.describe(errorsOf: "/")
        #expect(errors.count == 1)
        #expect(errors.first?.hasPrefix("www/web.config:1: The configuration file cannot be read: it is 340032 bytes; the limit is 262144 bytes") == true)
    }

    @Test func machineLevelErrorsReachEveryPathAndSiteErrorsAreReported() throws {
        let tree = try ConfigTree(appHost: """
            <configuration>
            <system.applicationHost><sites>
            <site name="A" id="x"><application path="/"><virtualDirectory path="/" physicalPath="." /></application></site>
            <site name="B" id="2"><application path="app"><virtualDirectory path="/" physicalPath="." /></application></site>
            </sites></system.applicationHost>
            </configuration>
            """)
        #expect(tree.describe(errorsOf: "/") == [
            "conf/applicationHost.config:3: The site id 'x' must be a positive integer.",
            "conf/applicationHost.config:4: The application path 'app' must start with '/'.",
            "conf/applicationHost.config:4: The site 'B' has no root application (<application path=\"/\">).",
        ])
    }

    @Test func checkFindsErrorsInFilesNoRequestHasReachedYet() throws {
        let tree = try ConfigTree([
            "www/web.config": webConfig(rest: "<location path=\"only/here\"><system.web><pages enableSessionState=\"maybe\" /></system.web></location>"),
            "www/deep/er/web.config": webConfig("<sessionState timeout=\"5\" />"),
            "www/fine/web.config": webConfig("<pages enableSessionState=\"false\" />"),
        ])
        #expect(tree.store().check().map(tree.describe) == [
            "www/deep/er/web.config:3: It is an error to use a section registered as allowDefinition='MachineToApplication' beyond application level.  This error can be caused by a virtual directory not being configured as an application in IIS.",
            "www/web.config:5: The 'enableSessionState' attribute must be one of the following values: true, false, ReadOnly.",
        ])
        try tree.remove("www/web.config")
        try tree.remove("www/deep/er/web.config")
        #expect(tree.store().check().isEmpty)
    }
}

/// Reports (`config show`, settings pages) never show a connection string's password.
struct ConnectionStringRedactionTests {
    @Test func passwordsAreHidden() {
        #expect(ConnectionStringRedaction.redacted("Server=db;User ID=web;Password=s3cret;Pooling=true") == "Server=db;User ID=web;Password=********;Pooling=true")
        #expect(ConnectionStringRedaction.redacted("server=db;pwd='a;b''c';x=1") == "server=db;pwd=********;x=1")
        #expect(ConnectionStringRedaction.redacted("host=db password=s3cret dbname=x") == "host=db password=******** dbname=x")
        #expect(ConnectionStringRedaction.redacted("postgresql://web:s3cret@db:5432/x") == "postgresql://web:********@db:5432/x")
        #expect(ConnectionStringRedaction.redacted("postgresql://web@db/x") == "postgresql://web@db/x")
        #expect(ConnectionStringRedaction.redacted("sqlite:/var/lib/s.db") == "sqlite:/var/lib/s.db")
    }
}
