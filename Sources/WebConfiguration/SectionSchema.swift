/// One attribute a configuration element accepts: its parser and its default.
struct AttributeSchema: Sendable {
    var name: String
    var parser: ValueParser
    var defaultValue: ConfigValue
}

/// A collection of `<add>`/`<remove>`/`<clear/>` items keyed by `name` (compared ignoring case).
struct CollectionSchema: Sendable {
    var itemAttributes: [AttributeSchema]
    var requiredAttributes: [String]
    /// Attributes other than `itemAttributes` are kept as parameters (ProviderSettings) instead
    /// of being rejected.
    var keepsOtherAttributes: Bool
}

/// What an element of a section accepts.
struct ElementSchema: Sendable {
    var attributes: [AttributeSchema] = []
    /// Attribute names that are valid but not modelled here (other ASP.NET/IIS settings of the
    /// same element); nil accepts any name.
    var ignoredAttributes: Set<String>? = []
    var children: [String: ElementSchema] = [:]
    /// Child elements accepted and not read (nil: any).
    var ignoredChildren: Set<String>? = []
    var collection: CollectionSchema?

    func attribute(_ name: String) -> AttributeSchema? {
        attributes.first { $0.name == name }
    }
}

/// The sections SessionHost reads, with the schemas of ASP.NET (System.Web) and IIS.
struct SectionSchema: Sendable {
    /// `group/name`, as in `system.web/sessionState`.
    var name: String
    var root: ElementSchema
    /// Sections of the ASP.NET pipeline are not read from applicationHost.config.
    var isASPNET: Bool

    static let sessionState = SectionSchema(
        name: "system.web/sessionState",
        root: ElementSchema(
            attributes: [
                .init(name: "mode", parser: .enumeration(["Off", "InProc", "StateServer", "SQLServer", "Custom"]), defaultValue: .enumeration("InProc")),
                .init(name: "timeout", parser: .minutesOrInfinite(minimum: 1), defaultValue: .minutes(20)),
                .init(name: "cookieName", parser: .string, defaultValue: .string("ASP.NET_SessionId")),
                .init(name: "cookieless", parser: .webEnumeration(
                    ["true", "false", "UseUri", "UseCookies", "AutoDetect", "UseDeviceProfile"],
                    aliases: ["true": "UseUri", "false": "UseCookies"]), defaultValue: .enumeration("UseCookies")),
                .init(name: "cookieSameSite", parser: .enumeration(["None", "Lax", "Strict"]), defaultValue: .enumeration("Lax")),
                .init(name: "regenerateExpiredSessionId", parser: .boolean, defaultValue: .bool(true)),
                .init(name: "sqlConnectionString", parser: .string, defaultValue: .string("data source=127.0.0.1;Integrated Security=SSPI")),
                .init(name: "sqlCommandTimeout", parser: .secondsOrInfinite(), defaultValue: .seconds(30)),
                .init(name: "sqlConnectionRetryInterval", parser: .secondsOrInfinite(), defaultValue: .seconds(0)),
                .init(name: "allowCustomSqlDatabase", parser: .boolean, defaultValue: .bool(false)),
                .init(name: "useHostingIdentity", parser: .boolean, defaultValue: .bool(true)),
                .init(name: "stateConnectionString", parser: .string, defaultValue: .string("tcpip=127.0.0.1:42424")),
                .init(name: "stateNetworkTimeout", parser: .secondsOrInfinite(positive: true), defaultValue: .seconds(10)),
                .init(name: "customProvider", parser: .string, defaultValue: .string("")),
                .init(name: "partitionResolverType", parser: .string, defaultValue: .string("")),
                .init(name: "sessionIDManagerType", parser: .string, defaultValue: .string("")),
                .init(name: "compressionEnabled", parser: .boolean, defaultValue: .bool(false)),
            ],
            children: [
                "providers": ElementSchema(collection: CollectionSchema(
                    itemAttributes: [
                        .init(name: "name", parser: .string, defaultValue: .string("")),
                        .init(name: "type", parser: .string, defaultValue: .string("")),
                    ],
                    requiredAttributes: ["name", "type"],
                    keepsOtherAttributes: true)),
            ]),
        isASPNET: true)

