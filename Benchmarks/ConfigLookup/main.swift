import Foundation
import Logging
import WebConfiguration

// Cost of the effective-settings lookup the worker makes for every request:
// 1. memoised: a path six folders deep, each folder with its own web.config, next to a plain
//    Dictionary lookup with the same key (the floor for any memo) and the uncached resolution;
// 2. deep URLs: first lookups of distinct URLs thousands of segments deep (what a hostile client
//    sends) next to first lookups of distinct 5-segment URLs, and the memory they leave behind;
// 3. large files: first lookups below a web.config with thousands of connection strings, and the
//    whole-tree check (what the worker runs at startup) of a web.config with thousands of
//    <location> elements.
// Counts: ITERATIONS (memoised lookups), DEEP_URLS, DEEP_SEGMENTS, CONNECTION_STRINGS, LARGE_URLS,
// LOCATIONS; ONLY=memoised,deep,large picks cases.

let environment = ProcessInfo.processInfo.environment
func setting(_ name: String, _ fallback: Int) -> Int { Int(environment[name] ?? "") ?? fallback }

let applicationHost = """
    <configuration>
      <configSections><sectionGroup name="system.webServer"><section name="asp" overrideModeDefault="Deny" /></sectionGroup></configSections>
      <system.applicationHost><sites><site name="Bench" id="1">
        <application path="/"><virtualDirectory path="/" physicalPath="../www" /></application>
        <application path="/shop"><virtualDirectory path="/" physicalPath="../www/shop" /></application>
      </site></sites></system.applicationHost>
      <location path="Bench/shop" overrideMode="Allow"><system.webServer><asp /></system.webServer></location>
    </configuration>
    """

/// A temporary configuration tree: conf/applicationHost.config and www/ with the given
/// web.config files (relative folder → contents).
func makeTree(_ webConfigs: [(folder: String, contents: String)]) throws -> String {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("bench-config-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: root + "/conf", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: root + "/www/shop", withIntermediateDirectories: true)
    try applicationHost.write(toFile: root + "/conf/applicationHost.config", atomically: true, encoding: .utf8)
    for (folder, contents) in webConfigs {
        let path = root + "/www/" + folder
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try contents.write(toFile: path + "/web.config", atomically: true, encoding: .utf8)
    }
    return root
}

func nanoseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1e9 + Double(duration.components.attoseconds) / 1e9
}

func report(_ label: String, _ value: String) {
    print("\(label.padding(toLength: 52, withPad: " ", startingAt: 0)) \(value)")
}

func measure(_ label: String, iterations: Int, _ body: () -> Void) -> Double {
    for _ in 0..<min(iterations, 10_000) { body() }
    let perCall = nanoseconds(ContinuousClock().measure { for _ in 0..<iterations { body() } }) / Double(iterations)
    report(label, String(format: "%12.1f ns", perCall))
    return perCall
}

/// Resident memory of this process, from /proc/self/statm.
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}

let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
nonisolated(unsafe) var sink = 0
nonisolated(unsafe) var failed = false

// MARK: 1. Memoised lookups

