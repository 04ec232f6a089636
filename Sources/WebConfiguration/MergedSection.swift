import Synchronization

/// One section block as merged into a URL's configuration: which file (by its parse identity),
/// which block of it, and the depth it is merged at (locks compare depths).
struct AppliedBlock: Hashable, Sendable {
    var file: UInt64
    var block: Int
    var depth: Int
}

/// A section's merge inputs: the same blocks in the same order merge to the same result.
struct SectionKey: Hashable, Sendable {
    var section: String
    var blocks: [AppliedBlock]
}

/// A section merged down the hierarchy, with what the settings need of it, computed once.
///
/// Many URLs merge a section from the very same blocks (every `<location>` target below a
/// web.config with 2000 connection strings merges those strings identically), so the store
/// memoises merged sections by `SectionKey`: a large collection is merged, and its typed
/// settings and sources built, once per change of its files, not once per URL or prefix.
struct MergedSection: Sendable {
    var state: SectionState
    /// Errors found while merging (values that do not parse, locked attributes, …).
    var errors: [ConfigurationError]
    /// Where each value and collection item was set, keyed `section/attribute`.
    var sources: [String: SourceLocation]
    /// The `<connectionStrings>` entries (that section only).
    var connectionStrings: [ConnectionStringSettings] = []
    /// The `<sessionState><providers>` entries (that section only).
    var providers: [ProviderSettings] = []
    /// A rough size, for the memo's byte bound.
    var estimatedBytes: Int

    /// Merges `blocks` (already checked against locks and definitions) in order.
    init(_ schema: SectionSchema, blocks: [SectionBlock], depths: [Int], work: inout Resolver.Work) {
        var state = SectionState(schema: schema)
        var errors: [ConfigurationError] = []
        for (block, depth) in zip(blocks, depths) {
            work.elementsMerged += block.elementCount
            state.apply(block.element, depth: depth, errors: &errors)
        }
        var sources: [String: SourceLocation] = [:]
        for (key, setting) in state.values {
            if let source = setting.source { sources["\(schema.name)/\(key)"] = source }
        }
        var itemCount = 0
        for (key, collection) in state.collections {
            for item in collection.items {
                itemCount += 1
                sources[[schema.name, key, item.name].filter { !$0.isEmpty }.joined(separator: "/")] = item.source
            }
        }
        self.state = state
        self.errors = errors
        self.sources = sources
        if schema.name == SectionSchema.connectionStrings.name {
            connectionStrings = (state.collections[""]?.items ?? []).map {
                ConnectionStringSettings(
                    name: $0.name, connectionString: $0.attributes["connectionString"] ?? "",
                    providerName: $0.attributes["providerName"] ?? "System.Data.SqlClient")
            }
        }
        if schema.name == SectionSchema.sessionState.name {
            providers = (state.collections["providers"]?.items ?? []).map { item in
                var parameters = item.attributes
                parameters["name"] = nil
                parameters["type"] = nil
                return ProviderSettings(name: item.name, type: item.attributes["type"] ?? "", parameters: parameters)
            }
        }
        estimatedBytes = 512 + sources.count * 96 + itemCount * 192
    }

    /// The value of the `<connectionStrings>` entry named `name` (ignoring case), if it has one.
    func connectionString(named name: String) -> String? {
        guard let item = state.collections[""]?.item(named: name),
              let value = item.attributes["connectionString"], !value.isEmpty
        else { return nil }
        return value
    }
}

extension ConfigFile {
    /// Tells apart every file read in this process, so that a memoised merge never outlives
    /// the version of a file it was made from.
    static let identities = Atomic<UInt64>(0)

    static func newIdentity() -> UInt64 {
        identities.wrappingAdd(1, ordering: .relaxed).newValue
    }
}
