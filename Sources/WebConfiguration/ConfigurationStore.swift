import Foundation
public import Logging
import Locking
import Synchronization

/// Which site of applicationHost.config a URL belongs to.
public enum SiteSelector: Sendable, Hashable, CustomStringConvertible {
    case id(Int)
    /// Compared without regard to case.
    case name(String)

    /// The site with id 1, as `appcmd` and IIS Manager default to.
    public static let `default` = SiteSelector.id(1)

    public var description: String {
        switch self {
        case .id(let id): "id \(id)"
        case .name(let name): "'\(name)'"
        }
    }
}

/// The configuration hierarchy of one `--config-dir`, resolved per URL and memoised.
///
/// A lookup walks down the URL only as far as something can be configured (folders that exist,
/// applications, virtual directories, `<location>` targets: see `PathWalk`), resolves that
/// prefix once, and memoises the result per prefix and per URL in memos bounded in bytes.
/// Each thread also keeps its own memo of recent URLs, checked against the store's generation,
/// so a repeated lookup takes no lock that all threads share. Misses are resolved one at a time
/// under the store's lock, which also means that threads asking for the same new URL at once
/// parse each file once. Files are re-read when they change (`reloadIfChanged`, run by
/// `watchForChanges`) or on `reload()`.
public final class ConfigurationStore: Sendable {
    public typealias Lookup = Result<EffectiveConfiguration, ConfigurationErrors>

    /// The folder of machine.config, the root web.config and applicationHost.config.
    public let directory: String
    private let logger: Logger
    private let state = Locked(State())
    /// Bumped, under the lock, whenever anything memoised may have become stale; threads'
    /// memos compare against it without the lock.
    private let generation = Atomic<UInt64>(0)
    /// Names this store's memos in the threads' caches.
    private let identity: UInt64
    private static let identities = Atomic<UInt64>(0)
    /// Checks made on every resolved configuration beyond the schema's (e.g. that the build
    /// provides the session-state mode); their errors make the URL's configuration invalid.
    private let validate: Validator?

    public typealias Validator = @Sendable (EffectiveConfiguration) -> [ConfigurationError]

    /// Bytes of memoised URLs (the key and the path kept in the result, plus a fixed overhead)
    /// shared by all threads; each thread keeps at most `ThreadLookupCaches.byteLimit` more.
    static let urlMemoByteLimit = 4 << 20
    /// Bytes of memoised prefixes (folders and configured virtual paths), estimated from their
    /// settings. Their number is bounded by the tree on disk and the files; this is a backstop.
    static let directoryMemoByteLimit = 16 << 20
    /// Bytes of merged sections (see `MergedSection`), estimated from their values and items.
    static let sectionMemoByteLimit = 16 << 20
    /// Bytes of watched paths before everything is forgotten and re-read on demand. Only paths
    /// that exist or whose folder exists are watched, so only a huge tree on disk reaches it.
    static let watchedByteLimit = 16 << 20
    /// Configuration errors kept for the status page.
    static let errorsKept = 100

    private struct State {
        /// Mirrors `ConfigurationStore.generation`.
        var generation: UInt64 = 0
        var machine: MachineLevel?
        var files = ConfigFiles()
        var work = Resolver.Work()
        /// Lookups that missed the calling thread's memo and took the lock.
        var sharedLookups = 0
        var directories = BoundedCache<LookupKey, Lookup>(byteLimit: ConfigurationStore.directoryMemoByteLimit)
        var sections = BoundedCache<SectionKey, MergedSection>(byteLimit: ConfigurationStore.sectionMemoByteLimit)
        var urls = BoundedCache<LookupKey, Lookup>(byteLimit: ConfigurationStore.urlMemoByteLimit)
        /// The errors lookups found since the files were last read (the status page), at most
        /// `errorsKept`.
        var errorsSeen: [ConfigurationError] = []

        mutating func noteErrors(_ errors: [ConfigurationError]) {
            for error in errors where errorsSeen.count < ConfigurationStore.errorsKept && !errorsSeen.contains(error) {
                errorsSeen.append(error)
            }
        }

        /// Forgets everything read; the counters go on.
        mutating func reset() {
            self = State(generation: generation + 1, files: ConfigFiles(counters: files.counters), work: work, sharedLookups: sharedLookups)
        }
    }

    public init(directory: String, logger: Logger = Logger(label: "sessionhost.config"), validate: Validator? = nil) {
        XMLReader.initialize()
        self.directory = directory
        self.logger = logger
        self.validate = validate
        identity = Self.identities.wrappingAdd(1, ordering: .relaxed).newValue
    }