func memoisedCase() throws {
    let folders = ["shop", "catalog", "books", "fiction", "classics", "old"]
    var configs: [(String, String)] = []
    for depth in folders.indices {
        let section = depth == 0
            ? "<system.web><sessionState timeout=\"\(30 + depth)\" /><pages enableSessionState=\"true\" /></system.web>"
            : "<system.web><pages enableSessionState=\"\(depth % 2 == 0 ? "true" : "ReadOnly")\" /></system.web><system.webServer><asp><session timeout=\"00:\(10 + depth):00\" /></asp></system.webServer>"
        configs.append((folders[...depth].joined(separator: "/"), "<configuration>\(section)</configuration>"))
    }
    let root = try makeTree(configs)
    defer { try? FileManager.default.removeItem(atPath: root) }
    let path = "/" + folders.joined(separator: "/") + "/page.aspx"
    let store = ConfigurationStore(directory: root + "/conf", logger: quiet)
    guard case .success(let settings) = store.configuration(path: path) else { fatalError("invalid benchmark configuration") }
    precondition(settings.asp.timeoutSeconds == 15 * 60 && settings.enableSessionState == .readOnly)

    let iterations = setting("ITERATIONS", 2_000_000)
    print("## memoised lookups: \(path) (6 folders, 6 web.config files + applicationHost.config), \(iterations) lookups")
    let memoised = measure("memoised lookup (ConfigurationStore)", iterations: iterations) {
        if case .success(let value) = store.configuration(path: path) { sink &+= Int(value.asp.max & 1) }
    }
    let dictionary: [String: EffectiveConfiguration] = [path: settings]
    let floor = measure("reference: Dictionary<String, settings> lookup", iterations: iterations) {
        sink &+= Int(dictionary[path]!.asp.max & 1)
    }
    let cold = measure("uncached resolution (reload before each)", iterations: 2_000) {
        store.reload()
        if case .success(let value) = store.configuration(path: path) { sink &+= Int(value.asp.max & 1) }
    }
    // Two threads at once, as on the 2-core worker under load.
    let perThread = iterations / 2
    let elapsed = ContinuousClock().measure {
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            var local = 0
            for _ in 0..<perThread {
                if case .success(let value) = store.configuration(path: path) { local &+= Int(value.asp.max & 1) }
            }
            if local == 42 { print("") }
        }
    }
    let contended = nanoseconds(elapsed) / Double(perThread)
    report("memoised lookup, 2 threads at once (per call)", String(format: "%12.1f ns", contended))
    print(String(format: "memoised / dictionary floor: %.2f×; memoised / uncached: %.4f", memoised / floor, memoised / cold))
    let pass = memoised < 2000 && contended < 2000
    failed = failed || !pass
    print(pass ? "PASS: under 2 µs" : "FAIL: 2 µs budget exceeded")
}

// MARK: 2. Deep URLs

func deepURLCase() throws {
    let count = setting("DEEP_URLS", 200)
    let depth = setting("DEEP_SEGMENTS", 4000)
    let root = try makeTree([
        ("shop", "<configuration><system.web><sessionState timeout=\"31\" /></system.web></configuration>"),
        ("shop/catalog", "<configuration><system.web><pages enableSessionState=\"ReadOnly\" /></system.web></configuration>"),
    ])
    defer { try? FileManager.default.removeItem(atPath: root) }
    let store = ConfigurationStore(directory: root + "/conf", logger: quiet)
    guard case .success = store.configuration(path: "/") else { fatalError("invalid benchmark configuration") }
    let tail = String(repeating: "/a", count: depth - 4)
    print("")
    print("## deep URLs: \(count) distinct URLs of \(depth) segments (\(tail.utf8.count / 1024) KiB) vs \(count) distinct URLs of 5 segments, first lookup each")

    func firstLookups(_ url: (Int) -> String) -> Double {
        let elapsed = ContinuousClock().measure {
            for index in 0..<count {
                if case .success(let value) = store.configuration(path: url(index)) { sink &+= Int(value.asp.max & 1) }
            }
        }
        return nanoseconds(elapsed) / Double(count)
    }
    // Interleaved in halves, so that neither kind runs on a colder machine.
    let before = residentBytes()
    var shallow = 0.0, deep = 0.0
    for half in 0..<2 {
        shallow += firstLookups { "/shop/catalog/b\(half)/x\($0)/page" } / 2
        deep += firstLookups { "/shop/catalog/d\(half)/x\($0)\(tail)/nope" } / 2
    }
    let grown = residentBytes() - before
    report("first lookup, 5 segments", String(format: "%12.1f µs", shallow / 1000))
    report("first lookup, \(depth) segments", String(format: "%12.1f µs", deep / 1000))
    report("deep / shallow", String(format: "%12.1f ×", deep / shallow))
    report("resident memory added by all \(2 * count) URLs", String(format: "%12.1f MiB", Double(grown) / 1_048_576))
}

