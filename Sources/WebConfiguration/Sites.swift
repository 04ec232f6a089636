import Foundation

/// A site of applicationHost.config (`<site name id>`), with its applications.
public struct Site: Sendable, Hashable {
    public var name: String
    public var id: Int
    /// Deepest first.
    public var applications: [Application]
}

/// An `<application path>` of a site.
public struct Application: Sendable, Hashable {
    /// The virtual path, `/` or `/app/sub`.
    public var path: String
    var segments: [String]
    /// Deepest first.
    public var virtualDirectories: [VirtualDirectory]
    /// The physical folder of the application's root.
    public var physicalPath: String { virtualDirectories.last!.physicalPath }
}

/// A `<virtualDirectory path physicalPath>` of an application.
public struct VirtualDirectory: Sendable, Hashable {
    /// Relative to the application: `/` or `/images`.
    public var path: String
    var segments: [String]
    /// Absolute; a relative `physicalPath` is resolved against applicationHost.config's folder.
    public var physicalPath: String
}

/// The segments of a virtual path such as `/app/sub`; nil unless it starts with `/`.
func virtualPathSegments(_ path: String) -> [String]? {
    guard path.hasPrefix("/") else { return nil }
    return path.split(separator: "/").map(String.init)
}

enum SiteReader {
    /// Reads `<sites>`; `baseDirectory` resolves relative physical paths.
    static func read(_ sites: ConfigElement?, baseDirectory: String) -> (sites: [Site], errors: [ConfigurationError]) {
        var result: [Site] = []
        var errors: [ConfigurationError] = []
        var names: Set<String> = []
        var ids: Set<Int> = []
        for element in sites?.children ?? [] where element.name == "site" {
            guard let name = element.attribute("name")?.value, !name.trimmingBlanks.isEmpty else {
                errors.append(ConfigurationError("Required attribute 'name' not found.", at: element.location, attribute: "name"))
                continue
            }
            guard let idAttribute = element.attribute("id") else {
                errors.append(ConfigurationError("Required attribute 'id' not found.", at: element.location, attribute: "id"))
                continue
            }
            guard let id = Int(idAttribute.value.trimmingBlanks), id > 0, id <= Int(UInt32.max) else {
                errors.append(ConfigurationError("The site id '\(idAttribute.value)' must be a positive integer.", at: element.location(of: idAttribute), attribute: "id"))
                continue
            }
            if names.contains(name.lowercased()) {
                errors.append(ConfigurationError("The entry '\(name)' has already been added.", at: element.location, attribute: "name"))
                continue
            }
            if ids.contains(id) {
                errors.append(ConfigurationError("Another site already has id \(id).", at: element.location(of: idAttribute), attribute: "id"))
                continue
            }
            var applications: [Application] = []
            var paths: Set<String> = []
            for child in element.children where child.name == "application" {
                if let application = readApplication(child, site: name, baseDirectory: baseDirectory, existing: &paths, errors: &errors) {
                    applications.append(application)
                }
            }
            guard applications.contains(where: { $0.segments.isEmpty }) else {
                errors.append(ConfigurationError("The site '\(name)' has no root application (<application path=\"/\">).", at: element.location))
                continue
            }
            applications.sort { $0.segments.count > $1.segments.count }
            names.insert(name.lowercased())
            ids.insert(id)
            result.append(Site(name: name, id: id, applications: applications))
        }
        return (result, errors)
    }

    private static func readApplication(
        _ element: ConfigElement, site: String, baseDirectory: String, existing: inout Set<String>, errors: inout [ConfigurationError]
    ) -> Application? {
        guard let pathAttribute = element.attribute("path") else {
            errors.append(ConfigurationError("Required attribute 'path' not found.", at: element.location, attribute: "path"))
            return nil
        }
        guard let segments = virtualPathSegments(pathAttribute.value) else {
            errors.append(ConfigurationError("The application path '\(pathAttribute.value)' must start with '/'.", at: element.location(of: pathAttribute), attribute: "path"))
            return nil
        }
        let key = segments.joined(separator: "/").lowercased()
        guard !existing.contains(key) else {
            errors.append(ConfigurationError("The entry '\(pathAttribute.value)' has already been added.", at: element.location(of: pathAttribute), attribute: "path"))
            return nil
        }
        var directories: [VirtualDirectory] = []
        var directoryPaths: Set<String> = []
        for child in element.children where child.name == "virtualDirectory" {
            guard let path = child.attribute("path") else {
                errors.append(ConfigurationError("Required attribute 'path' not found.", at: child.location, attribute: "path"))
                continue
            }
            guard let physical = child.attribute("physicalPath"), !physical.value.trimmingBlanks.isEmpty else {
                errors.append(ConfigurationError("Required attribute 'physicalPath' not found.", at: child.location, attribute: "physicalPath"))
                continue
            }
            guard let directorySegments = virtualPathSegments(path.value) else {
                errors.append(ConfigurationError("The virtual directory path '\(path.value)' must start with '/'.", at: child.location(of: path), attribute: "path"))
                continue
            }
            guard directoryPaths.insert(directorySegments.joined(separator: "/").lowercased()).inserted else {
                errors.append(ConfigurationError("The entry '\(path.value)' has already been added.", at: child.location(of: path), attribute: "path"))
                continue
            }
            let resolved = physical.value.hasPrefix("/") ? physical.value : baseDirectory + "/" + physical.value
            directories.append(VirtualDirectory(
                path: path.value, segments: directorySegments,
                physicalPath: (resolved as NSString).standardizingPath))
        }
        guard directories.contains(where: { $0.segments.isEmpty }) else {
            errors.append(ConfigurationError(
                "The application '\(pathAttribute.value)' of site '\(site)' has no root virtual directory (<virtualDirectory path=\"/\" physicalPath=…>).",
                at: element.location))
            return nil
        }
        directories.sort { $0.segments.count > $1.segments.count }
        existing.insert(key)
        return Application(path: "/" + segments.joined(separator: "/"), segments: segments, virtualDirectories: directories)
    }
}
