import Foundation

/// machine.config, the root web.config and applicationHost.config, with the sites of the last.
struct MachineLevel: Sendable {
    var machine: ConfigFile
    var rootWeb: ConfigFile
    var applicationHost: ConfigFile
    var sites: [Site]
    /// Errors of these files: they make every URL's configuration invalid.
    var errors: [ConfigurationError]

    init(machine: ConfigFile, rootWeb: ConfigFile, applicationHost: ConfigFile) {
        self.machine = machine
        self.rootWeb = rootWeb
        self.applicationHost = applicationHost
        // Physical paths are kept absolute, so they do not depend on how --config-dir was written.
        var base = (applicationHost.path as NSString).deletingLastPathComponent
        if !base.hasPrefix("/") { base = FileManager.default.currentDirectoryPath + "/" + base }
        let (sites, siteErrors) = SiteReader.read(applicationHost.sitesElement, baseDirectory: base)
        self.sites = sites
        errors = machine.errors + rootWeb.errors + applicationHost.errors + siteErrors
    }

    var files: [ConfigFile] { [machine, rootWeb, applicationHost] }
}

/// Computes the effective configuration of one URL from the files along its path, the way
/// System.Configuration (ASP.NET sections) and IIS (system.webServer) merge them.
struct Resolver {
    /// A file on the URL's path with its place in the hierarchy.
    private struct Level {
        var file: ConfigFile
        var depth: Int
        /// The site name and URL segments of the file's level; empty above the sites.
        var namePath: [String]
    }

    /// A section occurrence that applies to the URL, in merge order.
    private struct Input {
        var block: SectionBlock
        var fileDepth: Int
        var targetDepth: Int
        var target: [String]
        var order: Int
    }

    let machine: MachineLevel
    let site: Site
    /// The URL's segments below the site root.
    let segments: [String]

    /// Resolves with `webConfig` returning the parsed web.config of a physical folder, or nil
    /// where there is none.
    func resolve(path: String, webConfig: (String) -> ConfigFile?) -> Result<EffectiveConfiguration, ConfigurationErrors> {
        var errors = machine.errors
        guard errors.isEmpty else { return .failure(ConfigurationErrors(errors)) }

        var levels = machine.files.enumerated().map { Level(file: $1, depth: $0, namePath: []) }
        var applicationDepths: Set<Int> = []
        for count in 0...segments.count {
            let prefix = segments[..<count]
            if site.applications.contains(where: { $0.segments.count == count && $0.segments.isPrefix(of: prefix) }) {
                applicationDepths.insert(3 + count)
            }
            guard let folder = site.physicalPath(for: prefix), let file = webConfig(folder) else { continue }
            errors += file.errors
            levels.append(Level(file: file, depth: 3 + count, namePath: [site.name] + prefix))
        }
        guard errors.isEmpty else { return .failure(ConfigurationErrors(errors)) }
        let application = site.application(for: segments[...])!
        let runningApplicationDepth = 3 + application.segments.count
        let requestDepth = 3 + segments.count
        let fullPath = [site.name] + segments

        // Declarations from every level, outermost first; a name is declared once.
        var declarations: [String: (declaration: SectionDeclaration, depth: Int)] = [:]
        for level in levels {
            for declaration in level.file.declarations {
                if declarations[declaration.name] != nil {
                    errors.append(ConfigurationError(
                        "Section or group name '\(declaration.name.split(separator: "/").last!)' is already defined. Updates to this may only occur at the configuration level where it is defined.",
                        at: declaration.location, attribute: "name"))
                    continue
                }
                declarations[declaration.name] = (declaration, level.depth)
            }
        }

        var inputs: [Input] = []
        for level in levels {
            for block in level.file.blocks {
                let target: [String]
                let targetDepth: Int
                if let location = block.locationPath, !location.isEmpty {
                    target = level.depth < 3 ? location : level.namePath + location
                    targetDepth = 2 + target.count
                } else {
                    target = level.namePath
                    targetDepth = level.depth
                }
                guard target.isPrefix(of: fullPath[...]) else { continue }
                if !block.inheritInChildApplications,
                   applicationDepths.contains(where: { $0 > targetDepth && $0 <= requestDepth }) {
                    continue
                }
                inputs.append(Input(block: block, fileDepth: level.depth, targetDepth: targetDepth, target: target, order: inputs.count))
            }
        }
        inputs.sort { ($0.targetDepth, $0.fileDepth, $0.order) < ($1.targetDepth, $1.fileDepth, $1.order) }

        var states: [String: SectionState] = [:]
        for schema in SectionSchema.all {
            var state = SectionState(schema: schema)
            let declared = declarations[schema.name]
            var lock: Int? = declared.flatMap { $0.declaration.overrideModeDefault == .deny ? $0.depth : nil }
            for input in inputs where input.block.section.name == schema.name {
                let at = input.block.element.location
                guard let (declaration, _) = declared else {
                    errors.append(ConfigurationError("Unrecognized configuration section \(schema.name).", at: at))
                    continue
                }
                if input.block.locationPath != nil, !declaration.allowLocation {
                    errors.append(ConfigurationError(
                        "This section is not allowed in <location> elements.  This section has been marked allowLocation=\"false\".",
                        at: input.block.locationElement ?? at))
                    continue
                }
                if let message = Self.definitionError(
                    declaration.allowDefinition, targetDepth: input.targetDepth,
                    isApplicationRoot: applicationDepths.contains(input.targetDepth),
                    runningApplicationDepth: runningApplicationDepth) {
                    errors.append(ConfigurationError(message, at: at))
                    continue
                }
                if let lockDepth = lock, input.fileDepth > lockDepth {
                    errors.append(ConfigurationError(schema.isASPNET ? Self.lockedMessage : Self.lockedMessageIIS, at: at))
                    continue
                }
                state.apply(input.block.element, depth: input.fileDepth, errors: &errors)
                switch input.block.overrideMode {
                case .deny: lock = input.fileDepth
                case .allow: lock = nil
                case .inherit: break
                }
            }
            states[schema.name] = state
        }

        let result = Self.settings(states, site: site, application: application, path: path, errors: &errors)
        return errors.isEmpty ? .success(result) : .failure(ConfigurationErrors(errors))
    }

