import Dispatch
import Foundation
import Testing

@testable import SessionState

struct SessionObjectTests {
    static let oneYear = "For InProc and StateServer modes, the session timeout value cannot be larger than one year."
    static let notPositive = "The argument to SetTimeout must be greater than 0."

    static func aspnet(mode: ASPNETSessionMode = .inProc, readOnly: Bool = false, timeout: Int = 20, pairs: KeyValuePairs<String, SessionValue> = [:]) -> ASPNETSession {
        let rule = ASPNETSession.timeoutRule(mode: mode)
        var stored = items(pairs)
        stored.markClean() // as a store hands it out
        let contents = SessionContents(data: SessionStateStoreData(items: stored, timeout: timeout), isNew: false, isReadOnly: readOnly, timeoutRange: rule.0, timeoutMessage: rule.1)
        return ASPNETSession(contents: contents, sessionID: "abcdefghijklmnopqrstuvwx", mode: mode, cookieMode: .useUri, isCookieless: true)
    }

    static func asp(readOnly: Bool = false) -> ClassicASPSession {
        let contents = SessionContents(data: SessionStateStoreData(timeout: 20), isNew: true, isReadOnly: readOnly, timeoutRange: ClassicASPSession.timeoutRule.0, timeoutMessage: ClassicASPSession.timeoutRule.1)
        return ClassicASPSession(contents: contents, cookieValue: "JFDOAMPAGACBDMLNLFBCCNCI")
    }

    @Test func typedSettersAndGettersRoundTrip() throws {
        let session = Self.aspnet()
        let date = Date(timeIntervalSinceReferenceDate: 123.456)
        let cart = Cart(lines: ["a"], total: 2, note: "gift")
        try session.set("s", "text")
        try session.set("i", 42)
        try session.set("d", 2.5)
        try session.set("b", true)
        try session.set("t", date)
        try session.set("raw", Data([9, 8]))
        try session.set("cart", codable: cart)
        try session.set("v", SessionValue.int(-1))

        #expect(session.string("S") == "text")
        #expect(session.int("I") == 42)
        #expect(session.double("d") == 2.5)
        #expect(session.double("i") == 42) // an Int reads as a Double
        #expect(session.bool("B") == true)
        #expect(session.date("T") == date)
        #expect(session.data("RAW") == Data([9, 8]))
        #expect(session.value("Cart", as: Cart.self) == cart)
        #expect(session.int("v") == -1)
        #expect(session.count == 8)
        #expect(session.keys == ["s", "i", "d", "b", "t", "raw", "cart", "v"])
        #expect(session.elements.map(\.key) == session.keys)
        #expect(session["missing"] == nil)

        // Wrong types give nil, never a conversion.
        #expect(session.int("s") == nil)
        #expect(session.string("i") == nil)
        #expect(session.bool("i") == nil)
        #expect(session.int("d") == nil)
        #expect(session.date("d") == nil)
        #expect(session.data("s") == nil)
        #expect(session.value("s", as: String.self) == nil)
        #expect(session.value("cart", as: [String].self) == nil)
        #expect(session.double("s") == nil)

        // Overwrite with another type, remove, remove all.
        try session.set("S", 7)
        #expect(session.string("s") == nil && session.int("s") == 7)
        #expect(session.keys.first == "s")
        try session.remove("I")
        #expect(session.int("i") == nil && session.count == 7)
        try session.removeAll()
        #expect(session.count == 0 && session.keys.isEmpty)
    }

    @Test func identityPropertiesOfBothDomains() {
        let aspnet = Self.aspnet(mode: .sqlServer)
        #expect(aspnet.sessionID == "abcdefghijklmnopqrstuvwx")
        #expect(aspnet.mode == .sqlServer)
        #expect(aspnet.cookieMode == .useUri)
        #expect(aspnet.isCookieless)
        #expect(!aspnet.isNewSession)
        #expect(!aspnet.isAbandoned)
        #expect(aspnet.timeout == 20)

        let asp = Self.asp()
        #expect(asp.cookieValue == "JFDOAMPAGACBDMLNLFBCCNCI")
        #expect(asp.sessionID == ASPSessionID.number(of: "JFDOAMPAGACBDMLNLFBCCNCI"))
        #expect(asp.sessionID > 0)
        #expect(asp.isNewSession)
    }

    struct TimeoutCase: Sendable, CustomTestStringConvertible {
        var mode: ASPNETSessionMode
        var minutes: Int
        var error: String?
        var testDescription: String { "\(mode.rawValue) \(minutes)" }
    }

