import Foundation

/// A value with the place that set it (nil: the default).
struct Setting: Sendable {
    var value: ConfigValue
    var source: SourceLocation?
}

/// An item of a collection (`<add name=…>`).
struct CollectionItem: Sendable {
    var name: String
    var attributes: [String: String]
    var source: SourceLocation
    /// Depth of the file that set `lockItem="true"` on it.
    var lockedAtDepth: Int?
}

/// The items of one collection in order, indexed by name (ignoring case) so that `<add>`,
/// `<remove>` and lookups cost the same whatever the collection's size.
struct ItemCollection: Sendable {
    /// In insertion order; nil where an item was removed.
    private var slots: [CollectionItem?] = []
    private var index: [String: Int] = [:]

    var items: [CollectionItem] { slots.compactMap { $0 } }

    func item(named name: String) -> CollectionItem? {
        index[name.lowercased()].flatMap { slots[$0] }
    }

    /// Whether an item locked at a depth above `depth` is in the collection.
    func hasItemLocked(above depth: Int) -> Bool {
        slots.contains { ($0?.lockedAtDepth ?? .max) < depth }
    }

    /// Adds `item`, or replaces the item of the same name in its place.
    mutating func set(_ item: CollectionItem) {
        let key = item.name.lowercased()
        if let position = index[key] {
            slots[position] = item
        } else {
            index[key] = slots.count
            slots.append(item)
        }
    }

    mutating func remove(named name: String) {
        guard let position = index.removeValue(forKey: name.lowercased()) else { return }
        slots[position] = nil
    }

    mutating func removeAll() {
        slots.removeAll()
        index.removeAll()
    }
}

/// One section being merged down the hierarchy: values attribute by attribute, collections
/// item by item, and the locks that earlier levels placed on later ones.
struct SectionState: Sendable {
    let schema: SectionSchema
    /// Keyed by element path and attribute: `mode`, `session/timeout`.
    var values: [String: Setting] = [:]
    /// Keyed by element path: `` (the section element), `providers`.
    var collections: [String: ItemCollection] = [:]
    /// Locks apply to files deeper than the file that placed them.
    var attributeLocks: [String: Int] = [:]
    var allAttributesExceptLocks: [String: (allowed: Set<String>, depth: Int)] = [:]
    var elementLocks: [String: Int] = [:]
    var allElementsExceptLocks: [String: (allowed: Set<String>, depth: Int)] = [:]

    init(schema: SectionSchema) {
        self.schema = schema
    }

    func value(_ key: String) -> ConfigValue {
        if let setting = values[key] { return setting.value }
        return Self.defaultValue(key, in: schema)!
    }

    static func defaultValue(_ key: String, in schema: SectionSchema) -> ConfigValue? {
        var element = schema.root
        var parts = key.split(separator: "/").map(String.init)
        let attribute = parts.removeLast()
        for part in parts {
            guard let child = element.children[part] else { return nil }
            element = child
        }
        return element.attribute(attribute)?.defaultValue
    }

    /// Applies one occurrence of the section from a file at `depth`.
    mutating func apply(_ element: ConfigElement, depth: Int, errors: inout [ConfigurationError]) {
        apply(element, schema: schema.root, path: "", depth: depth, errors: &errors)
    }

