import Foundation
import Logging
import WebConfiguration

// Cost of the effective-settings lookup the worker makes for every request, for a path six
// folders deep, each folder with its own web.config. Reported next to a plain Dictionary
// lookup with the same key (the floor for any memo) and the uncached resolution.

func makeTree() throws -> (root: String, path: String) {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("bench-config-\(UUID().uuidString)").path
    let folders = ["shop", "catalog", "books", "fiction", "classics", "old"]
    try FileManager.default.createDirectory(atPath: root + "/conf", withIntermediateDirectories: true)
    try """
        <configuration>
          <configSections><sectionGroup name="system.webServer"><section name="asp" overrideModeDefault="Deny" /></sectionGroup></configSections>
          <system.applicationHost><sites><site name="Bench" id="1">
            <application path="/"><virtualDirectory path="/" physicalPath="../www" /></application>
            <application path="/shop"><virtualDirectory path="/" physicalPath="../www/shop" /></application>
          </site></sites></system.applicationHost>
          <location path="Bench/shop" overrideMode="Allow"><system.webServer><asp /></system.webServer></location>
        </configuration>
        """.write(toFile: root + "/conf/applicationHost.config", atomically: true, encoding: .utf8)
    var folder = root + "/www"
    for (depth, name) in folders.enumerated() {
        folder += "/" + name
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let section = depth == 0
            ? "<system.web><sessionState timeout=\"\(30 + depth)\" /><pages enableSessionState=\"true\" /></system.web>"
            : "<system.web><pages enableSessionState=\"\(depth % 2 == 0 ? "true" : "ReadOnly")\" /></system.web><system.webServer><asp><session timeout=\"00:\(10 + depth):00\" /></asp></system.webServer>"
        try "<configuration>\(section)</configuration>".write(toFile: folder + "/web.config", atomically: true, encoding: .utf8)
    }
    return (root, "/" + folders.joined(separator: "/") + "/page.aspx")
}

func measure(_ label: String, iterations: Int, _ body: () -> Void) -> Double {
    for _ in 0..<min(iterations, 10_000) { body() }
    let clock = ContinuousClock()
    let elapsed = clock.measure { for _ in 0..<iterations { body() } }
    let nanoseconds = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
    let perCall = nanoseconds / Double(iterations)
    print("\(label.padding(toLength: 46, withPad: " ", startingAt: 0)) \(String(format: "%10.1f", perCall)) ns")
    return perCall
}

let (root, path) = try makeTree()
defer { try? FileManager.default.removeItem(atPath: root) }
let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
let store = ConfigurationStore(directory: root + "/conf", logger: quiet)
guard case .success(let settings) = store.configuration(path: path) else { fatalError("invalid benchmark configuration") }
precondition(settings.asp.timeoutSeconds == 15 * 60 && settings.enableSessionState == .readOnly)

let iterations = Int(ProcessInfo.processInfo.environment["ITERATIONS"] ?? "") ?? 2_000_000
print("path \(path) (6 folders, 6 web.config files + applicationHost.config), \(iterations) lookups")
var sink = 0
let memoised = measure("memoised lookup (ConfigurationStore)", iterations: iterations) {
    if case .success(let value) = store.configuration(path: path) { sink &+= Int(value.asp.max & 1) }
}
var dictionary: [String: EffectiveConfiguration] = [path: settings]
let floor = measure("reference: Dictionary<String, settings> lookup", iterations: iterations) {
    sink &+= Int(dictionary[path]!.asp.max & 1)
}
let cold = measure("uncached resolution (reload before each)", iterations: 2_000) {
    store.reload()
    if case .success(let value) = store.configuration(path: path) { sink &+= Int(value.asp.max & 1) }
}
// Two threads at once, as on the 2-core worker under load.
let contended = twoThreads()
func twoThreads() -> Double {
    let clock = ContinuousClock()
    let perThread = iterations / 2
    let elapsed = clock.measure {
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            var local = 0
            for _ in 0..<perThread {
                if case .success(let value) = store.configuration(path: path) { local &+= Int(value.asp.max & 1) }
            }
            if local == 42 { print("") }
        }
    }
    let nanoseconds = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
    let perCall = nanoseconds / Double(perThread)
    print("\("memoised lookup, 2 threads at once (per call)".padding(toLength: 46, withPad: " ", startingAt: 0)) \(String(format: "%10.1f", perCall)) ns")
    return perCall
}
print("")
print(String(format: "memoised / dictionary floor: %.2f×; memoised / uncached: %.4f", memoised / floor, memoised / cold))
print(memoised < 2000 && contended < 2000 ? "PASS: under 2 µs" : "FAIL: 2 µs budget exceeded")
if sink == -1 { print(sink) }
