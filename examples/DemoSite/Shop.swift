import Foundation
import SessionHost

/// A small shop whose cart lives in the ASP.NET session. It runs twice: in /shop (the ID in a
/// cookie) and in /m (a cookieless application: the ID in the URL, so every link goes through
/// `request.sessionURL`).
enum Shop {
    struct Product {
        var id: String
        var name: String
        var price: Double
    }

    static let products = [
        Product(id: "tea", name: "Green tea, 100 g", price: 4.5),
        Product(id: "mug", name: "Stoneware mug", price: 8),
        Product(id: "pot", name: "Cast-iron teapot", price: 25),
    ]

    /// Stored as a `Codable` value: kept as is in process, as JSON by out-of-process stores.
    struct Cart: Codable, Sendable {
        var quantities: [String: Int] = [:]

        var count: Int { quantities.values.reduce(0, +) }
        var total: Double {
            quantities.reduce(0) { sum, line in sum + Double(line.value) * (products.first { $0.id == line.key }?.price ?? 0) }
        }
    }

    static func add(to routes: inout Routes) {
        for base in ["/shop", "/m"] {
            // The product list only reads the cart.
            routes.group(base, sessions: .aspNet(.readOnly)) { shop in
                shop.prefix("/") { request in list(request, base: base) }
                shop.prefix("/cart", sessions: .aspNet(.readWrite)) { request in try cart(request, base: base) }
                // Asks for read-write, but the folder's web.config says ReadOnly: the handler gets
                // a read-only session and changes fail.
                shop.prefix("/catalog", sessions: .aspNet(.readWrite)) { request in catalog(request, base: base) }
            }
        }
    }

    static func currentCart(_ request: Request) -> Cart {
        request.session?[.cart] ?? Cart()
    }

    static func list(_ request: Request, base: String) -> Response {
        let cart = currentCart(request)
        let rows = products.map { product in
            "<tr><td>\(escapeHTML(product.name))</td><td>\(price(product.price))</td><td><a href=\"\(escapeHTML(request.sessionURL("\(base)/cart/?add=\(product.id)")))\">add to cart</a></td></tr>"
        }
        return DemoSite.page(base == "/m" ? "The shop, cookieless" : "The shop", """
            \(intro(request, base: base))
            <table>\(rows.joined())</table>
            <p><a href="\(escapeHTML(request.sessionURL(base + "/cart/")))">Cart: \(cart.count) items</a> ·
            <a href="\(escapeHTML(request.sessionURL(base + "/catalog/")))">Catalog (read-only folder)</a></p>
            \(DemoSite.settingsBox(request))
            """)
    }

    static func cart(_ request: Request, base: String) throws -> Response {
        let session = try request.requireSession()
        if let id = request.query("add") {
            guard products.contains(where: { $0.id == id }) else { throw HTTPError(.notFound, message: "There is no product '\(id)'.") }
            try session.update(.cart, default: Cart()) { $0.quantities[id, default: 0] += 1 }
            // Post/redirect/get, keeping the cookieless segment.
            return .redirect(to: request.sessionURL(base + "/cart/"), status: .seeOther)
        }
        if let id = request.query("remove") {
            try session.update(.cart, default: Cart()) { $0.quantities[id] = nil }
            return .redirect(to: request.sessionURL(base + "/cart/"), status: .seeOther)
        }
        let cart = currentCart(request)
        if request.query("checkout") == "1", cart.count > 0 {
            // Abandon: the session ends when this request is done; the next one starts afresh.
            session.abandon()
            return DemoSite.page("Thank you", """
                <p>Order of \(cart.count) items, \(price(cart.total)), placed. Session.Abandon() ended the session.</p>
                <p><a href="\(escapeHTML(request.sessionURL(base + "/")))">Back to the shop</a></p>
                """)
        }
        let lines = cart.quantities.sorted { $0.key < $1.key }.compactMap { id, quantity -> String? in
            guard let product = products.first(where: { $0.id == id }) else { return nil }
            return "<tr><td>\(escapeHTML(product.name))</td><td>\(quantity)</td><td>\(price(Double(quantity) * product.price))</td><td><a href=\"\(escapeHTML(request.sessionURL("\(base)/cart/?remove=\(id)")))\">remove</a></td></tr>"
        }
        return DemoSite.page("Your cart", """
            \(intro(request, base: base))
            \(lines.isEmpty ? "<p>The cart is empty.</p>" : "<table>\(lines.joined())</table><p>Total \(price(cart.total)) · <a href=\"\(escapeHTML(request.sessionURL(base + "/cart/?checkout=1")))\">check out</a></p>")
            <p><a href="\(escapeHTML(request.sessionURL(base + "/")))">Back to the shop</a></p>
            \(DemoSite.settingsBox(request))
            """)
    }

