import Foundation
import SessionHost
import SessionHostCLI
import SessionState
import RedisSessionStore
import SQLSessionStore
import StateServerSessionStore

/// The probe app: shows what both session domains do for any folder of the site, so tests (and
/// anyone checking behaviour) can drive them over HTTP. It registers no Session_Start handler.
///
/// `D/probe` uses both sessions read-write, `D/probe-ro` the ASP.NET session read-only (ASP
/// read-write), `D/probe-none` neither. Query operations, in this order: `timeout=N`,
/// `asp-timeout=N`, `set=K&v=V[&type=string|int|bool|double]`, `asp-set=K&asp-v=V`, `get=K`,
/// `incr=K` (adds 1 to an Int), `asp-get=K`, `sleep=MS`, `clear=1`, `abandon=1`, `asp-abandon=1`. The answer is JSON (see
/// README, "The probe app"). It links the StateServer, SQLServer and Redis stores, and a small
/// Custom store of its own (`SessionProbe.MemoryStore`), so any mode can be probed.
@main
struct SessionProbe {
    static func main() async {
        var routes = Routes()
        routes.named("probe", sessions: [.aspNet(.readWrite), .classic], probe)
        routes.named("probe-ro", sessions: [.aspNet(.readOnly), .classic], probe)
        routes.named("probe-none", probe)
        await SessionHostMain.run(
            routes: routes, sessions: SessionOptions(
                stores: [StateServerSessionStore.factory, SQLSessionStateStore.factory, RedisSessionStateStore.factory, memoryStore],
                partitionResolvers: [partitionResolver], idManagers: [signedIDManager]),
            abstract: "The session probe: reports and drives both session domains of any folder.")
    }

