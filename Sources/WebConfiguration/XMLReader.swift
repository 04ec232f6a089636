import Foundation

import CLibXML2

/// Reads configuration XML with libxml2, safely: no network, no DTD (a document that has one is
/// rejected, so there are no entities to expand), no XInclude, and a size limit.
enum XMLReader {
    /// Largest configuration file read, as IIS's default `maxWebConfigFileSizeInKB` (250 KB)
    /// rounded up to a power of two.
    static let maximumFileSize = 256 * 1024

    private static let initialized: Void = { xmlInitParser() }()

    /// Calls `xmlInitParser()`; safe to call more than once, from any thread.
    static func initialize() {
        _ = initialized
    }

    /// Parses `bytes` (the contents of `file`) into an element tree.
    static func parse(_ bytes: [UInt8], file: String) throws(ConfigurationError) -> ConfigElement {
        initialize()
        guard bytes.count <= maximumFileSize else {
            throw ConfigurationError(
                "The configuration file is \(bytes.count) bytes; the limit is \(maximumFileSize) bytes.",
                at: SourceLocation(file: file, line: 1))
        }
        guard !bytes.isEmpty else {
            throw ConfigurationError("Malformed XML: Document is empty", at: SourceLocation(file: file, line: 1))
        }
        guard let context = xmlNewParserCtxt() else {
            throw ConfigurationError("libxml2 could not allocate a parser.", at: SourceLocation(file: file, line: 1))
        }
        defer { xmlFreeParserCtxt(context) }
        // No XML_PARSE_NOENT, XML_PARSE_DTDLOAD or XML_PARSE_XINCLUDE: nothing is fetched or expanded.
        let options = Int32(XML_PARSE_NONET.rawValue | XML_PARSE_NOERROR.rawValue | XML_PARSE_NOWARNING.rawValue)
        // libxml2 goes on after the first error and keeps only the last; the first is the one to report.
        let firstError = FirstError()
        context.pointee._private = Unmanaged.passUnretained(firstError).toOpaque()
        context.pointee.sax.pointee.serror = { userData, error in
            guard let userData, let error else { return }
            let context = userData.assumingMemoryBound(to: xmlParserCtxt.self)
            guard let box = context.pointee._private else { return }
            let first = Unmanaged<FirstError>.fromOpaque(box).takeUnretainedValue()
            guard first.message == nil else { return }
            first.line = Int(error.pointee.line)
            first.message = error.pointee.message.map { String(cString: $0) } ?? ""
        }
        let parsed = withExtendedLifetime(firstError) {
            bytes.withUnsafeBufferPointer { buffer in
                buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: max(buffer.count, 1)) { pointer in
                    xmlCtxtReadMemory(context, pointer, Int32(buffer.count), file, nil, options)
                }
            }
        }
        guard let document = parsed, firstError.message == nil else {
            if let parsed { xmlFreeDoc(parsed) }
            let reason = firstError.message.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "the document is not well-formed XML"
            throw ConfigurationError("Malformed XML: \(reason)", at: SourceLocation(file: file, line: max(firstError.line, 1)))
        }
        defer { xmlFreeDoc(document) }
        if document.pointee.intSubset != nil || document.pointee.extSubset != nil {
            let doctype = Array("<!DOCTYPE".utf8)
            let offset = (0..<bytes.count).first { bytes[$0...].starts(with: doctype) } ?? 0
            let line = 1 + bytes[..<offset].count { $0 == UInt8(ascii: "\n") }
            throw ConfigurationError("A <!DOCTYPE> is not allowed in configuration files.", at: SourceLocation(file: file, line: line))
        }
        guard let root = xmlDocGetRootElement(document) else {
            throw ConfigurationError("Malformed XML: the document has no root element", at: SourceLocation(file: file, line: 1))
        }
        var tags = scanStartTags(bytes).makeIterator()
        return element(root, file: file, tags: &tags)
    }

    private static func element(_ node: xmlNodePtr, file: String, tags: inout IndexingIterator<[StartTag]>) -> ConfigElement {
        // The scanner sees the same start tags in the same order; libxml2's own line is the line
        // where the start tag ends, kept as a fallback.
        let tag = tags.next()
        var result = ConfigElement(
            name: qualifiedName(node.pointee.name, node.pointee.ns),
            file: file,
            line: tag?.line ?? Int(xmlGetLineNo(node)),
            attributes: [],
            children: [])
        var attribute = node.pointee.properties
        while let current = attribute {
            let name = qualifiedName(current.pointee.name, current.pointee.ns)
            var value = ""
            var text = current.pointee.children
            while let piece = text {
                if let content = piece.pointee.content { value += String(cString: content) }
                text = piece.pointee.next
            }
            let line = tag?.attributeLines[name] ?? result.line
            result.attributes.append(.init(name: name, value: value, line: line))
            attribute = current.pointee.next
        }
        var child = node.pointee.children
        while let current = child {
            switch current.pointee.type {
            case XML_ELEMENT_NODE:
                result.children.append(element(current, file: file, tags: &tags))
            case XML_TEXT_NODE, XML_CDATA_SECTION_NODE:
                if result.textLine == nil, let content = current.pointee.content,
                   !String(cString: content).allSatisfy(\.isWhitespace) {
                    result.textLine = Int(xmlGetLineNo(current))
                }
            default:
                break
            }
            child = current.pointee.next
        }
        return result
    }

    private static func qualifiedName(_ name: UnsafePointer<xmlChar>?, _ namespace: xmlNsPtr?) -> String {
        let local = name.map { String(cString: $0) } ?? ""
        guard let prefix = namespace?.pointee.prefix else { return local }
        return String(cString: prefix) + ":" + local
    }
}