    private mutating func apply(_ element: ConfigElement, schema: ElementSchema, path: String, depth: Int, errors: inout [ConfigurationError]) {
        if let textLine = element.textLine {
            errors.append(ConfigurationError(
                "The configuration section cannot contain a CDATA or text element.",
                at: SourceLocation(file: element.file, line: textLine)))
        }
        for attribute in element.attributes {
            let at = element.location(of: attribute)
            if lockingAttributes.contains(attribute.name) { continue }
            guard let attributeSchema = schema.attribute(attribute.name) else {
                if schema.ignoredAttributes?.contains(attribute.name) ?? true { continue }
                errors.append(ConfigurationError(
                    "Unrecognized attribute '\(attribute.name)'. Note that attribute names are case-sensitive.",
                    at: at, attribute: attribute.name))
                continue
            }
            let key = path.isEmpty ? attribute.name : "\(path)/\(attribute.name)"
            if isAttributeLocked(attribute.name, elementPath: path, depth: depth) {
                errors.append(ConfigurationError(
                    "The attribute '\(attribute.name)' has been locked in a higher level configuration.",
                    at: at, attribute: attribute.name))
                continue
            }
            do throws(ValueError) {
                values[key] = Setting(value: try attributeSchema.parser.parse(attribute.value, attribute.name), source: at)
            } catch {
                errors.append(ConfigurationError(error.message, at: at, attribute: attribute.name))
            }
        }
        var seenChildren: Set<String> = []
        for child in element.children {
            if let childSchema = schema.children[child.name] {
                guard seenChildren.insert(child.name).inserted else {
                    errors.append(ConfigurationError("The element <\(child.name)> may only appear once in this section.", at: child.location))
                    continue
                }
                let childPath = path.isEmpty ? child.name : "\(path)/\(child.name)"
                if isElementLocked(child.name, elementPath: path, depth: depth) {
                    errors.append(ConfigurationError("The element '\(child.name)' has been locked in a higher level configuration.", at: child.location))
                    continue
                }
                apply(child, schema: childSchema, path: childPath, depth: depth, errors: &errors)
            } else if let collection = schema.collection {
                applyCollectionItem(child, collection: collection, path: path, depth: depth, errors: &errors)
            } else if schema.ignoredChildren?.contains(child.name) ?? true {
                continue
            } else {
                errors.append(ConfigurationError("Unrecognized element '\(child.name)'.", at: child.location))
            }
        }
        recordLocks(element, schema: schema, path: path, depth: depth, errors: &errors)
    }

    private func isAttributeLocked(_ name: String, elementPath: String, depth: Int) -> Bool {
        let key = elementPath.isEmpty ? name : "\(elementPath)/\(name)"
        if let lockDepth = attributeLocks[key], lockDepth < depth { return true }
        if let lock = allAttributesExceptLocks[elementPath], lock.depth < depth, !lock.allowed.contains(name) { return true }
        return false
    }

    private func isElementLocked(_ name: String, elementPath: String, depth: Int) -> Bool {
        let key = elementPath.isEmpty ? name : "\(elementPath)/\(name)"
        if let lockDepth = elementLocks[key], lockDepth < depth { return true }
        if let lock = allElementsExceptLocks[elementPath], lock.depth < depth, !lock.allowed.contains(name) { return true }
        return false
    }

    private mutating func recordLocks(_ element: ConfigElement, schema: ElementSchema, path: String, depth: Int, errors: inout [ConfigurationError]) {
        let attributeNames = schema.attributes.map(\.name)
        let elementNames = schema.children.keys.sorted()
        for attribute in element.attributes where lockingAttributes.contains(attribute.name) && attribute.name != "lockItem" {
            let at = element.location(of: attribute)
            let names = attribute.value.split(separator: ",").map { String($0).trimmingBlanks }.filter { !$0.isEmpty }
            let isAttributeList = attribute.name == "lockAttributes" || attribute.name == "lockAllAttributesExcept"
            let valid = isAttributeList ? attributeNames : elementNames
            let checks = isAttributeList ? schema.ignoredAttributes != nil : schema.ignoredChildren != nil
            if checks, let unknown = names.first(where: { $0 != "*" && !valid.contains($0) }) {
                let kind = isAttributeList ? "attribute" : "element"
                errors.append(ConfigurationError(
                    "The \(kind) '\(unknown)' is not valid in the locked list for this section. The following \(kind)s can be locked: \(valid.joined(separator: ", ")). Multiple \(kind)s may be listed separated by commas.",
                    at: at, attribute: attribute.name))
                continue
            }
            switch attribute.name {
            case "lockAttributes":
                for name in names.contains("*") ? attributeNames : names {
                    let key = path.isEmpty ? name : "\(path)/\(name)"
                    attributeLocks[key] = min(attributeLocks[key] ?? depth, depth)
                }
            case "lockAllAttributesExcept":
                allAttributesExceptLocks[path] = (Set(names), depth)
            case "lockElements":
                for name in names.contains("*") ? elementNames : names {
                    let key = path.isEmpty ? name : "\(path)/\(name)"
                    elementLocks[key] = min(elementLocks[key] ?? depth, depth)
                }
            default:
                allElementsExceptLocks[path] = (Set(names), depth)
            }
        }
    }

