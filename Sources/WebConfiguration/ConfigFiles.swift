import Foundation

/// The configuration files read so far, parsed once each, and what every consulted path looked
/// like, so that `ConfigurationStore.reloadIfChanged` can tell what changed.
///
/// Only paths that exist, or whose folder exists (a web.config that may appear), and the roots
/// of virtual directories are watched: a folder that does not exist cannot hold a web.config,
/// and a folder created later changes its parent's signature. So what is kept grows with the
/// tree on disk, not with the URLs asked for.
struct ConfigFiles {
    private(set) var parsed: [String: ConfigFile] = [:]
    /// Each watched path's signature when it was read; nil: absent.
    private(set) var watched: [String: FileSignature?] = [:]
    /// The bytes of the watched paths and of their entries, roughly.
    private(set) var watchedBytes = 0
    private(set) var counters = Counters()

    struct Counters: Sendable, Hashable {
        var filesParsed = 0
        var elementsParsed = 0
        var pathProbes = 0
    }

    init(counters: Counters = Counters()) {
        self.counters = counters
    }

    /// The signature of the folder at `path`, or nil if there is none (nothing, or not a
    /// folder). `watchIfAbsent` watches a missing path for its creation (the physical root of a
    /// virtual directory); so is a symbolic link whose target is missing, since its target can
    /// appear without its folder changing.
    mutating func directory(at path: String, watchIfAbsent: Bool) -> FileSignature? {
        if let known = watched[path] { return known?.type == .directory ? known : nil }
        counters.pathProbes += 1
        let signature = FileSignature(path: path)
        if signature != nil || watchIfAbsent || Self.isSymbolicLink(path) { watch(path, signature) }
        return signature?.type == .directory ? signature : nil
    }

    private static func isSymbolicLink(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK
    }

    /// The parsed web.config of `folder` (a folder that exists), or nil if it has none.
    mutating func webConfig(in folder: String) -> ConfigFile? {
        file(at: folder + "/web.config", kind: .web)
    }

    /// The parsed file at `path`, or nil if there is none. Its signature is watched either way.
    mutating func file(at path: String, kind: ConfigFileKind) -> ConfigFile? {
        if let file = parsed[path] { return file }
        if let known = watched[path], known == nil { return nil }
        counters.pathProbes += 1
        let signature = FileSignature(path: path)
        watch(path, signature)
        guard let signature else { return nil }
        let file: ConfigFile
        if let reason = signature.type.refusal {
            file = ConfigFile(path: path, kind: kind, unreadable: reason)
        } else if signature.size > XMLReader.maximumFileSize {
            file = ConfigFile(path: path, kind: kind, unreadable: "it is \(signature.size) bytes; the limit is \(XMLReader.maximumFileSize) bytes")
        } else {
            switch Self.read(path) {
            case .success(let bytes): file = ConfigFile(path: path, kind: kind, bytes: bytes)
            case .failure(let reason): file = ConfigFile(path: path, kind: kind, unreadable: reason.message)
            }
        }
        counters.filesParsed += 1
        counters.elementsParsed += file.elementCount
        parsed[path] = file
        return file
    }

    /// Forgets what was read of `path`, so it is read again when next needed.
    mutating func forget(_ path: String) {
        parsed[path] = nil
        if watched.removeValue(forKey: path) != nil { watchedBytes -= Self.entryBytes(path) }
    }

    private mutating func watch(_ path: String, _ signature: FileSignature?) {
        if watched.updateValue(signature, forKey: path) == nil { watchedBytes += Self.entryBytes(path) }
    }

    private static func entryBytes(_ path: String) -> Int {
        path.utf8.count + MemoryLayout<FileSignature?>.stride + 32
    }

    /// A file's bytes, read without following it into anything that is not a regular file (it is
    /// opened non-blocking and checked again after opening, so a FIFO swapped in cannot hang the
    /// reader).
    private static func read(_ path: String) -> Result<[UInt8], ValueError> {
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { return .failure(ValueError(message: String(cString: strerror(errno)))) }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return .failure(ValueError(message: String(cString: strerror(errno)))) }
        if let reason = FileSignature.FileType(mode: info.st_mode).refusal { return .failure(ValueError(message: reason)) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while bytes.count <= XMLReader.maximumFileSize {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(ValueError(message: String(cString: strerror(errno))))
            }
            if count == 0 { return .success(bytes) }
            bytes += chunk[..<count]
        }
        return .failure(ValueError(message: "it has grown past the limit of \(XMLReader.maximumFileSize) bytes"))
    }
}

/// What identifies a version of a file or folder: device, inode, type, size and change times.
struct FileSignature: Sendable, Hashable {
    enum FileType: Sendable, Hashable {
        case regular, directory, fifo, characterDevice, blockDevice, socket, other

        init(mode: mode_t) {
            switch mode & S_IFMT {
            case S_IFREG: self = .regular
            case S_IFDIR: self = .directory
            case S_IFIFO: self = .fifo
            case S_IFCHR: self = .characterDevice
            case S_IFBLK: self = .blockDevice
            case S_IFSOCK: self = .socket
            default: self = .other
            }
        }

        /// Why a configuration file of this type is not read; nil for a regular file.
        var refusal: String? {
            switch self {
            case .regular: nil
            case .directory: "it is a folder"
            case .fifo: "it is not a regular file but a FIFO (named pipe)"
            case .characterDevice: "it is not a regular file but a character device"
            case .blockDevice: "it is not a regular file but a block device"
            case .socket: "it is not a regular file but a socket"
            case .other: "it is not a regular file"
            }
        }
    }

    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modified: timespec
    var changed: timespec
    var type: FileType

    /// nil when nothing is at `path`. Symbolic links are followed, as when the file is read.
    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modified = info.st_mtim
        changed = info.st_ctim
        type = FileType(mode: info.st_mode)
    }

    static func == (lhs: FileSignature, rhs: FileSignature) -> Bool {
        lhs.device == rhs.device && lhs.inode == rhs.inode && lhs.size == rhs.size && lhs.type == rhs.type
            && lhs.modified.tv_sec == rhs.modified.tv_sec && lhs.modified.tv_nsec == rhs.modified.tv_nsec
            && lhs.changed.tv_sec == rhs.changed.tv_sec && lhs.changed.tv_nsec == rhs.changed.tv_nsec
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(inode)
        hasher.combine(size)
    }
}
