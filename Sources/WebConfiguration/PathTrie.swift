/// Virtual paths (segment lists) in a trie, compared without regard to case as IIS compares
/// URLs, each node with the values stored at its path.
///
/// The resolver walks a URL down such tries (the `<location>` paths of a file, the applications
/// and virtual directories of a site), so the work for one URL is proportional to its depth in
/// the configured tree, not to the number of `<location>` elements or applications, and a URL
/// deeper than anything configured stops costing anything at the last configured segment.
struct PathTrie<Value: Sendable>: Sendable {
    /// The root: the empty path.
    static var root: Int { 0 }

    private struct Node: Sendable {
        var children: [String: Int] = [:]
        var values: [Value] = []
    }

    private var nodes = [Node()]

    /// Adds `value` at `path`, in insertion order after the values already there.
    mutating func insert(_ value: Value, at path: some Sequence<String>) {
        var node = Self.root
        for segment in path {
            let key = Self.key(segment)
            if let child = nodes[node].children[key] {
                node = child
            } else {
                nodes.append(Node())
                nodes[node].children[key] = nodes.count - 1
                node = nodes.count - 1
            }
        }
        nodes[node].values.append(value)
    }

    /// The node below `node` for `segment`, or nil when no stored path continues that way.
    func child(of node: Int, _ segment: some StringProtocol) -> Int? {
        nodes[node].children[Self.key(segment)]
    }

    func values(at node: Int) -> [Value] {
        nodes[node].values
    }

    /// Whether nothing is stored below the root.
    var isEmpty: Bool { nodes.count == 1 }

    private static func key(_ segment: some StringProtocol) -> String {
        segment.lowercased()
    }
}
