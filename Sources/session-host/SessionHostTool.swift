import ArgumentParser
import SessionHost

/// The administration tool.
@main
struct SessionHostTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session-host",
        abstract: "Administer SessionHost, the FastCGI host that gives Swift handlers IIS session state behind nginx.",
        discussion: """
            Apps built on SessionHost are their own executables: run `APP serve --listen unix:PATH` \
            to serve one (see `APP serve --help`). This tool checks and explains the \
            web.config/applicationHost.config hierarchy, and installs the SQLServer mode's \
            schema in PostgreSQL or SQLite (`session-host sql`).
            """,
        version: SessionHostVersion.current,
        subcommands: [ConfigCommand.self, SQLCommand.self]
    )

    func run() throws {
        print(Self.helpMessage())
    }
}
