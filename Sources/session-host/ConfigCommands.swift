import SessionHost
import SessionState
import RedisSessionStore
import SQLSessionStore
import StateServerSessionStore
import ArgumentParser
import Foundation
import Logging
import WebConfiguration

/// The stores SessionHost ships: `config check` accepts their modes and provider types. An app's
/// own Custom stores are unknown to this tool: the app's `check-config` checks them.
let builtInStores = [StateServerSessionStore.factory, SQLSessionStateStore.factory, RedisSessionStateStore.factory]

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Explain and check the web.config/applicationHost.config hierarchy.",
        subcommands: [ShowCommand.self, CheckCommand.self]
    )
}

struct ConfigDirectoryOption: ParsableArguments {
    @Option(name: .customLong("config-dir"), help: ArgumentHelp("Folder of machine.config, web.config and applicationHost.config.", valueName: "dir"))
    var configDir: String = "conf.d"
}

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print the effective session settings of a URL, and where each value was set.",
        discussion: """
            Prints system.webServer/asp/session, system.web/sessionState (with its providers) and \
            system.web/pages/@enableSessionState as they apply to URLPATH, each value with the \
            file and line that set it (or "default"). Exits 1 and prints the errors if the \
            configuration of that URL is invalid.
            """
    )

    @OptionGroup var directory: ConfigDirectoryOption

    @Option(help: ArgumentHelp("The site, by name or id (default: the site with id 1).", valueName: "name"))
    var site: String?

    @Flag(help: "Print one JSON object of values only.")
    var json = false

    @Argument(help: ArgumentHelp("The URL path, e.g. /app/dir/page.", valueName: "urlpath"))
    var urlPath: String

    func validate() throws {
        guard urlPath.hasPrefix("/") else { throw ValidationError("URLPATH must start with '/'") }
    }

    func run() throws {
        let store = ConfigurationStore(directory: directory.configDir, logger: .init(label: "config") { _ in SwiftLogNoOpLogHandler() }, validate: SessionManager.storageValidator(stores: builtInStores))
        let selector: SiteSelector = site.map { Int($0).map(SiteSelector.id) ?? .name($0) } ?? .default
        switch store.configuration(site: selector, path: urlPath) {
        case .success(let settings):
            print(json ? ConfigurationReport.json(settings) : ConfigurationReport.text(settings))
        case .failure(let failure):
            var standardError = StandardError()
            print("The configuration of \(urlPath) is invalid:", to: &standardError)
            for error in failure.errors { print(error.description, to: &standardError) }
            throw ExitCode.failure
        }
    }
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate every configuration file of every site.",
        discussion: "Prints each error as file:line: message and exits 1 if there is any."
    )

    @OptionGroup var directory: ConfigDirectoryOption

    func run() throws {
        let errors = SessionManager.checkConfiguration(directory: directory.configDir, options: SessionOptions(stores: builtInStores))
        guard !errors.isEmpty else {
            print("OK: the configuration in \(directory.configDir) and every site's web.config files are valid.")
            return
        }
        for error in errors { print(error.description) }
        throw ExitCode.failure
    }
}

struct StandardError: TextOutputStream {
    mutating func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