    /// The effective settings of `path` (a normalised URL path such as `/app/dir/page`) in `site`.
    public func configuration(site: SiteSelector = .default, path: String) -> Lookup {
        let key = LookupKey(site: site, path: path)
        let caches = ThreadLookupCaches.current
        if let hit = caches.value(for: key, store: identity, generation: generation.load(ordering: .acquiring)) { return hit }
        let resolved = state.withLock { state in
            state.sharedLookups += 1
            return Resolved(lookup: lookup(key, &state), generation: state.generation)
        }
        caches.insert(resolved.lookup, for: key, store: identity, generation: resolved.generation, bytes: Self.urlEntryBytes(key))
        return resolved.lookup
    }

    private struct Resolved {
        var lookup: Lookup
        var generation: UInt64
    }

    /// Forgets everything read; files are read again as URLs are asked for (SIGHUP).
    public func reload() {
        state.withLock { state in
            state.reset()
            generation.store(state.generation, ordering: .releasing)
        }
        logger.info("configuration reloaded", metadata: ["config-dir": "\(directory)"])
    }

    /// Re-reads what changed since it was read (a file edited, added or removed, a folder
    /// created or removed); returns the configuration files known to have changed (a web.config
    /// in a newly created subfolder is found when a URL below it is next resolved, and is not
    /// listed).
    @discardableResult
    public func reloadIfChanged() -> [String] {
        let watched = state.withLock { $0.files.watched }
        let changed = watched.compactMap { path, signature in FileSignature(path: path) == signature ? nil : path }.sorted()
        guard !changed.isEmpty else { return [] }
        let machinePaths = Set(Self.machineFileNames.map { directory + "/" + $0.name })
        // Changed files, and the web.config of a folder that appeared with one (the root of a
        // virtual directory). A folder that gained subfolders is walked again on demand.
        let files = changed.compactMap { path -> String? in
            if path.hasSuffix("/web.config") || machinePaths.contains(path) { return path }
            let inside = path + "/web.config"
            return watched[inside] == nil && FileSignature(path: inside) != nil ? inside : nil
        }
        state.withLock { state in
            state.generation += 1
            state.urls.removeAll()
            state.directories.removeAll()
            state.sections.removeAll()
            for path in changed {
                state.files.forget(path)
                if machinePaths.contains(path) { state.machine = nil }
            }
            generation.store(state.generation, ordering: .releasing)
        }
        if files.isEmpty {
            // A folder was created or removed next to the ones read: settings are re-resolved
            // from the files already parsed.
            logger.debug("configuration folders changed; re-resolving", metadata: ["folders": "\(changed.joined(separator: ", "))"])
        } else {
            logger.info("configuration changed; re-reading", metadata: ["files": "\(files.joined(separator: ", "))"])
        }
        return files
    }