    private mutating func applyCollectionItem(_ element: ConfigElement, collection: CollectionSchema, path: String, depth: Int, errors: inout [ConfigurationError]) {
        // Taken out while it changes, so that the change does not copy it.
        var items = collections.removeValue(forKey: path) ?? ItemCollection()
        defer { collections[path] = items }
        switch element.name {
        case "clear":
            if items.hasItemLocked(above: depth) {
                errors.append(ConfigurationError(
                    "A collection item has been locked in a higher level configuration. The collection may not be cleared.", at: element.location))
                return
            }
            items.removeAll()
        case "remove":
            guard let name = element.attribute("name")?.value else {
                errors.append(ConfigurationError("Required attribute 'name' not found.", at: element.location, attribute: "name"))
                return
            }
            for attribute in element.attributes where attribute.name != "name" {
                errors.append(ConfigurationError(
                    "Unrecognized attribute '\(attribute.name)'. Note that attribute names are case-sensitive.",
                    at: element.location(of: attribute), attribute: attribute.name))
            }
            guard let existing = items.item(named: name) else { return }
            if (existing.lockedAtDepth ?? .max) < depth {
                errors.append(ConfigurationError(
                    "The collection item has been locked in a higher level configuration and may not be changed.", at: element.location))
                return
            }
            items.remove(named: name)
        case "add":
            var attributes: [String: String] = [:]
            var lockItem = false
            var valid = true
            for attribute in element.attributes {
                if attribute.name == "lockItem" {
                    guard let value = ConfigFile.strictBoolean(attribute.value) else {
                        errors.append(ConfigurationError("The property 'lockItem' must have value 'true' or 'false'.", at: element.location(of: attribute), attribute: "lockItem"))
                        valid = false
                        continue
                    }
                    lockItem = value
                } else if collection.itemAttributes.contains(where: { $0.name == attribute.name }) || collection.keepsOtherAttributes {
                    attributes[attribute.name] = attribute.value
                } else {
                    errors.append(ConfigurationError(
                        "Unrecognized attribute '\(attribute.name)'. Note that attribute names are case-sensitive.",
                        at: element.location(of: attribute), attribute: attribute.name))
                    valid = false
                }
            }
            for required in collection.requiredAttributes where attributes[required] == nil {
                errors.append(ConfigurationError("Required attribute '\(required)' not found.", at: element.location, attribute: required))
                valid = false
            }
            guard valid, let name = attributes["name"] else { return }
            if name.isEmpty {
                errors.append(ConfigurationError("Required attribute 'name' cannot be empty.", at: element.location, attribute: "name"))
                return
            }
            let item = CollectionItem(name: name, attributes: attributes, source: element.location, lockedAtDepth: lockItem ? depth : nil)
            // An identical re-add is accepted, as System.Configuration does.
            if let existing = items.item(named: name), existing.attributes != attributes {
                errors.append(ConfigurationError("The entry '\(name)' has already been added.", at: element.location, attribute: "name"))
                return
            }
            items.set(item)
        default:
            errors.append(ConfigurationError("Unrecognized element '\(element.name)'.", at: element.location))
        }
    }
}