    static let lockedMessage = "This configuration section cannot be used at this path.  This happens when the site administrator has locked access to this section using <location allowOverride=\"false\"> from an inherited configuration file."
    static let lockedMessageIIS = "This configuration section cannot be used at this path. This happens when the section is locked at a parent level. Locking is either by default (overrideModeDefault=\"Deny\"), or set explicitly by a location tag with overrideMode=\"Deny\" or the legacy allowOverride=\"false\"."

    /// System.Web's `IsDefinitionAllowed`, with IIS's AppHostOnly.
    static func definitionError(_ definition: AllowDefinition, targetDepth: Int, isApplicationRoot: Bool, runningApplicationDepth: Int) -> String? {
        switch definition {
        case .everywhere:
            return nil
        case .machineOnly:
            return targetDepth == 0 ? nil : "It is an error to use a section registered as allowDefinition='MachineOnly' beyond machine.config."
        case .machineToWebRoot:
            return targetDepth <= 1 ? nil : "It is an error to use a section registered as allowDefinition='MachineToWebRoot' beyond the root web.config file."
        case .appHostOnly:
            return targetDepth == 2 ? nil : "It is an error to use a section registered as allowDefinition='AppHostOnly' outside applicationHost.config."
        case .machineToApplication:
            if targetDepth <= 2 || isApplicationRoot || targetDepth <= runningApplicationDepth { return nil }
            return "It is an error to use a section registered as allowDefinition='MachineToApplication' beyond application level.  This error can be caused by a virtual directory not being configured as an application in IIS."
        }
    }

    // MARK: Typed settings

    private static func settings(
        _ states: [String: SectionState], site: Site, application: Application, path: String, errors: inout [ConfigurationError]
    ) -> EffectiveConfiguration {
        var sources: [String: SourceLocation] = [:]
        for state in states.values {
            for (key, setting) in state.values {
                if let source = setting.source { sources["\(state.schema.name)/\(key)"] = source }
            }
            for (key, items) in state.collections {
                for item in items {
                    sources[[state.schema.name, key, item.name].filter { !$0.isEmpty }.joined(separator: "/")] = item.source
                }
            }
        }
        let asp = states[SectionSchema.asp.name]!
        let session = states[SectionSchema.sessionState.name]!
        let pages = states[SectionSchema.pages.name]!
        let cookies = states[SectionSchema.httpCookies.name]!
        let runtime = states[SectionSchema.httpRuntime.name]!
        let connectionStrings = (states[SectionSchema.connectionStrings.name]!.collections[""] ?? []).map {
            ConnectionStringSettings(
                name: $0.name, connectionString: $0.attributes["connectionString"] ?? "",
                providerName: $0.attributes["providerName"] ?? "System.Data.SqlClient")
        }
        func resolved(_ value: String) -> String {
            connectionStrings.first { $0.name.caseInsensitiveCompare(value) == .orderedSame && !$0.connectionString.isEmpty }?.connectionString ?? value
        }
        let sessionState = SessionStateSettings(
            mode: SessionStateMode(rawValue: session.value("mode").text)!,
            timeout: session.value("timeout").time(unit: 60),
            cookieName: session.value("cookieName").text,
            cookieless: CookieMode(rawValue: session.value("cookieless").text)!,
            cookieSameSite: SameSiteMode(rawValue: session.value("cookieSameSite").text)!,
            regenerateExpiredSessionId: session.value("regenerateExpiredSessionId").flag,
            sqlConnectionString: resolved(session.value("sqlConnectionString").text),
            sqlCommandTimeout: session.value("sqlCommandTimeout").time(unit: 1),
            sqlConnectionRetryInterval: session.value("sqlConnectionRetryInterval").time(unit: 1),
            allowCustomSqlDatabase: session.value("allowCustomSqlDatabase").flag,
            useHostingIdentity: session.value("useHostingIdentity").flag,
            stateConnectionString: resolved(session.value("stateConnectionString").text),
            stateNetworkTimeout: session.value("stateNetworkTimeout").time(unit: 1),
            customProvider: session.value("customProvider").text,
            partitionResolverType: session.value("partitionResolverType").text,
            sessionIDManagerType: session.value("sessionIDManagerType").text,
            compressionEnabled: session.value("compressionEnabled").flag,
            providers: (session.collections["providers"] ?? []).map { item in
                var parameters = item.attributes
                parameters["name"] = nil
                parameters["type"] = nil
                return ProviderSettings(name: item.name, type: item.attributes["type"] ?? "", parameters: parameters)
            })
        validate(sessionState, session, errors: &errors)
        return EffectiveConfiguration(
            site: site,
            application: application,
            path: path,
            asp: ASPSessionSettings(
                allowSessionState: asp.value("session/allowSessionState").flag,
                keepSessionIdSecure: asp.value("session/keepSessionIdSecure").flag,
                max: UInt32(asp.value("session/max").number),
                timeoutSeconds: asp.value("session/timeout").number),
            sessionState: sessionState,
            enableSessionState: EnableSessionState(rawValue: pages.value("enableSessionState").text)!,
            httpCookies: HTTPCookiesSettings(
                httpOnlyCookies: cookies.value("httpOnlyCookies").flag,
                requireSSL: cookies.value("requireSSL").flag,
                domain: cookies.value("domain").text,
                sameSite: SameSiteMode(rawValue: cookies.value("sameSite").text)!),
            executionTimeout: runtime.value("executionTimeout").time(unit: 1).duration ?? .seconds(110),
            connectionStrings: connectionStrings,
            sources: sources)
    }