    /// Checks for changed files every `interval` until the task is cancelled.
    public func watchForChanges(every interval: Duration = .seconds(2)) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            reloadIfChanged()
        }
    }

    /// The sites of applicationHost.config, or its errors.
    public func sites() -> Result<[Site], ConfigurationErrors> {
        let machine = state.withLock { machineLevel(&$0) }
        return machine.errors.isEmpty ? .success(machine.sites) : .failure(ConfigurationErrors(machine.errors))
    }

    /// What the store holds and the work it has done, for tests and diagnostics.
    public var statistics: ConfigurationStoreStatistics {
        state.withLock { state in
            ConfigurationStoreStatistics(
                filesParsed: state.files.counters.filesParsed,
                elementsParsed: state.files.counters.elementsParsed,
                pathProbes: state.files.counters.pathProbes,
                sharedLookups: state.sharedLookups,
                resolutions: state.work.resolutions,
                blocksConsidered: state.work.blocksConsidered,
                elementsMerged: state.work.elementsMerged,
                memoisedURLs: state.urls.count,
                memoisedURLBytes: state.urls.bytes,
                memoisedDirectories: state.directories.count,
                memoisedDirectoryBytes: state.directories.bytes,
                memoisedSections: state.sections.count,
                memoisedSectionBytes: state.sections.bytes,
                watchedPaths: state.files.watched.count,
                watchedBytes: state.files.watchedBytes,
                generation: state.generation,
                errors: state.errorsSeen)
        }
    }

    /// Validates every configuration file of every site: the machine-level files, each
    /// web.config under each virtual directory, and every `<location>` target. Files are parsed
    /// once, and what is resolved is memoised as if the paths had been asked for, so the
    /// worker can run this while it serves. The lock is taken per path, never for the whole
    /// check; `shouldContinue` is asked before each path (it may pause, or stop the check).
    public func check(shouldContinue: () -> Bool = { true }) -> [ConfigurationError] {
        let machine = state.withLock { machineLevel(&$0) }
        guard machine.errors.isEmpty else { return machine.errors }
        var errors: [ConfigurationError] = []
        var seen: Set<ConfigurationError> = []
        sites: for site in machine.sites {
            var paths = CheckPaths()
            paths.add([])
            for application in site.applications {
                paths.add(application.segments)
                for directory in application.virtualDirectories {
                    let base = application.segments + directory.segments
                    paths.add(base)
                    for relative in Self.foldersWithWebConfig(under: directory.physicalPath) { paths.add(base + relative) }
                }
            }
            // Machine-level location targets, so sections that apply only there are checked too.
            for file in machine.files {
                for block in file.blocks {
                    guard let target = block.locationPath, target.first.map({ $0.caseInsensitiveCompare(site.name) == .orderedSame }) == true else { continue }
                    paths.add(Array(target.dropFirst()))
                }
            }
            while let segments = paths.next() {
                guard shouldContinue() else { break sites }
                let key = LookupKey(site: .id(site.id), path: "/" + segments.joined(separator: "/"))
                let checked = state.withLock { state in check(key, &state) }
                if case .failure(let failure) = checked.lookup {
                    for error in failure.errors where seen.insert(error).inserted { errors.append(error) }
                }
                // Location targets of the files on the path, each file at each level once.
                for level in checked.levels where level.depth >= 3 && paths.expand(level) {
                    let base = Array(level.namePath.dropFirst())
                    for block in level.file.blocks {
                        if let location = block.locationPath, !location.isEmpty { paths.add(base + location) }
                    }
                }
            }
        }
        return errors.sorted { ($0.location.file, $0.location.line) < ($1.location.file, $1.location.line) }
    }

    /// The paths a check visits, each once (compared ignoring case, as IIS compares them).
    private struct CheckPaths {
        private var pending: [[String]] = []
        private var position = 0
        private var known: Set<String> = []
        private var expanded: Set<String> = []

        mutating func add(_ segments: [String]) {
            if known.insert(segments.joined(separator: "/").lowercased()).inserted { pending.append(segments) }
        }

        mutating func next() -> [String]? {
            guard position < pending.count else { return nil }
            position += 1
            return pending[position - 1]
        }

        /// Whether the `<location>` targets of this file at this level are still to be added.
        mutating func expand(_ level: ConfigLevel) -> Bool {
            expanded.insert(level.file.path + "|" + level.namePath.joined(separator: "/").lowercased()).inserted
        }
    }

    private struct Checked {
        var lookup: Lookup
        var levels: [ConfigLevel]
    }

    // MARK: Resolving, under the lock

    /// The configuration of `key`, from the memos or resolved; the caller holds the lock.
    private func lookup(_ key: LookupKey, _ state: inout State) -> Lookup {
        if let memoised = state.urls.value(for: key) { return memoised }
        let result = resolve(key, &state).lookup
        state.urls.insert(result, for: key, bytes: Self.urlEntryBytes(key))
        return result
    }

    private func check(_ key: LookupKey, _ state: inout State) -> Checked {
        let checked = resolve(key, &state)
        state.urls.insert(checked.lookup, for: key, bytes: Self.urlEntryBytes(key))
        return checked
    }

    private func resolve(_ key: LookupKey, _ state: inout State) -> Checked {
        // Before the walk, so that what it reads is watched in the state its result is kept in.
        if state.files.watchedBytes > Self.watchedByteLimit {
            logger.warning("more configuration paths watched than \(Self.watchedByteLimit) bytes hold; forgetting all and re-reading on demand")
            state.reset()
            generation.store(state.generation, ordering: .releasing)
        }
        let machine = machineLevel(&state)
        guard machine.errors.isEmpty else {
            state.noteErrors(machine.errors)
            return Checked(lookup: .failure(ConfigurationErrors(machine.errors)), levels: [])
        }
        guard let site = machine.site(key.site) else {
            let at = SourceLocation(file: machine.applicationHost.path, line: machine.applicationHost.sitesElement?.line ?? 1)
            let error = ConfigurationError("applicationHost.config has no site with \(key.site).", at: at)
            state.noteErrors([error])
            return Checked(lookup: .failure(ConfigurationErrors([error])), levels: [])
        }
        let walk = PathWalk(machine: machine, site: site, anchors: machine.anchors[site.id]!, path: key.path, files: &state.files)
        let prefix = LookupKey(site: key.site, path: walk.prefixPath)
        let base: Lookup
        if let memoised = state.directories.value(for: prefix) {
            base = memoised
        } else {
            base = checked(Resolver(machine: machine, site: site, walk: walk).resolve(path: prefix.path, work: &state.work, sections: &state.sections))
            if case .failure(let errors) = base {
                state.noteErrors(errors.errors)
                logger.error("invalid configuration", metadata: [
                    "path": "\(prefix.path)", "site": "\(key.site)", "errors": "\(errors.errors.map(\.description).joined(separator: "; "))",
                ])
            }
            state.directories.insert(base, for: prefix, bytes: Self.estimatedBytes(of: base, key: prefix))
        }
        return Checked(lookup: base.map { $0.at(key.path) }, levels: walk.levels)
    }

    private func machineLevel(_ state: inout State) -> MachineLevel {
        if let machine = state.machine { return machine }
        let files = Self.machineFileNames.map { name, kind, builtIn in
            let path = directory + "/" + name
            return state.files.file(at: path, kind: kind) ?? ConfigFile(path: path + " (built-in)", kind: kind, bytes: Array(builtIn.utf8))
        }
        let machine = MachineLevel(machine: files[0], rootWeb: files[1], applicationHost: files[2])
        state.machine = machine
        return machine
    }

    private static func urlEntryBytes(_ key: LookupKey) -> Int {
        // The key's path and the result's copy of it, and the entry's own size.
        2 * key.path.utf8.count + 160
    }

    /// A rough size of a memoised prefix's settings: its own part; the merged sections it shares
    /// with other prefixes (large collections among them) are counted in the section memo.
    private static func estimatedBytes(of lookup: Lookup, key: LookupKey) -> Int {
        var bytes = 2048 + key.path.utf8.count
        if case .failure(let errors) = lookup {
            for error in errors.errors { bytes += 64 + error.message.utf8.count + error.location.file.utf8.count }
        }
        return bytes
    }

    private func checked(_ result: Lookup) -> Lookup {
        guard let validate, case .success(let configuration) = result else { return result }
        let errors = validate(configuration)
        return errors.isEmpty ? result : .failure(ConfigurationErrors(errors))
    }

    static let machineFileNames: [(name: String, kind: ConfigFileKind, builtIn: String)] = [
        ("machine.config", .machine, BuiltInConfiguration.machineConfig),
        ("web.config", .rootWeb, BuiltInConfiguration.rootWebConfig),
        ("applicationHost.config", .applicationHost, BuiltInConfiguration.applicationHostConfig),
    ]

    /// Folders below `root` (relative segments) that hold a web.config; symbolic links are not
    /// followed, so a link cycle cannot loop.
    private static func foldersWithWebConfig(under root: String) -> [[String]] {
        guard let walker = FileManager.default.enumerator(atPath: root) else { return [] }
        var result: [[String]] = []
        while let relative = walker.nextObject() as? String {
            if (relative as NSString).lastPathComponent == "web.config" {
                let folder = (relative as NSString).deletingLastPathComponent
                if !folder.isEmpty { result.append(folder.split(separator: "/").map(String.init)) }
            }
        }
        return result
    }
}

