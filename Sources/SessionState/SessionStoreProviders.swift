public import WebConfiguration

/// The session-state modes this build provides, and the check that a configuration asks only
/// for those: a mode the build lacks is a configuration error, never a silent fallback.
public enum SessionStoreProviders {
    /// `Off` and `InProc`. StateServer, SQLServer and Custom stores come in a later release.
    public static let availableModes: [SessionStateMode] = [.off, .inProc]

    /// The configuration errors of `configuration` that concern session storage.
    public static func validate(_ configuration: EffectiveConfiguration) -> [ConfigurationError] {
        let mode = configuration.sessionState.mode
        guard !availableModes.contains(mode) else { return [] }
        let location = configuration.sources["system.web/sessionState/mode"]
            ?? SourceLocation(file: "(default)", line: 1)
        let available = availableModes.map(\.rawValue).joined(separator: " and ")
        var message = "The session-state mode '\(mode.rawValue)' is not available in this build of SessionHost (it provides \(available))."
        if mode == .custom {
            message = "The custom session state store provider '\(configuration.sessionState.customProvider)' cannot be loaded: this build of SessionHost provides no custom stores (mode 'Custom' is not available; it provides \(available))."
        }
        return [ConfigurationError(message, at: location, attribute: "mode")]
    }
}