    /// The checks System.Web makes on the merged section (module initialisation and store
    /// set-up), made here so they are reported with the configuration.
    private static func validate(_ settings: SessionStateSettings, _ state: SectionState, errors: inout [ConfigurationError]) {
        func place(_ attribute: String, or fallback: String = "mode") -> (SourceLocation, String)? {
            if let source = state.values[attribute]?.source { return (source, attribute) }
            if let source = state.values[fallback]?.source { return (source, fallback) }
            return nil
        }
        func report(_ message: String, _ attribute: String, or fallback: String = "mode") {
            guard let (source, name) = place(attribute, or: fallback) else { return }
            errors.append(ConfigurationError(message, at: source, attribute: name))
        }
        let mode = settings.mode
        if mode == .inProc || mode == .stateServer {
            if case .seconds(let seconds) = settings.timeout, seconds <= 525_600 * 60 {} else {
                report("For InProc and StateServer modes, the session timeout value cannot be larger than one year.", "timeout")
            }
        }
        if !settings.partitionResolverType.isEmpty, mode != .stateServer, mode != .sqlServer {
            report("Cannot use 'partitionResolver' unless the mode is 'StateServer' or 'SQLServer'.", "partitionResolverType")
        }
        if mode == .custom {
            if settings.customProvider.isEmpty {
                report("The custom session state store provider name '' is invalid.", "customProvider")
            } else if !settings.providers.contains(where: { $0.name.caseInsensitiveCompare(settings.customProvider) == .orderedSame }) {
                report("The custom session state store provider '\(settings.customProvider)' is not found.", "customProvider")
            }
        }
        if mode == .stateServer, settings.partitionResolverType.isEmpty, StateServerAddress(settings.stateConnectionString) == nil {
            report(StateServerAddress.invalidMessage, "stateConnectionString")
        }
        if mode == .sqlServer, settings.partitionResolverType.isEmpty {
            do throws(ValueError) {
                let options = try ConnectionStringSyntax.parse(settings.sqlConnectionString)
                if !settings.allowCustomSqlDatabase,
                   options.keys.contains(where: { ["database", "initial catalog", "attachdbfilename"].contains($0) }) {
                    report(
                        "The sqlConnectionString attribute or the connection string it refers to cannot contain the connection options 'Database', 'Initial Catalog' or 'AttachDbFileName'. In order to allow this, allowCustomSqlDatabase attribute must be set to true and the application needs to be granted unrestricted SqlClientPermission. Please check with your administrator if the application does not have this permission.",
                        "sqlConnectionString")
                }
            } catch {
                report("Error parsing <sessionState> sqlConnectionString attribute: \(error.message)", "sqlConnectionString")
            }
        }
    }
}

extension ConfigValue {
    var text: String {
        switch self {
        case .string(let text), .enumeration(let text): text
        default: ""
        }
    }

    var flag: Bool {
        if case .bool(let value) = self { return value }
        return false
    }

    var number: Int64 {
        switch self {
        case .integer(let value), .timeSpan(let value): value
        default: 0
        }
    }

    /// A minutes or seconds value as seconds; `unit` is the seconds per configured unit.
    func time(unit: Int64) -> ConfiguredTime {
        switch self {
        case .minutes(let value?), .seconds(let value?): .seconds(value * unit)
        default: .infinite
        }
    }
}
