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
        var key: AppliedBlock
        var targetDepth: Int
        var order: Int
    }

    private typealias Declarations = [String: (declaration: SectionDeclaration, depth: Int)]

    /// Work done, counted so that tests can tell linear from quadratic without timing.
    struct Work: Sendable, Hashable {
        /// Directory-level resolutions.
        var resolutions = 0
        /// Section blocks examined as candidates for a URL.
        var blocksConsidered = 0
        /// Elements of the blocks merged (a memoised merge counts nothing).
        var elementsMerged = 0
    }

    let machine: MachineLevel
    let site: Site
    /// The files, application roots and serving application of the URL's significant prefix.
    let walk: PathWalk

    /// The configuration of the walked prefix, reported at `path`. Sections merged from the same
    /// blocks before come from `sections`; new merges are added to it.
    func resolve(path: String, work: inout Work, sections: inout BoundedCache<SectionKey, MergedSection>) -> Result<EffectiveConfiguration, ConfigurationErrors> {
        var errors = machine.errors
        guard errors.isEmpty else { return .failure(ConfigurationErrors(errors)) }
        work.resolutions += 1
        for level in walk.levels { errors += level.file.errors }
        guard errors.isEmpty else { return .failure(ConfigurationErrors(errors)) }
        let declarations = declarations(errors: &errors)
        let inputs = inputs(work: &work)
        var merged: [String: MergedSection] = [:]
        for schema in SectionSchema.all {
            let applied = applicable(inputs, of: schema, declarations: declarations, errors: &errors)
            let key = SectionKey(section: schema.name, blocks: applied.map(\.key))
            let section = sections.value(for: key) ?? {
                let section = MergedSection(schema, blocks: applied.map(\.block), depths: applied.map(\.key.depth), work: &work)
                sections.insert(section, for: key, bytes: section.estimatedBytes)
                return section
            }()
            errors += section.errors
            merged[schema.name] = section
        }
        let result = Self.settings(merged, site: site, application: walk.application, path: path, errors: &errors)
        return errors.isEmpty ? .success(result) : .failure(ConfigurationErrors(errors))
    }

    /// Section declarations from every level, outermost first; a name is declared once.
    private func declarations(errors: inout [ConfigurationError]) -> Declarations {
        var declarations: Declarations = [:]
        for level in walk.levels {
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
        return declarations
    }

    /// The section blocks that apply to the prefix, in merge order: by target depth, then file
    /// depth, then order in the file.
    private func inputs(work: inout Work) -> [Input] {
        let fullPath = [site.name] + walk.segments
        let requestDepth = 3 + walk.segments.count
        var inputs: [Input] = []
        for level in walk.levels {
            // The blocks whose <location> target is on the URL's path: those at the file's own
            // level and those found walking its location trie down the rest of the path.
            let levelSegments = level.depth < 3 ? 0 : level.namePath.count
            let trie = level.file.blocksByLocation
            var candidates = trie.values(at: PathTrie<Int>.root)
            var node = PathTrie<Int>.root
            for segment in fullPath.dropFirst(levelSegments) {
                guard let next = trie.child(of: node, segment) else { break }
                node = next
                candidates += trie.values(at: node)
            }
            work.blocksConsidered += candidates.count
            for index in candidates.sorted() {
                let block = level.file.blocks[index]
                let targetDepth: Int
                if let location = block.locationPath, !location.isEmpty {
                    targetDepth = 2 + levelSegments + location.count
                } else {
                    targetDepth = level.depth
                }
                if !block.inheritInChildApplications,
                   walk.applicationDepths.contains(where: { $0 > targetDepth && $0 <= requestDepth }) {
                    continue
                }
                let key = AppliedBlock(file: level.file.identity, block: index, depth: level.depth)
                inputs.append(Input(block: block, key: key, targetDepth: targetDepth, order: inputs.count))
            }
        }
        return inputs.sorted { ($0.targetDepth, $0.key.depth, $0.order) < ($1.targetDepth, $1.key.depth, $1.order) }
    }

    /// The inputs of `schema` that may be merged: declared, allowed in `<location>` and at their
    /// level, and not locked by a level above; an error for each of the others.
    private func applicable(_ inputs: [Input], of schema: SectionSchema, declarations: Declarations, errors: inout [ConfigurationError]) -> [Input] {
        let declared = declarations[schema.name]
        let runningApplicationDepth = 3 + walk.application.segments.count
        var lock: Int? = declared.flatMap { $0.declaration.overrideModeDefault == .deny ? $0.depth : nil }
        var applicable: [Input] = []
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
                isApplicationRoot: walk.applicationDepths.contains(input.targetDepth),
                runningApplicationDepth: runningApplicationDepth) {
                errors.append(ConfigurationError(message, at: at))
                continue
            }
            if let lockDepth = lock, input.key.depth > lockDepth {
                errors.append(ConfigurationError(schema.isASPNET ? Self.lockedMessage : Self.lockedMessageIIS, at: at))
                continue
            }
            applicable.append(input)
            switch input.block.overrideMode {
            case .deny: lock = input.key.depth
            case .allow: lock = nil
            case .inherit: break
            }
        }
        return applicable
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
        _ merged: [String: MergedSection], site: Site, application: Application, path: String, errors: inout [ConfigurationError]
    ) -> EffectiveConfiguration {
        let asp = merged[SectionSchema.asp.name]!.state
        let session = merged[SectionSchema.sessionState.name]!.state
        let pages = merged[SectionSchema.pages.name]!.state
        let cookies = merged[SectionSchema.httpCookies.name]!.state
        let runtime = merged[SectionSchema.httpRuntime.name]!.state
        let connectionStrings = merged[SectionSchema.connectionStrings.name]!
        func resolved(_ value: String) -> String {
            connectionStrings.connectionString(named: value) ?? value
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
            providers: merged[SectionSchema.sessionState.name]!.providers)
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
            connectionStrings: connectionStrings.connectionStrings,
            sectionSources: SectionSchema.all.map { merged[$0.name]!.sources })
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
        // stateConnectionString and sqlConnectionString are checked by the store an app links
        // (the syntaxes are the stores': tcpip=host:port; libpq, sqlite:PATH and ADO.NET
        // keywords), with file and line, by the host's storage validation; see the README.
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
