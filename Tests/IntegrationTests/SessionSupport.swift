import Locking
import Foundation
import Glibc
import Synchronization
import Testing

/// A site for the session tests: applicationHost.config with one site ("Test", id 1), the `asp`
/// section declared locked (as in IIS) and unlocked for the whole site, and one application or
/// folder per setting under test. Removed at the end.
final class SessionTree {
    let root = FileManager.default.temporaryDirectory.appending(path: "sessionhost-sessions-\(UUID().uuidString.prefix(8))").path
    var configDirectory: String { root + "/conf" }

    /// Nested applications (path → root web.config), each its own session partition.
    static let standardApplications: [String: String] = [
        "/nested": webConfig(systemWeb: #"<sessionState timeout="5" />"#),
        "/cl": webConfig(systemWeb: #"<sessionState cookieless="UseUri" />"#),
        "/clkeep": webConfig(systemWeb: #"<sessionState cookieless="UseUri" regenerateExpiredSessionId="false" />"#),
        "/auto": webConfig(systemWeb: #"<sessionState cookieless="AutoDetect" />"#),
        "/device": webConfig(systemWeb: #"<sessionState cookieless="UseDeviceProfile" />"#),
        "/off": webConfig(systemWeb: #"<sessionState mode="Off" />"#),
        "/strict": webConfig(systemWeb: #"<sessionState cookieSameSite="Strict" />"#),
        "/samesitenone": webConfig(systemWeb: #"<sessionState cookieSameSite="None" />"#),
        "/ssl": webConfig(systemWeb: #"<httpCookies requireSSL="true" />"#),
        "/domain": webConfig(systemWeb: #"<httpCookies domain="example.test" />"#),
        "/named": webConfig(systemWeb: #"<sessionState cookieName="Custom_Sid" />"#),
        "/max": webConfig(asp: #"<session max="2" />"#),
        "/stale": webConfig(systemWeb: #"<httpRuntime executionTimeout="1" />"#),
        "/insecure": webConfig(asp: #"<session keepSessionIdSecure="false" />"#),
    ]

    /// Folders of the root application (path → web.config).
    static let standardFolders: [String: String] = [
        "/ro": webConfig(systemWeb: #"<pages enableSessionState="ReadOnly" />"#),
        "/nosession": webConfig(systemWeb: #"<pages enableSessionState="false" />"#),
        "/aspoff": webConfig(asp: #"<session allowSessionState="false" />"#),
        "/asptimeout": webConfig(asp: #"<session timeout="00:10:00" />"#),
    ]

    init(applications: [String: String] = standardApplications, folders: [String: String] = standardFolders) throws {
        let applicationElements = applications.keys.sorted().map { path in
            #"<application path="\#(path)"><virtualDirectory path="/" physicalPath="../www\#(path)" /></application>"#
        }
        try write("conf/applicationHost.config", """
            <configuration>
              <configSections>
                <sectionGroup name="system.webServer">
                  <section name="asp" overrideModeDefault="Deny" />
                </sectionGroup>
              </configSections>
              <system.applicationHost><sites>
                <site name="Test" id="1">
                  <application path="/"><virtualDirectory path="/" physicalPath="../www" /></application>
                  \(applicationElements.joined(separator: "\n      "))
                </site>
              </sites></system.applicationHost>
              <location path="Test" overrideMode="Allow">
                <system.webServer><asp /></system.webServer>
              </location>
            </configuration>
            """)
        try FileManager.default.createDirectory(atPath: root + "/www", withIntermediateDirectories: true)
        for (path, text) in applications.merging(folders, uniquingKeysWith: { $1 }) {
            try write("www\(path)/web.config", text)
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    /// A web.config with these `system.web` elements and `system.webServer/asp` children.
    static func webConfig(systemWeb: String = "", asp: String = "") -> String {
        var text = "<configuration>\n"
        if !systemWeb.isEmpty { text += "  <system.web>\n    \(systemWeb)\n  </system.web>\n" }
        if !asp.isEmpty { text += "  <system.webServer>\n    <asp>\(asp)</asp>\n  </system.webServer>\n" }
        return text + "</configuration>\n"
    }

    func write(_ relative: String, _ text: String) throws {
        let path = root + "/" + relative
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }
}

extension Fixture {
    /// The session probe (or another worker) serving `tree`, behind nginx.
    static func sessions(_ tree: SessionTree, worker: String = "session-probe", arguments: [String] = [], environment: [String: String] = [:]) throws -> Fixture {
        try Fixture(worker: worker, workerArguments: ["--config-dir", tree.configDirectory, "--threads", "32"] + arguments, environment: environment)
    }

    /// Stops the worker and nginx. What the thread sanitizer reported in the worker (when the
    /// suite runs under `--sanitize=thread`) is shown as a warning, not a failure: on Linux it
    /// reports accesses inside `Synchronization.Mutex.withLock` whenever the lock was contended
    /// (futexes are not instrumented), and the host's other modules still use it, so every report
    /// needs reading. The session modules lock with pthread mutexes, which it does see.
    func finish() {
        let reports = workerLog.components(separatedBy: "==================").filter { $0.contains("WARNING: ThreadSanitizer") }
        for report in reports {
            Issue.record("the thread sanitizer reported in the worker:\n\(report)", severity: .warning)
        }
        stop()
    }
}

/// A client that keeps cookies like a browser (name → value, no paths: every session cookie has
/// `Path=/`), for the request sequences of the session tests.
final class Browser {
    let port: Int
    var cookies: [String: String] = [:]
    var userAgent: String?

    init(_ fixture: Fixture, cookies: [String: String] = [:]) {
        port = fixture.port
        self.cookies = cookies
    }

    /// The `Cookie` header this browser sends, nil when it has none.
    var cookieHeader: String? {
        cookies.isEmpty ? nil : cookies.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")
    }

    var headers: [(String, String)] {
        var headers: [(String, String)] = []
        if let cookieHeader { headers.append(("Cookie", cookieHeader)) }
        if let userAgent { headers.append(("User-Agent", userAgent)) }
        return headers
    }

    /// GETs `target` with this browser's cookies and keeps the cookies it is given.
    @discardableResult
    func get(_ target: String) throws -> HTTPReply {
        let reply = try HTTPConnection(port: port).send("GET", target, headers: headers)
        for header in reply.headers("set-cookie") {
            let pair = header.prefix { $0 != ";" }
            guard let equals = pair.firstIndex(of: "=") else { continue }
            cookies[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        return reply
    }

    /// GETs a probe URL and parses its answer; anything but 200 is a failure.
    @discardableResult
    func probe(_ target: String) throws -> ProbeAnswer {
        try ProbeAnswer(get(target), target: target)
    }

    /// The value of this browser's `ASPSESSIONID…` cookie.
    var aspCookie: (name: String, value: String)? {
        cookies.first { $0.key.hasPrefix("ASPSESSIONID") }.map { ($0.key, $0.value) }
    }
}

/// The JSON answer of the probe app.
struct ProbeAnswer {
    let reply: HTTPReply
    let json: [String: Any]

    init(_ reply: HTTPReply, target: String = "") throws {
        guard reply.status == 200 else { throw Sockets.Failure("\(target): \(reply.status) \(reply.text)") }
        self.reply = reply
        guard let json = try JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any] else {
            throw Sockets.Failure("\(target): not a JSON object: \(reply.text)")
        }
        self.json = json
    }

    private func domain(_ name: String, _ phase: String) -> [String: Any]? {
        (json[name] as? [String: Any])?[phase] as? [String: Any]
    }

    /// The ASP.NET session after the operations (nil: no ASP.NET session in this request).
    var aspNet: Session? { domain("aspnet", "after").map(Session.init) }
    var aspNetBefore: Session? { domain("aspnet", "before").map(Session.init) }
    /// The classic ASP session after the operations.
    var asp: Session? { domain("asp", "after").map(Session.init) }
    var aspBefore: Session? { domain("asp", "before").map(Session.init) }
    var isASPNETNull: Bool { json["aspnet"] is NSNull }
    var isASPNull: Bool { json["asp"] is NSNull }

    var get: String? { json["get"] as? String }
    var aspGet: String? { json["aspGet"] as? String }
    var path: String? { json["path"] as? String }
    /// The process id of the worker that answered.
    var worker: Int { (json["worker"] as? NSNumber)?.intValue ?? -1 }
    var tStart: Int64 { (json["tStart"] as? NSNumber)?.int64Value ?? -1 }
    var tEnd: Int64 { (json["tEnd"] as? NSNumber)?.int64Value ?? -1 }
    var errors: [(op: String, error: String)] {
        (json["errors"] as? [[String: String]] ?? []).map { ($0["op"] ?? "", $0["error"] ?? "") }
    }
    func error(_ op: String) -> String? { errors.first { $0.op == op }?.error }

    var setCookies: [String] { reply.headers("set-cookie") }
    /// The whole `Set-Cookie` value for cookie `name`.
    func setCookie(_ name: String) -> String? { setCookies.first { $0.hasPrefix(name + "=") } }
    var aspSetCookie: String? { setCookies.first { $0.hasPrefix("ASPSESSIONID") } }

    /// One domain's session as the probe describes it.
    struct Session {
        let values: [String: Any]
        init(_ values: [String: Any]) { self.values = values }

        var id: String? { values["SessionID"] as? String }
        var number: Int? { (values["SessionID"] as? NSNumber)?.intValue }
        var isNew: Bool? { (values["IsNewSession"] as? NSNumber)?.boolValue }
        var timeout: Int? { (values["Timeout"] as? NSNumber)?.intValue }
        var mode: String? { values["Mode"] as? String }
        var isCookieless: Bool? { (values["IsCookieless"] as? NSNumber)?.boolValue }
        var cookieMode: String? { values["CookieMode"] as? String }
        var isReadOnly: Bool? { (values["IsReadOnly"] as? NSNumber)?.boolValue }
        var count: Int? { (values["Count"] as? NSNumber)?.intValue }
        var keys: [String: String] {
            var keys: [String: String] = [:]
            for pair in values["Keys"] as? [[Any]] ?? [] where pair.count == 2 {
                if let key = pair[0] as? String { keys[key] = "\(pair[1])" }
            }
            return keys
        }
    }
}

/// Runs `body` on a thread of its own (each request of a concurrency test has its own thread and
/// connection); `value()` waits for it, 60 s at most.
final class Pending<T: Sendable>: Sendable {
    private let result = Locked<Result<T, any Error>?>(nil)
    private let done = DispatchSemaphore(value: 0)

    init(_ body: @escaping @Sendable () throws -> T) {
        Thread.detachNewThread { [self] in
            let outcome = Result { try body() }
            result.withLock { $0 = outcome }
            done.signal()
        }
    }

    func value() throws -> T {
        guard done.wait(timeout: .now() + 60) == .success else { throw Sockets.Failure("a concurrent request did not finish within 60 s") }
        done.signal()
        return try result.withLock { $0! }.get()
    }
}

enum SessionTesting {
    /// Milliseconds since the epoch, rounded down (the probe's tStart/tEnd are on the same clock).
    static func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    /// A GET on a connection of its own, in the background.
    static func background(port: Int, _ target: String, cookie: String?, userAgent: String? = nil) -> Pending<HTTPReply> {
        var headers: [(String, String)] = []
        if let cookie { headers.append(("Cookie", cookie)) }
        if let userAgent { headers.append(("User-Agent", userAgent)) }
        let fixed = headers
        return Pending { try HTTPConnection(port: port).send("GET", target, headers: fixed) }
    }

    /// Sleeps `milliseconds` (only to let a request get going before the next is sent; no
    /// assertion depends on it).
    static func pause(_ milliseconds: Int) { usleep(useconds_t(milliseconds * 1000)) }

    static func isASPNETID(_ text: String) -> Bool { text.wholeMatch(of: /[a-z0-5]{24}/) != nil }
    static func isASPID(_ text: String) -> Bool { text.wholeMatch(of: /[A-Z]{24}/) != nil }

    /// The value of `name=value; …` (a Set-Cookie header).
    static func cookieValue(_ header: String?) -> String? {
        guard let header, let equals = header.firstIndex(of: "=") else { return nil }
        return String(header[header.index(after: equals)...].prefix { $0 != ";" })
    }

    static func cookieName(_ header: String?) -> String? {
        header.map { String($0.prefix { $0 != "=" }) }
    }
}
