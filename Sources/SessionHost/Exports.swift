// One `import SessionHost` gives a handler author what handlers use: the session objects and
// typed keys (SessionState), HTTP statuses and fields (HTTPTypes), `Logger` (swift-log) and the
// effective configuration a request carries (WebConfiguration). As hummingbird re-exports
// HTTPTypes' types for its handlers.
@_exported public import SessionState
@_exported public import HTTPTypes
@_exported public import Logging
@_exported public import struct WebConfiguration.EffectiveConfiguration