// MARK: 3. Large files

func largeFileCase() throws {
    let strings = setting("CONNECTION_STRINGS", 2000)
    let urls = max(2, setting("LARGE_URLS", 200))
    var adds = ""
    for index in 0..<strings { adds += "<add name=\"c\(index)\" connectionString=\"Data Source=db\(index % 7)\" />\n" }
    let root = try makeTree([("", "<configuration><connectionStrings>\n\(adds)</connectionStrings></configuration>")])
    defer { try? FileManager.default.removeItem(atPath: root) }
    let store = ConfigurationStore(directory: root + "/conf", logger: quiet)
    print("")
    print("## large files: a web.config with \(strings) connection strings (\(adds.utf8.count / 1024) KiB), first lookups of \(urls) distinct URLs below it")
    var first = 0.0
    let elapsed = ContinuousClock().measure {
        for index in 0..<urls {
            let start = ContinuousClock.now
            guard case .success(let value) = store.configuration(path: "/f\(index)/page") else { fatalError("invalid benchmark configuration") }
            if index == 0 { first = nanoseconds(ContinuousClock.now - start) }
            sink &+= value.connectionStrings.count
        }
    }
    report("first URL (parses the file)", String(format: "%12.3f ms", first / 1e6))
    report("each further distinct URL", String(format: "%12.3f ms", (nanoseconds(elapsed) - first) / Double(urls - 1) / 1e6))

    let locations = setting("LOCATIONS", 2500)
    var blocks = ""
    for index in 0..<locations {
        blocks += "<location path=\"d\(index)\"><system.web><pages enableSessionState=\"\(index % 2 == 0 ? "ReadOnly" : "false")\" /></system.web></location>\n"
    }
    let tree = try makeTree([("", "<configuration>\n\(blocks)</configuration>")])
    defer { try? FileManager.default.removeItem(atPath: tree) }
    let checker = ConfigurationStore(directory: tree + "/conf", logger: quiet)
    var errors = 0
    let check = ContinuousClock().measure { errors = checker.check().count }
    precondition(errors == 0, "the locations benchmark tree should be valid")
    report("whole-tree check, \(locations) <location> (\(blocks.utf8.count / 1024) KiB)", String(format: "%12.3f ms", nanoseconds(check) / 1e6))

    // Both in one file: every <location> target merges the same connection strings.
    let mixedLocations = locations / 2
    var mixed = "<configuration>\n<connectionStrings>\n"
    for index in 0..<locations { mixed += "<add name=\"c\(index)\" connectionString=\"s\(index)\"/>\n" }
    mixed += "</connectionStrings>\n" + blocks.split(separator: "\n").prefix(mixedLocations).joined(separator: "\n") + "\n</configuration>\n"
    let both = try makeTree([("", mixed)])
    defer { try? FileManager.default.removeItem(atPath: both) }
    let mixedChecker = ConfigurationStore(directory: both + "/conf", logger: quiet)
    let mixedCheck = ContinuousClock().measure { errors = mixedChecker.check().count }
    precondition(errors == 0, "the mixed benchmark tree should be valid")
    report("check, \(mixedLocations) <location> + \(locations) strings (\(mixed.utf8.count / 1024) KiB)", String(format: "%12.3f ms", nanoseconds(mixedCheck) / 1e6))
}

let cases = Set((environment["ONLY"] ?? "memoised,deep,large").split(separator: ",").map(String.init))
if cases.contains("memoised") { try memoisedCase() }
if cases.contains("deep") { try deepURLCase() }
if cases.contains("large") { try largeFileCase() }
if sink == -1 { print(sink) }
if failed { exit(1) }
