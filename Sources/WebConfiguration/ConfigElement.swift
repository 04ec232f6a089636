/// An element of a configuration file, with the line of every element and attribute.
struct ConfigElement: Sendable {
    struct Attribute: Sendable {
        var name: String
        var value: String
        var line: Int
    }

    var name: String
    var file: String
    /// The line of the element's `<`.
    var line: Int
    var attributes: [Attribute]
    var children: [ConfigElement]
    /// The line of the first non-blank text or CDATA inside the element, if any.
    var textLine: Int?

    var location: SourceLocation { SourceLocation(file: file, line: line) }

    func attribute(_ name: String) -> Attribute? {
        attributes.first { $0.name == name }
    }

    /// This element and all below it: the work of merging it, counted by the store.
    var subtreeCount: Int {
        children.reduce(1) { $0 + $1.subtreeCount }
    }

    func location(of attribute: Attribute) -> SourceLocation {
        SourceLocation(file: file, line: attribute.line)
    }
}
