@testable import SessionHost
import Testing

struct RoutesTests {
    func target(_ routes: Routes, _ path: String) throws -> String? {
        guard let handler = routes.route(for: path), case .sync(let run) = handler.handler else { return nil }
        return try run(Request(.init(params: .init([(name: "REQUEST_URI", value: path)])))).headers[.init("X-Route")!]
    }

    func routes() -> Routes {
        var routes = Routes()
        for (kind, path) in [("exact", "/a"), ("prefix", "/a"), ("prefix", "/a/b/"), ("prefix", "/")] {
            let name = "\(kind) \(path)"
            let handler: Routes.SyncHandler = { _ in Response(headers: [.init("X-Route")!: name]) }
            if kind == "exact" { routes.exact(path, handler) } else { routes.prefix(path, handler) }
        }
        return routes
    }

    @Test(arguments: [
        ("/a", "exact /a"), ("/a/", "prefix /a"), ("/a/x", "prefix /a"), ("/a/b", "prefix /a/b/"),
        ("/a/b/c", "prefix /a/b/"), ("/ab", "prefix /"), ("/", "prefix /"),
    ])
    func exactBeatsPrefixAndLongestPrefixWins(path: String, expected: String) throws {
        #expect(try target(routes(), path) == expected)
    }

    @Test func unmatchedPathHasNoHandler() {
        var routes = Routes()
        routes.prefix("/docs") { _ in .text("") }
        #expect(routes.route(for: "/docsx") == nil)
        #expect(routes.route(for: "/") == nil)
    }
}
