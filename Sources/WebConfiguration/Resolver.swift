import Foundation

/// machine.config, the root web.config and applicationHost.config, with the sites of the last.
struct MachineLevel: Sendable {
    var machine: ConfigFile
    var rootWeb: ConfigFile
    var applicationHost: ConfigFile
    var sites: [Site]
    /// Each site's applications and virtual directories by virtual path, by site id.
    var anchors: [Int: PathTrie<SiteAnchor>]
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
        anchors = Dictionary(uniqueKeysWithValues: sites.map { ($0.id, SiteAnchor.trie(of: $0)) })
        errors = machine.errors + rootWeb.errors + applicationHost.errors + siteErrors
    }

    var files: [ConfigFile] { [machine, rootWeb, applicationHost] }

    func site(_ selector: SiteSelector) -> Site? {
        switch selector {
        case .id(let id): sites.first { $0.id == id }
        case .name(let name): sites.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }
        }
    }
}

/// Computes the effective configuration of one URL from the files along its path, the way
/// System.Configuration (ASP.NET sections) and IIS (system.webServer) merge them.
struct Resolver {
    /// A section occurrence that applies to the URL, in merge order.
    private struct Input {
        var block: SectionBlock
        var fileDepth: Int
        var targetDepth: Int
        var order: Int
    }

    /// Work done, counted so that tests can tell linear from quadratic without timing.
    struct Work: Sendable, Hashable {
        /// Directory-level resolutions.
        var resolutions = 0
        /// Section blocks examined as candidates for a URL.
        var blocksConsidered = 0
        /// Elements of the blocks merged.
        var elementsMerged = 0
    }

    let machine: MachineLevel
    let site: Site
    /// The files, application roots and serving application of the URL's significant prefix.
    let walk: PathWalk

    func resolve(path: String, work: inout Work) -> Result<EffectiveConfiguration, ConfigurationErrors> {
        var errors = machine.errors
        guard errors.isEmpty else { return .failure(ConfigurationErrors(errors)) }
        work.resolutions += 1
        let levels = walk.levels
        for level in levels { errors += level.file.errors }
        guard errors.isEmpty else { return .failure(ConfigurationErrors(errors)) }
        let segments = walk.segments
        let applicationDepths = walk.applicationDepths
        let application = walk.application
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
            // The blocks whose <location> target is on the URL's path: those at the file's own
            // level and those found walking its location trie down the rest of the path.
            let below = fullPath.dropFirst(level.depth < 3 ? 0 : level.namePath.count)
            var candidates = level.file.blocksByLocation.values(at: PathTrie<Int>.root)
            var node = PathTrie<Int>.root
            for segment in below {
                guard let next = level.file.blocksByLocation.child(of: node, segment) else { break }
                node = next
                candidates += level.file.blocksByLocation.values(at: node)
            }
            work.blocksConsidered += candidates.count
            for index in candidates.sorted() {
                let block = level.file.blocks[index]
                let targetDepth: Int
                if let location = block.locationPath, !location.isEmpty {
                    targetDepth = 2 + (level.depth < 3 ? 0 : level.namePath.count) + location.count
                } else {
                    targetDepth = level.depth
                }
                if !block.inheritInChildApplications,
                   applicationDepths.contains(where: { $0 > targetDepth && $0 <= requestDepth }) {
                    continue
                }
                inputs.append(Input(block: block, fileDepth: level.depth, targetDepth: targetDepth, order: inputs.count))
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
                work.elementsMerged += input.block.elementCount
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
            for (key, collection) in state.collections {
                for item in collection.items {
                    sources[[state.schema.name, key, item.name].filter { !$0.isEmpty }.joined(separator: "/")] = item.source
                }
            }
        }
        let asp = states[SectionSchema.asp.name]!
        let session = states[SectionSchema.sessionState.name]!
        let pages = states[SectionSchema.pages.name]!
        let cookies = states[SectionSchema.httpCookies.name]!
        let runtime = states[SectionSchema.httpRuntime.name]!
        let connectionStrings = (states[SectionSchema.connectionStrings.name]!.collections[""]?.items ?? []).map {
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
            providers: (session.collections["providers"]?.items ?? []).map { item in
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
