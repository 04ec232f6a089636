import Foundation
public import Logging
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

/// The configuration hierarchy of one `--config-dir`, resolved per URL and memoised: after the
/// first request for a URL, its settings cost one dictionary lookup, with no file I/O. Files
/// are re-read when they change (`reloadIfChanged`, run by `watchForChanges`) or on `reload()`.
public final class ConfigurationStore: Sendable {
    public typealias Lookup = Result<EffectiveConfiguration, ConfigurationErrors>

    /// The folder of machine.config, the root web.config and applicationHost.config.
    public let directory: String
    private let logger: Logger
    private let state = Mutex(State())
    /// Checks made on every resolved configuration beyond the schema's (e.g. that the build
    /// provides the session-state mode); their errors make the URL's configuration invalid.
    private let validate: Validator?

    public typealias Validator = @Sendable (EffectiveConfiguration) -> [ConfigurationError]

    /// Memoised URLs kept before the memo is emptied (it refills as URLs are asked for again).
    static let resultLimit = 10_000
    /// Files watched for changes before everything is forgotten and re-read on demand.
    static let watchedFileLimit = 100_000

    private struct ResultKey: Hashable {
        var site: SiteSelector
        var path: String
    }

    private struct State {
        var generation: UInt64 = 0
        var machine: MachineLevel?
        /// Parsed web.config files by path.
        var files: [String: ConfigFile] = [:]
        /// What each consulted path looked like when read; nil: absent.
        var signatures: [String: FileSignature?] = [:]
        var results: [ResultKey: Lookup] = [:]
    }

    public init(directory: String, logger: Logger = Logger(label: "sessionhost.config"), validate: Validator? = nil) {
        XMLReader.initialize()
        self.directory = directory
        self.logger = logger
        self.validate = validate
    }

    /// The effective settings of `path` (a normalised URL path such as `/app/dir/page`) in `site`.
    public func configuration(site: SiteSelector = .default, path: String) -> Lookup {
        let key = ResultKey(site: site, path: path)
        let (cached, generation, machine, files) = state.withLock { state in
            if let result = state.results[key] { return (Optional(result), state.generation, MachineLevel?.none, [String: ConfigFile]()) }
            return (nil, state.generation, state.machine, state.files)
        }
        if let cached { return cached }

        var reader = FileReader(known: files)
        let machineLevel = machine ?? Self.loadMachineLevel(directory: directory, reader: &reader)
        let result = checked(Self.resolve(machineLevel, site: site, path: path, reader: &reader))
        if case .failure(let errors) = result {
            logger.error("invalid configuration", metadata: [
                "path": "\(path)", "site": "\(site)", "errors": "\(errors.errors.map(\.description).joined(separator: "; "))",
            ])
        }
        state.withLock { state in
            // A reload while this was computed makes the result stale: it is returned, not kept.
            guard state.generation == generation else { return }
            if state.results.count >= Self.resultLimit { state.results.removeAll(keepingCapacity: true) }
            if state.signatures.count >= Self.watchedFileLimit {
                state = State(generation: state.generation + 1)
                return
            }
            state.machine = machineLevel
            state.files.merge(reader.read) { _, new in new }
            state.signatures.merge(reader.signatures) { _, new in new }
            state.results[key] = result
        }
        return result
    }

    /// Forgets everything read; files are read again as URLs are asked for (SIGHUP).
    public func reload() {
        state.withLock { state in state = State(generation: state.generation + 1) }
        logger.info("configuration reloaded", metadata: ["config-dir": "\(directory)"])
    }

    /// Re-reads what changed since it was read (a file edited, added or removed); returns the
    /// paths that changed.
    @discardableResult
    public func reloadIfChanged() -> [String] {
        let signatures = state.withLock { $0.signatures }
        let changed = signatures.compactMap { path, signature in FileSignature(path: path) == signature ? nil : path }.sorted()
        guard !changed.isEmpty else { return [] }
        let machinePaths = Set(Self.machineFileNames.map { directory + "/" + $0.name })
        state.withLock { state in
            state.generation += 1
            state.results.removeAll()
            for path in changed {
                state.files[path] = nil
                state.signatures[path] = nil
                if machinePaths.contains(path) { state.machine = nil }
            }
        }
        logger.info("configuration changed; re-reading", metadata: ["files": "\(changed.joined(separator: ", "))"])
        return changed
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
        var reader = FileReader(known: [:])
        let machine = Self.loadMachineLevel(directory: directory, reader: &reader)
        return machine.errors.isEmpty ? .success(machine.sites) : .failure(ConfigurationErrors(machine.errors))
    }