    @Test(arguments: [
        TimeoutCase(mode: .inProc, minutes: 0, error: notPositive),
        TimeoutCase(mode: .inProc, minutes: -1, error: notPositive),
        TimeoutCase(mode: .inProc, minutes: .min, error: notPositive),
        TimeoutCase(mode: .inProc, minutes: 1, error: nil),
        TimeoutCase(mode: .inProc, minutes: 525_600, error: nil),
        TimeoutCase(mode: .inProc, minutes: 525_601, error: oneYear),
        TimeoutCase(mode: .inProc, minutes: .max, error: oneYear),
        TimeoutCase(mode: .stateServer, minutes: 525_600, error: nil),
        TimeoutCase(mode: .stateServer, minutes: 525_601, error: oneYear),
        TimeoutCase(mode: .stateServer, minutes: 0, error: notPositive),
        TimeoutCase(mode: .sqlServer, minutes: 525_601, error: nil),
        TimeoutCase(mode: .sqlServer, minutes: Int(Int32.max), error: nil),
        TimeoutCase(mode: .sqlServer, minutes: Int(Int32.max) + 1, error: "The session timeout value cannot be larger than 2147483647 minutes."),
        TimeoutCase(mode: .sqlServer, minutes: 0, error: notPositive),
        TimeoutCase(mode: .custom, minutes: 525_601, error: nil),
        TimeoutCase(mode: .custom, minutes: -5, error: notPositive),
    ])
    func aspnetTimeoutLimits(test: TimeoutCase) throws {
        let session = Self.aspnet(mode: test.mode)
        if let message = test.error {
            #expect(throws: SessionError.invalidTimeout(message)) { try session.setTimeout(test.minutes) }
            #expect(SessionError.invalidTimeout(message).description == message)
            #expect(session.timeout == 20)
            #expect(!session.contents.read(\.timeoutChanged))
        } else {
            try session.setTimeout(test.minutes)
            #expect(session.timeout == test.minutes)
            #expect(session.contents.read(\.timeoutChanged))
        }
    }

    @Test(arguments: [(0, false), (-1, false), (1, true), (20, true), (1440, true), (1441, false), (525_600, false)])
    func aspTimeoutIsOneToFourteenFortyMinutes(minutes: Int, allowed: Bool) throws {
        let session = Self.asp()
        if allowed {
            try session.setTimeout(minutes)
            #expect(session.timeout == minutes)
        } else {
            #expect(throws: SessionError.invalidTimeout("Session.Timeout must be between 1 and 1440 minutes; \(minutes) is not.")) {
                try session.setTimeout(minutes)
            }
            #expect(session.timeout == 20)
        }
    }

    @Test func readOnlySessionsRefuseChangesButMayBeAbandoned() {
        let session = Self.aspnet(readOnly: true, pairs: ["k": .string("v")])
        #expect(session.isReadOnly)
        #expect(throws: SessionError.readOnly) { try session.set("k", "w") }
        #expect(throws: SessionError.readOnly) { try session.set("new", 1) }
        #expect(throws: SessionError.readOnly) { try session.set("c", codable: [1]) }
        #expect(throws: SessionError.readOnly) { try session.remove("k") }
        #expect(throws: SessionError.readOnly) { try session.removeAll() }
        #expect(throws: SessionError.readOnly) { try session.setTimeout(30) }
        // A timeout out of range is reported as such, even read-only.
        #expect(throws: SessionError.invalidTimeout(Self.notPositive)) { try session.setTimeout(0) }
        #expect(session.string("k") == "v")
        #expect(session.count == 1)
        #expect(session.timeout == 20)
        #expect(!session.contents.read(\.items.isDirty))
        session.abandon()
        #expect(session.isAbandoned)

        let asp = Self.asp(readOnly: true)
        #expect(throws: SessionError.readOnly) { try asp.set("x", 1) }
    }

    @Test func sessionStartMayWriteInAReadOnlyRequest() throws {
        let session = Self.aspnet(readOnly: true)
        session.contents.writable {
            #expect(throws: Never.self) { try session.set("started", true) }
        }
        #expect(session.bool("started") == true)
        #expect(session.isReadOnly)
        #expect(throws: SessionError.readOnly) { try session.set("later", true) }
        // And writable() leaves a read-write session read-write.
        let rw = Self.aspnet()
        rw.contents.writable {}
        try rw.set("x", 1)
        #expect(!rw.isReadOnly)
    }

    @Test func readsLeaveTheSessionCleanAndWritesMakeItDirty() throws {
        let session = Self.aspnet(pairs: ["a": .int(1)])
        #expect(!session.contents.read(\.items.isDirty))
        _ = session.int("a")
        _ = session["A"]
        _ = session.keys
        _ = session.elements
        _ = session.count
        _ = session.value("a", as: Int.self)
        #expect(!session.contents.read(\.items.isDirty))
        try session.set("a", 1)
        #expect(session.contents.read(\.items.isDirty))
    }

    @Test func concurrentWritersDoNotLoseItems() {
        let session = Self.aspnet()
        let threads = 8
        let perThread = 500
        let done = (0..<threads).map { thread in
            spawn {
                for index in 0..<perThread { try? session.set("t\(thread)-\(index)", index) }
            }
        }
        for semaphore in done { #expect(semaphore.wait(seconds: 10)) }
        #expect(session.count == threads * perThread)
        #expect(session.int("T3-499") == 499)
    }

    @Test func sessionAccessIsOrdered() {
        #expect(SessionAccess.none < .readOnly)
        #expect(SessionAccess.readOnly < .readWrite)
        #expect(!(SessionAccess.readWrite < .none))
        #expect([SessionAccess.readWrite, .none, .readOnly].max() == .readWrite)
        #expect([SessionAccess.readWrite, .none, .readOnly].sorted() == [.none, .readOnly, .readWrite])
    }
}
