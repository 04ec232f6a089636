import Foundation
import Testing
@testable import WebConfiguration

struct ReloadTests {
    @Test func editsAdditionsAndRemovalsArePickedUpWithoutARestart() throws {
        let tree = try ConfigTree([
            "www/web.config": webConfig("<sessionState timeout=\"30\" />"),
        ], appHost: ConfigTree.appHost(applications: ConfigTree.application("shop")))
        let store = tree.store()
        func timeout(_ path: String) throws -> ConfiguredTime { try store.configuration(path: path).get().sessionState.timeout }
        #expect(try timeout("/") == .seconds(30 * 60))
        #expect(try timeout("/shop/") == .seconds(30 * 60))
        #expect(store.reloadIfChanged().isEmpty)

        try tree.write("www/web.config", webConfig("<sessionState timeout=\"31\" />"))
        #expect(store.reloadIfChanged() == [tree.path("www/web.config")])
        #expect(try timeout("/") == .seconds(31 * 60))

        try tree.write("www/shop/web.config", webConfig("<sessionState timeout=\"45\" />"))
        #expect(store.reloadIfChanged() == [tree.path("www/shop/web.config")])
        #expect(try timeout("/shop/") == .seconds(45 * 60))

        try tree.remove("www/shop/web.config")
        #expect(store.reloadIfChanged() == [tree.path("www/shop/web.config")])
        #expect(try timeout("/shop/") == .seconds(31 * 60))
    }

    @Test func aBrokenEditFailsOnlyThePathsBelowIt() throws {
        let tree = try ConfigTree([
            "www/shop/web.config": webConfig("<sessionState timeout=\"45\" />"),
        ], appHost: ConfigTree.appHost(applications: ConfigTree.application("shop") + ConfigTree.application("blog")))
        let store = tree.store()
        #expect(try store.configuration(path: "/blog/").get().sessionState.timeout == .seconds(20 * 60))
        try tree.write("www/shop/web.config", "<configuration><system.web><sessionState timeout=\"4")
        store.reloadIfChanged()
        #expect(throws: ConfigurationErrors.self) { try store.configuration(path: "/shop/cart").get() }
        #expect(try store.configuration(path: "/blog/").get().sessionState.timeout == .seconds(20 * 60))
        try tree.write("www/shop/web.config", webConfig("<sessionState timeout=\"46\" />"))
        store.reloadIfChanged()
        #expect(try store.configuration(path: "/shop/cart").get().sessionState.timeout == .seconds(46 * 60))
    }

    @Test func machineLevelChangesAndForcedReloads() throws {
        let tree = try ConfigTree()
        let store = tree.store()
        #expect(try store.configuration(path: "/").get().sessionState.mode == .inProc)
        try tree.write("conf/web.config", webConfig("<sessionState mode=\"Off\" />"))
        #expect(store.reloadIfChanged() == [tree.path("conf/web.config")])
        #expect(try store.configuration(path: "/").get().sessionState.mode == .off)
        try tree.write("conf/web.config", webConfig("<sessionState mode=\"SQLServer\" />"))
        store.reload()
        #expect(try store.configuration(path: "/").get().sessionState.mode == .sqlServer)
    }
}

struct FuzzTests {
    static let sample = """
        <?xml version="1.0" encoding="utf-8"?>
        <configuration>
          <configSections><sectionGroup name="system.web"><section name="custom" type="x" /></sectionGroup></configSections>
          <connectionStrings><add name="Db" connectionString="Server=127.0.0.1;User ID=a" /></connectionStrings>
          <system.web>
            <sessionState mode="Custom" customProvider="P" timeout="30" lockAttributes="mode">
              <providers><clear /><add name="P" type="T" extra="1" /><remove name="Q" /></providers>
            </sessionState>
            <pages enableSessionState="ReadOnly" />
          </system.web>
          <location path="a/b" overrideMode="Deny" inheritInChildApplications="false">
            <system.web><pages enableSessionState="false" /></system.web>
          </location>
          <!-- comment --><![CDATA[x]]>
        </configuration>
        """

    /// Truncations and random byte edits of a valid file: every result is settings or errors
    /// with a file and a line, never a crash.
    @Test func truncatedAndMutatedXMLGivesClearErrors() throws {
        let tree = try ConfigTree(appHost: ConfigTree.appHost(applications: ConfigTree.application("a")))
        let store = tree.store()
        let bytes = Array(Self.sample.utf8)
        var generator = SeededGenerator(seed: 0x5e55_1011)
        var inputs: [[UInt8]] = stride(from: 0, to: bytes.count, by: 7).map { Array(bytes[..<$0]) }
        let alphabet = Array("<>/=\"' &;!-?[]x\n\u{0}".utf8) + [0xff, 0xc3]
        for _ in 0..<300 {
            var mutated = bytes
            for _ in 0..<Int.random(in: 1...6, using: &generator) {
                let index = Int.random(in: 0..<mutated.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: mutated[index] = alphabet.randomElement(using: &generator)!
                case 1: mutated.remove(at: index)
                default: mutated.insert(alphabet.randomElement(using: &generator)!, at: index)
                }
            }
            inputs.append(mutated)
        }
        for _ in 0..<50 {
            inputs.append((0..<Int.random(in: 0...300, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }
        var failures = 0
        for input in inputs {
            try Data(input).write(to: URL(fileURLWithPath: tree.path("www/web.config")))
            store.reload()
            for path in ["/", "/a/b/c"] {
                if case .failure(let errors) = store.configuration(path: path) {
                    failures += 1
                    #expect(!errors.errors.isEmpty)
                    for error in errors.errors {
                        #expect(error.location.line >= 1 && !error.message.isEmpty)
                        #expect(error.location.file == tree.path("www/web.config") || error.location.file.hasSuffix(".config (built-in)"))
                    }
                }
            }
        }
        #expect(failures > inputs.count / 2)
    }
}

/// SplitMix64, so a failing input can be reproduced.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