    /// Validates every configuration file of every site: the machine-level files, each
    /// web.config under each virtual directory, and every `<location>` target. Reads from disk,
    /// not from the memo.
    public func check() -> [ConfigurationError] {
        var reader = FileReader(known: [:])
        let machine = Self.loadMachineLevel(directory: directory, reader: &reader)
        guard machine.errors.isEmpty else { return machine.errors }
        var errors: [ConfigurationError] = []
        var seen: Set<ConfigurationError> = []
        func add(_ result: Lookup) {
            guard case .failure(let failure) = result else { return }
            for error in failure.errors where seen.insert(error).inserted { errors.append(error) }
        }
        for site in machine.sites {
            var paths: Set<[String]> = [[]]
            for application in site.applications {
                paths.insert(application.segments)
                for directory in application.virtualDirectories {
                    let base = application.segments + directory.segments
                    paths.insert(base)
                    for relative in Self.foldersWithWebConfig(under: directory.physicalPath) {
                        paths.insert(base + relative)
                    }
                }
            }
            // Location targets, so sections that apply only there are checked too.
            for file in machine.files {
                for block in file.blocks {
                    guard let target = block.locationPath, target.first.map({ $0.caseInsensitiveCompare(site.name) == .orderedSame }) == true else { continue }
                    paths.insert(Array(target.dropFirst()))
                }
            }
            var pending = paths.sorted { $0.count < $1.count }
            var index = 0
            while index < pending.count {
                let segments = pending[index]
                index += 1
                for count in 0...segments.count {
                    guard let folder = site.physicalPath(for: segments[..<count]),
                          let file = reader.webConfig(in: folder) else { continue }
                    for block in file.blocks {
                        guard let location = block.locationPath, !location.isEmpty else { continue }
                        let target = Array(segments[..<count]) + location
                        if !paths.contains(target) {
                            paths.insert(target)
                            pending.append(target)
                        }
                    }
                }
                add(checked(Resolver(machine: machine, site: site, segments: segments)
                    .resolve(path: "/" + segments.joined(separator: "/")) { reader.webConfig(in: $0) }))
            }
        }
        return errors.sorted { ($0.location.file, $0.location.line) < ($1.location.file, $1.location.line) }
    }

    private func checked(_ result: Lookup) -> Lookup {
        guard let validate, case .success(let configuration) = result else { return result }
        let errors = validate(configuration)
        return errors.isEmpty ? result : .failure(ConfigurationErrors(errors))
    }

    // MARK: Reading

    static let machineFileNames: [(name: String, kind: ConfigFileKind, builtIn: String)] = [
        ("machine.config", .machine, BuiltInConfiguration.machineConfig),
        ("web.config", .rootWeb, BuiltInConfiguration.rootWebConfig),
        ("applicationHost.config", .applicationHost, BuiltInConfiguration.applicationHostConfig),
    ]

    private static func loadMachineLevel(directory: String, reader: inout FileReader) -> MachineLevel {
        let files = machineFileNames.map { name, kind, builtIn in
            let path = directory + "/" + name
            return reader.file(at: path, kind: kind) ?? ConfigFile(path: path + " (built-in)", kind: kind, bytes: Array(builtIn.utf8))
        }
        return MachineLevel(machine: files[0], rootWeb: files[1], applicationHost: files[2])
    }

    private static func resolve(_ machine: MachineLevel, site selector: SiteSelector, path: String, reader: inout FileReader) -> Lookup {
        guard machine.errors.isEmpty else { return .failure(ConfigurationErrors(machine.errors)) }
        let site: Site? = switch selector {
        case .id(let id): machine.sites.first { $0.id == id }
        case .name(let name): machine.sites.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }
        }
        guard let site else {
            let at = SourceLocation(file: machine.applicationHost.path, line: machine.applicationHost.sitesElement?.line ?? 1)
            return .failure(ConfigurationErrors([ConfigurationError("applicationHost.config has no site with \(selector).", at: at)]))
        }
        let segments = path.split(separator: "/").map(String.init)
        return Resolver(machine: machine, site: site, segments: segments).resolve(path: path) { reader.webConfig(in: $0) }
    }

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

/// Reads configuration files, keeping what it read and each file's signature.
struct FileReader {
    private let known: [String: ConfigFile]
    private(set) var read: [String: ConfigFile] = [:]
    private(set) var signatures: [String: FileSignature?] = [:]

    init(known: [String: ConfigFile]) {
        self.known = known
    }

    mutating func webConfig(in folder: String) -> ConfigFile? {
        file(at: folder + "/web.config", kind: .web)
    }

    /// The parsed file at `path`, or nil if there is none.
    mutating func file(at path: String, kind: ConfigFileKind) -> ConfigFile? {
        if let file = known[path] ?? read[path] { return file }
        if let signature = signatures[path], signature == nil { return nil }
        let signature = FileSignature(path: path)
        signatures[path] = signature
        guard let signature else { return nil }
        let file: ConfigFile
        if signature.isDirectory {
            file = ConfigFile(path: path, kind: kind, unreadable: "it is a folder")
        } else if signature.size > XMLReader.maximumFileSize {
            file = ConfigFile(path: path, kind: kind, unreadable: "it is \(signature.size) bytes; the limit is \(XMLReader.maximumFileSize) bytes")
        } else if let data = FileManager.default.contents(atPath: path) {
            file = ConfigFile(path: path, kind: kind, bytes: Array(data))
        } else {
            file = ConfigFile(path: path, kind: kind, unreadable: String(cString: strerror(errno)))
        }
        read[path] = file
        return file
    }
}

/// What identifies a version of a file: device, inode, size and change times.
struct FileSignature: Sendable, Hashable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modified: timespec
    var changed: timespec
    var isDirectory: Bool

    /// nil when nothing is at `path`.
    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modified = info.st_mtim
        changed = info.st_ctim
        isDirectory = (info.st_mode & S_IFMT) == S_IFDIR
    }

    static func == (lhs: FileSignature, rhs: FileSignature) -> Bool {
        lhs.device == rhs.device && lhs.inode == rhs.inode && lhs.size == rhs.size && lhs.isDirectory == rhs.isDirectory
            && lhs.modified.tv_sec == rhs.modified.tv_sec && lhs.modified.tv_nsec == rhs.modified.tv_nsec
            && lhs.changed.tv_sec == rhs.changed.tv_sec && lhs.changed.tv_nsec == rhs.changed.tv_nsec
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(inode)
        hasher.combine(size)
    }
}
