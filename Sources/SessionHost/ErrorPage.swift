import HTTPTypes

/// The host's own pages for errors: short, and with nothing internal in them.
enum ErrorPage {
    static func response(_ status: HTTPResponse.Status, detail: String, reference: UInt64? = nil) -> Response {
        let title = "\(status.code) \(escapeHTML(status.reasonPhrase))"
        let referenceLine = reference.map { "<p>Reference: request \($0).</p>\n" } ?? ""
        return .html("""
            <!doctype html>
            <html><head><meta charset="utf-8"><title>\(title)</title></head>
            <body><h1>\(title)</h1>
            <p>\(escapeHTML(detail))</p>
            \(referenceLine)</body></html>

            """, status: status)
    }
}

/// Escapes text for HTML element content and attribute values.
public func escapeHTML(_ text: String) -> String {
    var escaped = ""
    escaped.reserveCapacity(text.utf8.count)
    for character in text {
        switch character {
        case "&": escaped += "&amp;"
        case "<": escaped += "&lt;"
        case ">": escaped += "&gt;"
        case "\"": escaped += "&quot;"
        case "'": escaped += "&#39;"
        default: escaped.append(character)
        }
    }
    return escaped
}
