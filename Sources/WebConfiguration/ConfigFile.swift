/// Which file of the hierarchy a configuration file is.
enum ConfigFileKind: Sendable, Hashable {
    case machine
    case rootWeb
    case applicationHost
    /// A web.config in a site's directory.
    case web
}

/// `overrideMode` of a `<location>` (and `overrideModeDefault` of a `<section>`).
enum OverrideMode: Sendable, Hashable {
    case inherit, allow, deny
}

/// `allowDefinition` of a `<section>` declaration: which levels may set the section.
enum AllowDefinition: String, Sendable, Hashable, CaseIterable {
    case everywhere = "Everywhere"
    case machineOnly = "MachineOnly"
    case machineToWebRoot = "MachineToWebRoot"
    case machineToApplication = "MachineToApplication"
    case appHostOnly = "AppHostOnly"
}

/// A `<section>` in `<configSections>`.
struct SectionDeclaration: Sendable {
    var name: String
    var allowDefinition: AllowDefinition
    var allowLocation: Bool
    var overrideModeDefault: OverrideMode
    var location: SourceLocation
}

/// One occurrence of a section in a file, at the file's own level or in a `<location>`.
struct SectionBlock: Sendable {
    var section: SectionSchema
    var element: ConfigElement
    /// The `<location path>` segments; nil outside `<location>`, empty for an empty path.
    var locationPath: [String]?
    var overrideMode: OverrideMode
    var inheritInChildApplications: Bool
    /// The `<location>` element, if any.
    var locationElement: SourceLocation?
    /// Elements in the section, counted once when the file is read.
    var elementCount: Int
}

/// A configuration file read into what SessionHost needs of it.
struct ConfigFile: Sendable {
    var path: String
    var kind: ConfigFileKind
    /// This version of the file, among all read in the process (see `MergedSection`).
    private(set) var identity = ConfigFile.newIdentity()
    var declarations: [SectionDeclaration] = []
    var blocks: [SectionBlock] = []
    /// Indices into `blocks` by `<location path>`; blocks outside `<location>` or with an empty
    /// path are at the root. The resolver walks it along a URL instead of testing every block.
    var blocksByLocation = PathTrie<Int>()
    /// Elements read from the XML (0 for a file that could not be read).
    var elementCount = 0
    /// `<system.applicationHost><sites>` (applicationHost.config only).
    var sitesElement: ConfigElement?
    /// Errors that make the whole file unusable.
    var errors: [ConfigurationError] = []

    /// Groups whose sections SessionHost may know; other top-level elements are other
    /// software's settings and are skipped.
    private static let groups: Set<String> = ["system.web", "system.webServer"]

    /// A file that could not be read.
    init(path: String, kind: ConfigFileKind, unreadable reason: String) {
        self.path = path
        self.kind = kind
        errors = [ConfigurationError("The configuration file cannot be read: \(reason)", at: SourceLocation(file: path, line: 1))]
    }

    init(path: String, kind: ConfigFileKind, bytes: [UInt8]) {
        self.path = path
        self.kind = kind
        let root: ConfigElement
        do {
            root = try XMLReader.parse(bytes, file: path)
        } catch {
            errors.append(error)
            return
        }
        elementCount = root.subtreeCount
        defer {
            for (index, block) in blocks.enumerated() { blocksByLocation.insert(index, at: block.locationPath ?? []) }
        }
        guard root.name == "configuration" else {
            errors.append(ConfigurationError("The root element must be <configuration>, not <\(root.name)>.", at: root.location))
            return
        }
        var seen: Set<String> = []
        var declared: Set<String> = []
        for (index, child) in root.children.enumerated() {
            switch child.name {
            case "configSections":
                if index != 0 {
                    errors.append(ConfigurationError(
                        "Only one <configSections> element allowed per config file and if present must be the first child of the root <configuration> element.",
                        at: child.location))
                } else {
                    readDeclarations(child, group: "", declared: &declared)
                }
            case "location":
                readLocation(child, seen: &seen)
            case "system.applicationHost":
                if kind == .applicationHost { sitesElement = child.children.first { $0.name == "sites" } }
            default:
                collectSections(child, group: "", location: nil, seen: &seen)
            }
        }
    }

