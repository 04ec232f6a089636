import SessionHost
import SessionHostCLI

/// Answers every path with the 5-byte body `hello`, like Benchmarks/c-hello/hello.c.
@main
struct BenchHello {
    static func main() async {
        var routes = Routes()
        routes.prefix("/") { _ in .text("hello") }
        await SessionHostMain.run(routes: routes, abstract: "The benchmark's hello worker.")
    }
}
