import SessionHost
import SessionHostCLI
import RedisSessionStore
import SQLSessionStore
import StateServerSessionStore

/// The benchmark's worker. `…/counter`: read-modify-write of one Int in the ASP.NET session (InProc)
/// per request. `…/fill`: a new session holding four short strings (the memory measurement). Every
/// other path answers the 5-byte body `hello`, like Benchmarks/c-hello/hello.c.
@main
struct BenchHello {
    static func main() async {
        var routes = Routes()
        routes.prefix("/") { _ in .text("hello") }
        routes.named("counter", sessions: .aspNet(.readWrite)) { request in
            let session = try request.requireSession()
            let next = (session.int("n") ?? 0) + 1
            try session.set("n", next)
            return .text("\(next)")
        }
        routes.named("fill", sessions: .aspNet(.readWrite)) { request in
            let session = try request.requireSession()
            try session.set("user", "alice")
            try session.set("lang", "en-GB")
            try session.set("theme", "dark")
            try session.set("cart", "3 items")
            return .text("ok")
        }
        await SessionHostMain.run(
            routes: routes, sessions: SessionOptions(stores: [StateServerSessionStore.factory, SQLSessionStateStore.factory, RedisSessionStateStore.factory]),
            abstract: "The benchmark's worker: hello, a session counter, session fill.")
    }
}