/// The first error libxml2 reported while parsing one document.
private final class FirstError {
    var message: String?
    var line = 0
}

/// The line of a start tag's `<` and of each of its attributes.
struct StartTag {
    var line: Int
    var attributeLines: [String: Int]
}

/// Finds the start tags of a well-formed document in order, with line numbers, which libxml2
/// does not keep (it records the line where a start tag ends, and none for attributes).
private func scanStartTags(_ bytes: [UInt8]) -> [StartTag] {
    var tags: [StartTag] = []
    var line = 1
    var index = 0
    let count = bytes.count

    func advance(past terminator: [UInt8]) {
        while index < count {
            if bytes[index] == UInt8(ascii: "\n") { line += 1 }
            if bytes[index] == terminator[0], index + terminator.count <= count,
               Array(bytes[index..<index + terminator.count]) == terminator {
                index += terminator.count
                return
            }
            index += 1
        }
    }
    func hasPrefix(_ text: String) -> Bool {
        let prefix = Array(text.utf8)
        return index + prefix.count <= count && Array(bytes[index..<index + prefix.count]) == prefix
    }
    func isNameByte(_ byte: UInt8) -> Bool {
        !(byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n")
            || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "=") || byte == UInt8(ascii: ">")
            || byte == UInt8(ascii: "/"))
    }

    while index < count {
        let byte = bytes[index]
        if byte == UInt8(ascii: "\n") { line += 1; index += 1; continue }
        guard byte == UInt8(ascii: "<") else { index += 1; continue }
        if hasPrefix("<!--") { advance(past: Array("-->".utf8)); continue }
        if hasPrefix("<![CDATA[") { advance(past: Array("]]>".utf8)); continue }
        if hasPrefix("<?") { advance(past: Array("?>".utf8)); continue }
        if hasPrefix("<!") || hasPrefix("</") { advance(past: Array(">".utf8)); continue }
        var tag = StartTag(line: line, attributeLines: [:])
        index += 1
        while index < count, isNameByte(bytes[index]) { index += 1 }
        while index < count, bytes[index] != UInt8(ascii: ">") {
            let current = bytes[index]
            if current == UInt8(ascii: "\n") { line += 1; index += 1; continue }
            if current == UInt8(ascii: "\"") || current == UInt8(ascii: "'") {
                index += 1
                advance(past: [current])
                continue
            }
            if isNameByte(current) {
                let start = index
                while index < count, isNameByte(bytes[index]) { index += 1 }
                let name = String(decoding: bytes[start..<index], as: UTF8.self)
                if tag.attributeLines[name] == nil { tag.attributeLines[name] = line }
                continue
            }
            index += 1
        }
        index += 1
        tags.append(tag)
    }
    return tags
}
