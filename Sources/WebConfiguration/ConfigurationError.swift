/// A place in a configuration file: the file's path as given and a 1-based line.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int

    public init(file: String, line: Int) {
        self.file = file
        self.line = line
    }

    public var description: String { "\(file):\(line)" }
}

/// Invalid configuration: what is wrong, and where (file, line, attribute).
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var location: SourceLocation
    /// The attribute at fault, when one is.
    public var attribute: String?

    public init(_ message: String, at location: SourceLocation, attribute: String? = nil) {
        self.message = message
        self.location = location
        self.attribute = attribute
    }

    /// `file:line: message`
    public var description: String { "\(location): \(message)" }
}

/// All errors that make the configuration of one URL invalid.
public struct ConfigurationErrors: Error, Sendable, Hashable, CustomStringConvertible {
    public var errors: [ConfigurationError]

    public init(_ errors: [ConfigurationError]) {
        self.errors = errors
    }

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
