/// What a virtual path of a site is the root of.
enum SiteAnchor: Sendable {
    /// `site.applications[index]`.
    case application(Int)
    /// `site.applications[application].virtualDirectories[directory]` (not an application's
    /// root directory, which comes with the application).
    case virtualDirectory(application: Int, directory: Int)

    /// The applications and virtual directories of `site` by virtual path.
    static func trie(of site: Site) -> PathTrie<SiteAnchor> {
        var trie = PathTrie<SiteAnchor>()
        for (index, application) in site.applications.enumerated() {
            trie.insert(.application(index), at: application.segments)
            for (directory, virtualDirectory) in application.virtualDirectories.enumerated() where !virtualDirectory.segments.isEmpty {
                trie.insert(.virtualDirectory(application: index, directory: directory), at: application.segments + virtualDirectory.segments)
            }
        }
        return trie
    }
}

/// A configuration file on a URL's path with its place in the hierarchy.
struct ConfigLevel: Sendable {
    var file: ConfigFile
    /// 0–2 for machine.config, the root web.config and applicationHost.config; 3 + the number of
    /// URL segments for a site's web.config.
    var depth: Int
    /// The site name and URL segments of the file's level; empty above the sites.
    var namePath: [String]
}

/// The part of a URL that can matter to its configuration, found by walking down from the
/// site's root only as far as something can be configured: a physical folder that exists (it
/// may hold a web.config), an application or virtual directory, or a `<location>` target of a
/// file already on the path. A URL deeper than that has the configuration of its deepest such
/// prefix, so a hostile URL thousands of segments long costs what its existing prefix costs.
struct PathWalk {
    /// The segments of the significant prefix.
    private(set) var segments: [String] = []
    /// The files on the prefix, machine level first.
    private(set) var levels: [ConfigLevel]
    /// `3 + depth` of every application root on the prefix.
    private(set) var applicationDepths: Set<Int> = []
    /// The application that serves the URL.
    private(set) var application: Application

    /// The significant prefix as a path: `/` or `/a/b`.
    var prefixPath: String { "/" + segments.joined(separator: "/") }

    /// A position in the `<location>` trie of one file on the path.
    private struct Cursor {
        var trie: PathTrie<Int>
        var node: Int
    }

    init(machine: MachineLevel, site: Site, anchors: PathTrie<SiteAnchor>, path: String, files: inout ConfigFiles) {
        levels = machine.files.enumerated().map { ConfigLevel(file: $1, depth: $0, namePath: []) }
        // Machine-level <location> paths start with the site's name.
        var cursors = machine.files.compactMap { file in
            file.blocksByLocation.child(of: PathTrie<Int>.root, site.name).map { Cursor(trie: file.blocksByLocation, node: $0) }
        }
        var anchorNode: Int? = PathTrie<SiteAnchor>.root
        var applicationIndex = site.applications.firstIndex { $0.segments.isEmpty }!
        application = site.applications[applicationIndex]
        // The physical folder of the prefix; nil once it cannot exist.
        var folder: String?
        var remaining = PathSegments(path)
        var visited: Set<FolderIdentity> = []
        var depth = 0
        while true {
            var isAnchor = false
            if let node = anchorNode {
                for case .application(let index) in anchors.values(at: node) {
                    applicationIndex = index
                    application = site.applications[index]
                    applicationDepths.insert(3 + depth)
                    folder = application.physicalPath
                    isAnchor = true
                }
                for case .virtualDirectory(let owner, let directory) in anchors.values(at: node) where owner == applicationIndex {
                    folder = application.virtualDirectories[directory].physicalPath
                    isAnchor = true
                }
            }
            // A folder met again on the path through a symbolic link (to an ancestor) counts as
            // missing, so a link cycle cannot make ever new paths that exist. Applications and
            // virtual directories may map to a folder already on the path, as in IIS.
            let signature = folder.flatMap { files.directory(at: $0, watchIfAbsent: isAnchor) }
            let exists = signature.map { visited.insert(FolderIdentity($0)).inserted || isAnchor } ?? false
            if exists, let folder, let file = files.webConfig(in: folder) {
                levels.append(ConfigLevel(file: file, depth: 3 + depth, namePath: [site.name] + segments))
                cursors.append(Cursor(trie: file.blocksByLocation, node: PathTrie<Int>.root))
            }
            if !exists { folder = nil }
            guard let next = remaining.next() else { break }
            anchorNode = anchorNode.flatMap { anchors.child(of: $0, next) }
            cursors = cursors.compactMap { cursor in cursor.trie.child(of: cursor.node, next).map { Cursor(trie: cursor.trie, node: $0) } }
            let nextFolder = folder.map { $0 + "/" + next }
            // The next prefix matters if its folder may exist or something is configured at or
            // below it; otherwise nothing deeper can change the configuration.
            let mayExist = nextFolder.flatMap { files.directory(at: $0, watchIfAbsent: false) }
                .map { !visited.contains(FolderIdentity($0)) } ?? false
            guard mayExist || anchorNode != nil || !cursors.isEmpty else { break }
            folder = nextFolder
            segments.append(String(next))
            depth += 1
        }
    }
}

/// A folder on disk, whatever path reached it.
private struct FolderIdentity: Hashable {
    var device: UInt64
    var inode: UInt64

    init(_ signature: FileSignature) {
        device = signature.device
        inode = signature.inode
    }
}

/// The segments of a URL path, split as they are asked for: the walk usually stops long before
/// the end of a deep URL, and splitting all of it would cost in proportion to its length.
struct PathSegments: IteratorProtocol {
    private let path: String
    private var position: String.Index

    init(_ path: String) {
        self.path = path
        position = path.utf8.startIndex
    }

    mutating func next() -> Substring? {
        let utf8 = path.utf8
        let slash = UInt8(ascii: "/")
        while position < utf8.endIndex, utf8[position] == slash { position = utf8.index(after: position) }
        guard position < utf8.endIndex else { return nil }
        let start = position
        while position < utf8.endIndex, utf8[position] != slash { position = utf8.index(after: position) }
        return path[start..<position]
    }
}
