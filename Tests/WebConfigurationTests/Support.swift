import Foundation
import Logging
import Testing
import WebConfiguration

/// A configuration tree in a temporary folder: `conf/` (the config dir) and `www/` (the root
/// of site "Web", id 1), removed when the tree is released.
final class ConfigTree {
    let root: String
    var configDirectory: String { root + "/conf" }

    init(_ files: [String: String] = [:], appHost: String? = ConfigTree.appHost()) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("webconfig-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root + "/conf", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/www", withIntermediateDirectories: true)
        if let appHost { try write("conf/applicationHost.config", appHost) }
        for (path, text) in files { try write(path, text) }
    }

    deinit {
        try? FileManager.default.removeItem(atPath: root)
    }

    func path(_ relative: String) -> String { root + "/" + relative }

    func write(_ relative: String, _ text: String) throws {
        let full = path(relative)
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: full))
    }

    func remove(_ relative: String) throws {
        try FileManager.default.removeItem(atPath: path(relative))
    }

    func store() -> ConfigurationStore {
        ConfigurationStore(directory: configDirectory, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
    }

    /// The settings of `urlPath`, failing the test on errors.
    func settings(_ urlPath: String, site: SiteSelector = .default, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> EffectiveConfiguration {
        switch store().configuration(site: site, path: urlPath) {
        case .success(let settings): return settings
        case .failure(let errors):
            Issue.record("unexpected errors: \(errors)", sourceLocation: sourceLocation)
            throw errors
        }
    }

    /// The errors of `urlPath`, failing the test when there are none.
    func errors(_ urlPath: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) -> [ConfigurationError] {
        switch store().configuration(path: urlPath) {
        case .success:
            Issue.record("expected configuration errors for \(urlPath)", sourceLocation: sourceLocation)
            return []
        case .failure(let errors): return errors.errors
        }
    }

    /// applicationHost.config for site "Web" (id 1) at ../www, `applications` inside the site,
    /// `rest` after `<system.applicationHost>`.
    static func appHost(applications: String = "", rest: String = "") -> String {
        """
        <configuration>
          <configSections>
            <sectionGroup name="system.webServer">
              <section name="asp" overrideModeDefault="Deny" />
            </sectionGroup>
          </configSections>
          <system.applicationHost>
            <sites>
              <site name="Web" id="1">
                <application path="/">
                  <virtualDirectory path="/" physicalPath="../www" />
                </application>
        \(applications)
              </site>
            </sites>
          </system.applicationHost>
        \(rest)
        </configuration>
        """
    }

    /// A nested application at `/path` whose folder is `www/path`.
    static func application(_ path: String) -> String {
        "<application path=\"/\(path)\"><virtualDirectory path=\"/\" physicalPath=\"../www/\(path)\" /></application>"
    }
}

/// A web.config whose line 3 is `systemWeb` inside `<system.web>`, followed by `rest`.
func webConfig(_ systemWeb: String = "", rest: String = "") -> String {
    "<configuration>\n<system.web>\n\(systemWeb)\n</system.web>\n\(rest)\n</configuration>\n"
}

/// A web.config whose line 4 is `session` inside `<system.webServer><asp>`.
func aspConfig(_ session: String) -> String {
    "<configuration>\n<system.webServer>\n<asp>\n\(session)\n</asp>\n</system.webServer>\n</configuration>\n"
}

extension ConfigTree {
    /// `path-in-tree:line: message`, for compact expectations.
    func describe(_ error: ConfigurationError) -> String {
        let file = error.location.file.hasPrefix(root + "/") ? String(error.location.file.dropFirst(root.count + 1)) : error.location.file
        return "\(file):\(error.location.line): \(error.message)"
    }

    func describe(errorsOf urlPath: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) -> [String] {
        errors(urlPath, sourceLocation: sourceLocation).map(describe)
    }
}