    private mutating func readDeclarations(_ element: ConfigElement, group: String, declared: inout Set<String>) {
        for child in element.children {
            switch child.name {
            case "sectionGroup":
                guard let name = child.attribute("name")?.value, !name.isEmpty else {
                    errors.append(ConfigurationError("The 'name' attribute must be specified on the 'sectionGroup' tag.", at: child.location, attribute: "name"))
                    continue
                }
                readDeclarations(child, group: group.isEmpty ? name : "\(group)/\(name)", declared: &declared)
            case "section":
                readSection(child, group: group, declared: &declared)
            default:
                // <remove>/<clear/> of declarations: SessionHost's sections are not removable.
                continue
            }
        }
    }

    private mutating func readSection(_ element: ConfigElement, group: String, declared: inout Set<String>) {
        guard let name = element.attribute("name")?.value, !name.isEmpty else {
            errors.append(ConfigurationError("The 'name' attribute must be specified on the 'section' tag.", at: element.location, attribute: "name"))
            return
        }
        var declaration = SectionDeclaration(
            name: group.isEmpty ? name : "\(group)/\(name)", allowDefinition: .everywhere, allowLocation: true,
            overrideModeDefault: .allow, location: element.location)
        for attribute in element.attributes {
            let at = element.location(of: attribute)
            switch attribute.name {
            case "name", "type", "allowExeDefinition", "requirePermission", "restartOnExternalChanges":
                continue
            case "allowDefinition":
                guard let value = AllowDefinition(rawValue: attribute.value) else {
                    errors.append(ConfigurationError(
                        "The 'allowDefinition' attribute must be one of the following values: \(AllowDefinition.allCases.map(\.rawValue).joined(separator: ", ")).",
                        at: at, attribute: attribute.name))
                    continue
                }
                declaration.allowDefinition = value
            case "allowLocation":
                guard let value = Self.strictBoolean(attribute.value) else {
                    errors.append(ConfigurationError("The property 'allowLocation' must have value 'true' or 'false'.", at: at, attribute: attribute.name))
                    continue
                }
                declaration.allowLocation = value
            case "overrideModeDefault":
                guard let value = Self.overrideMode(attribute.value) else {
                    errors.append(Self.badOverrideMode(at: at, attribute: attribute.name))
                    continue
                }
                declaration.overrideModeDefault = value == .inherit ? .allow : value
            default:
                errors.append(ConfigurationError("Unrecognized attribute '\(attribute.name)'. Note that attribute names are case-sensitive.", at: at, attribute: attribute.name))
            }
        }
        // IIS declares its native sections without a type; System.Configuration requires one.
        if kind != .applicationHost, element.attribute("type") == nil {
            errors.append(ConfigurationError("The 'type' attribute must be specified on the 'section' tag.", at: element.location, attribute: "type"))
        }
        guard declared.insert(declaration.name).inserted else {
            errors.append(ConfigurationError(
                "Section or group name '\(name)' is already defined. This can not be defined multiple times.",
                at: element.location, attribute: "name"))
            return
        }
        declarations.append(declaration)
    }

    private mutating func readLocation(_ element: ConfigElement, seen: inout Set<String>) {
        var path: [String] = []
        var overrideMode = OverrideMode.inherit
        var inherit = true
        var modeAttribute: String?
        for attribute in element.attributes {
            let at = element.location(of: attribute)
            switch attribute.name {
            case "path":
                do throws(ValueError) {
                    path = try Self.locationPath(attribute.value)
                } catch {
                    errors.append(ConfigurationError(error.message, at: at, attribute: "path"))
                    return
                }
            case "allowOverride", "overrideMode":
                if modeAttribute != nil {
                    errors.append(ConfigurationError("A <location> tag may contain only one of the 'allowOverride' or 'overrideMode' attributes.", at: at, attribute: attribute.name))
                    return
                }
                modeAttribute = attribute.name
                if attribute.name == "allowOverride" {
                    guard let allow = Self.strictBoolean(attribute.value) else {
                        errors.append(ConfigurationError("The property 'allowOverride' must have value 'true' or 'false'.", at: at, attribute: attribute.name))
                        return
                    }
                    overrideMode = allow ? .allow : .deny
                } else {
                    guard let mode = Self.overrideMode(attribute.value) else {
                        errors.append(Self.badOverrideMode(at: at, attribute: attribute.name))
                        return
                    }
                    overrideMode = mode
                }
            case "inheritInChildApplications":
                guard let value = Self.strictBoolean(attribute.value) else {
                    errors.append(ConfigurationError("The property 'inheritInChildApplications' must have value 'true' or 'false'.", at: at, attribute: attribute.name))
                    return
                }
                inherit = value
            default:
                errors.append(ConfigurationError("Unrecognized attribute '\(attribute.name)'. Note that attribute names are case-sensitive.", at: at, attribute: attribute.name))
                return
            }
        }
        if !inherit, path.isEmpty, kind == .machine || kind == .rootWeb {
            errors.append(ConfigurationError(
                "InheritInChildApplications cannot be set to \"false\" if the location path is referring to machine.config or the root web.config.",
                at: element.location(of: element.attribute("inheritInChildApplications")!), attribute: "inheritInChildApplications"))
            return
        }
        let location = Location(path: path, overrideMode: overrideMode, inheritInChildApplications: inherit, element: element.location)
        for child in element.children {
            collectSections(child, group: "", location: location, seen: &seen)
        }
    }