    static func catalog(_ request: Request, base: String) -> Response {
        var note = ""
        if let session = request.session, request.query("add") != nil {
            do {
                try session.set(.cart, Cart())
            } catch {
                note = "<p><b>Refused:</b> \(escapeHTML(String(describing: error)))</p>"
            }
        }
        let rows = products.map { "<li>\(escapeHTML($0.name)): \(price($0.price))</li>" }
        return DemoSite.page("Catalog", """
            <p>This folder's web.config sets <code>pages enableSessionState="ReadOnly"</code>: the handler asked for a read-write
            session and got a read-only one (\(request.session?.isReadOnly == true ? "read-only" : "no session")). It takes no lock,
            so it never waits for or blocks other pages, but it cannot change the cart:
            <a href="\(escapeHTML(request.sessionURL(base + "/catalog/?add=1")))">try</a>.</p>
            \(note)
            <ul>\(rows.joined())</ul>
            <p>Your cart: \(currentCart(request).count) items. <a href="\(escapeHTML(request.sessionURL(base + "/")))">Back to the shop</a></p>
            \(DemoSite.settingsBox(request))
            """)
    }

    static func intro(_ request: Request, base: String) -> String {
        guard let session = request.session else { return "<p>No ASP.NET session here.</p>" }
        return """
            <p>ASP.NET session <code>\(session.sessionID)</code>\(session.isNewSession ? " (new: it is kept, and its cookie sent, only once something is stored)" : ""),
            timeout \(session.timeout) minutes, \(session.isCookieless ? "ID in the URL (cookieless)" : "ID in a cookie").</p>
            \(storage(request))
            """
    }

    /// Where the cart is kept, from the application's effective `<sessionState>`.
    static func storage(_ request: Request) -> String {
        guard let state = request.configuration?.sessionState else { return "" }
        switch state.mode {
        case .sqlServer where state.sqlConnectionString.lowercased().hasPrefix("sqlite:"):
            let file = String(state.sqlConnectionString.dropFirst("sqlite:".count))
            return "<p>The cart is kept in the SQLite file <code>\(escapeHTML(file))</code> (<code>mode=\"SQLServer\"</code>): stop <code>scripts/demo</code>, start it again, and it is still here.</p>"
        case .sqlServer:
            return "<p>The cart is kept in PostgreSQL (<code>mode=\"SQLServer\"</code>): it survives a restart of the worker.</p>"
        case .inProc:
            return "<p>The cart is kept in the worker's memory (<code>mode=\"InProc\"</code>): a restart of the worker empties it.</p>"
        default:
            return "<p>The cart is kept by <code>mode=\"\(state.mode.rawValue)\"</code>.</p>"
        }
    }

    static func price(_ value: Double) -> String {
        "€" + String(format: "%.2f", value)
    }
}

extension SessionItem where Value == Shop.Cart {
    /// The shop's cart, in the ASP.NET session.
    static var cart: SessionItem<Shop.Cart> { "cart" }
}