    @Sendable
    static func probe(_ request: Request) -> Response {
        let tStart = milliseconds()
        let before = (aspNet: request.session.map(describe), asp: request.classicSession.map(describe))
        var errors: [[String: String]] = []
        var getValue: Any = NSNull()
        var aspGetValue: Any = NSNull()

        /// Runs one operation; a failure is reported and the others still run.
        func run(_ op: String, _ body: () throws -> Void) {
            do { try body() } catch { errors.append(["op": op, "error": "\(error)"]) }
        }
        func number(_ name: String) throws -> Int {
            guard let text = request.query(name), let value = Int(text) else { throw ProbeError("\(name) must be an integer") }
            return value
        }

        if request.query("timeout") != nil {
            run("timeout") { try request.requireSession().setTimeout(try number("timeout")) }
        }
        if request.query("asp-timeout") != nil {
            run("asp-timeout") { try request.requireClassicSession().setTimeout(try number("asp-timeout")) }
        }
        if let key = request.query("set") {
            run("set") { try request.requireSession().set(key, try typedValue(request.query("v") ?? "", type: request.query("type") ?? "string")) }
        }
        if let key = request.query("asp-set") {
            run("asp-set") { try request.requireClassicSession().set(key, request.query("asp-v") ?? "") }
        }
        if let key = request.query("incr") {
            // Read-modify-write of an Int (the counter of concurrency tests).
            run("incr") {
                let session = try request.requireSession()
                try session.set(key, (session.int(key) ?? 0) + 1)
            }
        }
        if let key = request.query("get") {
            run("get") { getValue = try request.requireSession()[key]?.jsonValue ?? NSNull() }
        }
        if let key = request.query("asp-get") {
            run("asp-get") { aspGetValue = try request.requireClassicSession()[key]?.jsonValue ?? NSNull() }
        }
        if request.query("sleep") != nil {
            run("sleep") { usleep(useconds_t(max(0, min(try number("sleep"), 600_000))) * 1000) }
        }
        if request.query("clear") == "1" {
            run("clear") { try request.requireSession().removeAll() }
        }
        if request.query("abandon") == "1" {
            run("abandon") { try request.requireSession().abandon() }
        }
        if request.query("asp-abandon") == "1" {
            run("asp-abandon") { try request.requireClassicSession().abandon() }
        }

        let answer: [String: Any] = [
            "aspnet": request.session.map { ["before": before.aspNet ?? NSNull(), "after": describe($0)] as [String: Any] } ?? NSNull(),
            "asp": request.classicSession.map { ["before": before.asp ?? NSNull(), "after": describe($0)] as [String: Any] } ?? NSNull(),
            "get": getValue,
            "aspGet": aspGetValue,
            "errors": errors,
            "path": request.path,
            "worker": Int(getpid()),
            "tStart": tStart,
            "tEnd": milliseconds(),
        ]
        let body = (try? JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(headers: [.contentType: "application/json"], body: .bytes(Array(body)))
    }

    static func describe(_ session: ASPNETSession) -> [String: Any] {
        [
            "SessionID": session.sessionID,
            "IsNewSession": session.isNewSession,
            "Timeout": session.timeout,
            "Mode": session.mode.rawValue,
            "IsCookieless": session.isCookieless,
            "CookieMode": session.cookieMode.rawValue,
            "IsReadOnly": session.isReadOnly,
            "Count": session.count,
            "Keys": session.elements.map { [$0.key, $0.value.jsonValue] },
        ]
    }

    static func describe(_ session: ClassicASPSession) -> [String: Any] {
        [
            "SessionID": session.sessionID,
            "IsNewSession": session.isNewSession,
            "Timeout": session.timeout,
            "Count": session.count,
            "Keys": session.elements.map { [$0.key, $0.value.jsonValue] },
        ]
    }

    /// `partitionResolverType="SessionProbe.PartitionResolver"`: spreads sessions over the
    /// connection strings listed (comma-separated) in `PROBE_PARTITIONS`, by the first character
    /// of the session ID.
    /// An app's own Custom store, as the README shows one: `<add name="…" type="SessionProbe.MemoryStore"
    /// label="…"/>`; any other attribute is refused, as ASP.NET providers do.
    static let memoryStore = SessionStoreFactory(
        mode: .custom, providerTypes: ["SessionProbe.MemoryStore"],
        validate: { settings in
            settings.parameters.keys.filter { !["name", "description", "label"].contains($0) }.sorted().map {
                SessionStoreSettingsError(attribute: $0, message: "Unrecognized attribute '\($0)'. Note that attribute names are case-sensitive.")
            }
        },
        make: { _, _ in InProcSessionStore() })

    /// An app's own ID manager (`sessionIDManagerType="SessionProbe.SignedIDManager"`): IDs
    /// `p-` and 30 hex digits from the CSPRNG, carried with a `.ok` suffix that decoding checks
    /// (a stand-in for a signature).
    static let signedIDManager = SessionIDManager(
        typeName: "SessionProbe.SignedIDManager",
        create: {
            var generator = SystemRandomNumberGenerator()
            return "p-" + (0..<15).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        },
        validate: { $0.count == 32 && $0.hasPrefix("p-") && $0.dropFirst(2).allSatisfy(\.isHexDigit) },
        encode: { $0 + ".ok" },
        decode: { $0.hasSuffix(".ok") ? String($0.dropLast(3)) : nil })

    static let partitionResolver = SessionPartitionResolver(typeName: "SessionProbe.PartitionResolver") { id in
        let partitions = (ProcessInfo.processInfo.environment["PROBE_PARTITIONS"] ?? "").split(separator: ",").map(String.init)
        guard !partitions.isEmpty, let first = id.utf8.first else { return nil }
        return partitions[Int(first) % partitions.count]
    }

    /// `v` as the `type` asked for, so that tests see what crosses a store's wire.
    static func typedValue(_ text: String, type: String) throws -> SessionValue {
        switch type {
        case "string": return .string(text)
        case "int": if let value = Int(text) { return .int(value) }
        case "bool": if let value = Bool(text) { return .bool(value) }
        case "double": if let value = Double(text) { return .double(value) }
        default: throw ProbeError("type must be string, int, bool or double")
        }
        throw ProbeError("'\(text)' is not a valid \(type)")
    }

    static func milliseconds() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded())
    }

    struct ProbeError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
