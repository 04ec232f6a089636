import HTTPTypes
import WebConfiguration

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

extension ErrorPage {
    /// IIS's "HTTP Error 500.19": the configuration of the requested URL is invalid. With
    /// `details`, each error's file, line, attribute and message; without, a reference to the log.
    static func configurationError(_ errors: ConfigurationErrors, details: Bool, reference: UInt64) -> Response {
        let title = "HTTP Error 500.19 - Internal Server Error"
        var body = """
            <!doctype html>
            <html><head><meta charset="utf-8"><title>\(title)</title></head>
            <body><h1>\(title)</h1>
            <p>The requested page cannot be accessed because the related configuration data for the page is invalid.</p>

            """
        if details {
            body += "<h2>Detailed Error Information</h2>\n"
            for error in errors.errors {
                body += "<table>\n"
                body += "<tr><th>Config File</th><td>\(escapeHTML(error.location.file))</td></tr>\n"
                body += "<tr><th>Line</th><td>\(error.location.line)</td></tr>\n"
                if let attribute = error.attribute { body += "<tr><th>Attribute</th><td>\(escapeHTML(attribute))</td></tr>\n" }
                body += "<tr><th>Error</th><td>\(escapeHTML(error.message))</td></tr>\n</table>\n"
            }
        } else {
            body += "<p>The details have been logged. Reference: request \(reference).</p>\n"
        }
        return .html(body + "</body></html>\n", status: .internalServerError)
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