    static let pages = SectionSchema(
        name: "system.web/pages",
        root: ElementSchema(
            attributes: [
                .init(name: "enableSessionState", parser: .webEnumeration(["true", "false", "ReadOnly"]), defaultValue: .enumeration("true")),
            ],
            ignoredAttributes: nil,
            ignoredChildren: nil),
        isASPNET: true)

    static let httpCookies = SectionSchema(
        name: "system.web/httpCookies",
        root: ElementSchema(attributes: [
            .init(name: "httpOnlyCookies", parser: .boolean, defaultValue: .bool(false)),
            .init(name: "requireSSL", parser: .boolean, defaultValue: .bool(false)),
            .init(name: "domain", parser: .string, defaultValue: .string("")),
            .init(name: "sameSite", parser: .enumeration(["None", "Lax", "Strict", "Unspecified"]), defaultValue: .enumeration("Unspecified")),
        ]),
        isASPNET: true)

    static let httpRuntime = SectionSchema(
        name: "system.web/httpRuntime",
        root: ElementSchema(
            attributes: [
                .init(name: "executionTimeout", parser: .secondsOrInfinite(positive: true, allowsInfinite: false), defaultValue: .seconds(110)),
            ],
            ignoredAttributes: nil,
            ignoredChildren: nil),
        isASPNET: true)

    static let connectionStrings = SectionSchema(
        name: "connectionStrings",
        root: ElementSchema(collection: CollectionSchema(
            itemAttributes: [
                .init(name: "name", parser: .string, defaultValue: .string("")),
                .init(name: "connectionString", parser: .string, defaultValue: .string("")),
                .init(name: "providerName", parser: .string, defaultValue: .string("System.Data.SqlClient")),
            ],
            requiredAttributes: ["name", "connectionString"],
            keepsOtherAttributes: false)),
        isASPNET: true)

    /// IIS `system.webServer/asp`; only `<session>` is modelled, the other settings are accepted.
    static let asp = SectionSchema(
        name: "system.webServer/asp",
        root: ElementSchema(
            ignoredAttributes: [
                "appAllowClientDebug", "appAllowDebugging", "bufferingOn", "calcLineNumber", "codePage",
                "enableApplicationRestart", "enableAspHtmlFallback", "enableChunkedEncoding", "enableParentPaths",
                "errorsToNTLog", "exceptionCatchEnable", "lcid", "logErrorRequests", "runOnEndAnonymously",
                "scriptErrorMessage", "scriptErrorSentToBrowser", "scriptLanguage",
            ],
            children: [
                "session": ElementSchema(attributes: [
                    .init(name: "allowSessionState", parser: .boolean, defaultValue: .bool(true)),
                    .init(name: "keepSessionIdSecure", parser: .boolean, defaultValue: .bool(true)),
                    .init(name: "max", parser: .unsignedInteger, defaultValue: .integer(Int64(UInt32.max))),
                    .init(name: "timeout", parser: .timeSpan(range: 0...31_536_000, granularity: 60), defaultValue: .timeSpan(1200)),
                ]),
            ],
            ignoredChildren: ["cache", "comPlus", "limits"]),
        isASPNET: false)

    static let all: [SectionSchema] = [sessionState, pages, httpCookies, httpRuntime, connectionStrings, asp]
    static let byName: [String: SectionSchema] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
}

/// Attributes every section element accepts (System.Configuration's element locking, and
/// IIS's equivalents).
let lockingAttributes: Set<String> = ["lockAttributes", "lockAllAttributesExcept", "lockElements", "lockAllElementsExcept", "lockItem"]