    private struct Location {
        var path: [String]
        var overrideMode: OverrideMode
        var inheritInChildApplications: Bool
        var element: SourceLocation
    }

    private mutating func collectSections(_ element: ConfigElement, group: String, location: Location?, seen: inout Set<String>) {
        if element.name == "location" {
            errors.append(ConfigurationError("<location> sections are allowed only within <configuration> sections.", at: element.location))
            return
        }
        let name = group.isEmpty ? element.name : "\(group)/\(element.name)"
        if let schema = SectionSchema.byName[name] {
            // As in IIS, the ASP.NET sections are not read from applicationHost.config.
            if schema.isASPNET, kind == .applicationHost { return }
            let key = (location?.path.map { $0.lowercased() }.joined(separator: "/") ?? "") + "|" + name
            guard seen.insert(key).inserted else {
                errors.append(ConfigurationError("Sections must only appear once per config file.  See the help topic <location> for exceptions.", at: element.location))
                return
            }
            blocks.append(SectionBlock(
                section: schema, element: element, locationPath: location?.path,
                overrideMode: location?.overrideMode ?? .inherit,
                inheritInChildApplications: location?.inheritInChildApplications ?? true,
                locationElement: location?.element,
                elementCount: element.subtreeCount))
        } else if group.isEmpty, Self.groups.contains(name) {
            for child in element.children {
                collectSections(child, group: name, location: location, seen: &seen)
            }
        }
    }

    /// The segments of a `<location path>`, checked as System.Configuration does.
    static func locationPath(_ text: String) throws(ValueError) -> [String] {
        let trimmed = text.trimmingBlanks
        if trimmed.isEmpty || trimmed == "." { return [] }
        let edge: Set<Character> = [" ", ".", "/", "\\"]
        if let first = text.first, edge.contains(first) {
            throw ValueError(message: "<location> path attribute must be a relative virtual path. It cannot start with any of ' ' '.' '/' or '\\'.")
        }
        if let last = text.last, edge.contains(last) {
            throw ValueError(message: "<location> path attribute must be a relative virtual path. It cannot end with any of ' ' '.' '/' or '\\'.")
        }
        if text.contains(where: { "?:\\*\"<>|".contains($0) }) {
            throw ValueError(message: "<location> path attribute must be a relative virtual path. It cannot contain any of '?' ':' '\\' '*' '\"' '<' '>' or '|'.")
        }
        let segments = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if segments.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            throw ValueError(message: "<location> path attribute must be a relative virtual path. It cannot contain empty, '.' or '..' segments.")
        }
        return segments
    }

    static func strictBoolean(_ text: String) -> Bool? {
        switch text {
        case "true": true
        case "false": false
        default: nil
        }
    }

    static func overrideMode(_ text: String) -> OverrideMode? {
        switch text {
        case "Allow": .allow
        case "Deny": .deny
        case "Inherit", "Inherited": .inherit
        default: nil
        }
    }

    static func badOverrideMode(at location: SourceLocation, attribute: String) -> ConfigurationError {
        ConfigurationError("The 'overrideMode' and 'overrideModeDefault' attributes must be one of the following values: Inherited, Allow, Deny.", at: location, attribute: attribute)
    }
}