/// What a `ConfigurationStore` holds and the work it has done: the memos' sizes against their
/// byte bounds, and counters of parsing and merging that grow linearly with the files read.
public struct ConfigurationStoreStatistics: Sendable, Hashable {
    /// Configuration files parsed (each file once per change).
    public var filesParsed: Int
    /// XML elements of the files parsed.
    public var elementsParsed: Int
    /// Paths looked at on disk (`stat`) while resolving.
    public var pathProbes: Int
    /// Lookups that missed the calling thread's own memo and took the store's lock; a repeated
    /// lookup on the same thread does not count here.
    public var sharedLookups: Int
    /// Prefixes resolved (a folder, application or `<location>` target, not a URL).
    public var resolutions: Int
    /// Section blocks considered while resolving.
    public var blocksConsidered: Int
    /// Elements of sections merged while resolving.
    public var elementsMerged: Int
    public var memoisedURLs: Int
    public var memoisedURLBytes: Int
    public var memoisedDirectories: Int
    public var memoisedDirectoryBytes: Int
    /// Sections merged from the same blocks for many prefixes are merged once (`MergedSection`).
    public var memoisedSections: Int
    public var memoisedSectionBytes: Int
    public var watchedPaths: Int
    public var watchedBytes: Int
    /// Bumped whenever the memos are emptied (a reload or a change on disk).
    public var generation: UInt64
    /// The configuration errors requests ran into since the files were last read (at most 100):
    /// what the 500.19 pages showed.
    public var errors: [ConfigurationError] = []

    /// The bounds of `memoisedURLBytes`, `memoisedDirectoryBytes` and `watchedBytes`.
    public static let memoisedURLByteLimit = ConfigurationStore.urlMemoByteLimit
    public static let memoisedDirectoryByteLimit = ConfigurationStore.directoryMemoByteLimit
    public static let memoisedSectionByteLimit = ConfigurationStore.sectionMemoByteLimit
    public static let watchedByteLimit = ConfigurationStore.watchedByteLimit
    /// What each thread keeps besides, per store.
    public static let perThreadURLByteLimit = ThreadLookupCaches.byteLimit
}

extension EffectiveConfiguration {
    /// These settings for another URL of the same prefix.
    func at(_ path: String) -> EffectiveConfiguration {
        var copy = self
        copy.path = path
        return copy
    }
}
