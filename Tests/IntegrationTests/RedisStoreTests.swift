import Foundation
import Glibc
import Logging
import SessionState
import SessionStateTesting
import Testing
@testable import RedisSessionStore

/// The Redis store against a real `redis-server`: the store contract, the key layout and item
/// format of Microsoft's provider v5 (checked with a decoder written here from the format's
/// description, not the production one), sessions Microsoft's provider wrote, wake-ups by
/// pub/sub, authentication and databases, and a server that is down.
@Suite(.serialized)
struct RedisStoreTests {
    static let logger = Logger(label: "test")
    static let application = "/LM/W3SVC/1/ROOT/shop"

    static func store(_ server: RedisServer, _ change: (inout RedisStoreConfiguration) -> Void = { _ in }) -> RedisSessionStateStore {
        var configuration = RedisStoreConfiguration(endpoint: .tcp(host: "127.0.0.1", port: server.port), password: server.password, operationTimeout: .seconds(2))
        change(&configuration)
        return RedisSessionStateStore(configuration: configuration, logger: logger)
    }

    @Test(arguments: [false, true])
    func keepsTheContract(compression: Bool) throws {
        let server = try RedisServer()
        defer { server.stop() }
        let store = Self.store(server) { $0.compressionEnabled = compression }
        defer { store.close() }
        try SessionStateStoreConformance(store: store).checkAll()
    }

    @Test func overAUnixSocketWithAPasswordAndADatabase() throws {
        let server = try RedisServer(password: "s3cret-pw")
        defer { server.stop() }
        let store = Self.store(server) {
            $0.endpoint = .unix(path: server.socketPath)
            $0.databaseID = 3
        }
        defer { store.close() }
        try SessionStateStoreConformance(store: store).checkAll()
        // The sessions are in database 3.
        let client = try server.client()
        _ = try client.command("SELECT", "3")
        #expect((try client.command("DBSIZE")) != .integer(0))
        // A wrong password is the settings' fault (500, not a 503 that suggests waiting), and
        // the message carries no password.
        let wrong = Self.store(server) { $0.password = "not-it"; $0.retryTimeout = .zero }
        let error = #expect(throws: SessionStoreError.self) { _ = try wrong.getItem(SessionKey(application: Self.application, id: ASPNETSessionID.generate())) }
        #expect(error?.kind == .refused)
        #expect(error?.message.contains("refused the credentials") == true)
        #expect(error?.message.contains("not-it") == false)
    }

    /// Keys, TTLs and the item format of Microsoft's provider v5.
    @Test func keysAndFormatAreMicrosofts() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let store = Self.store(server) { $0.lockTimeout = .seconds(90) }
        defer { store.close() }
        let client = try server.client()
        let id = ASPNETSessionID.generate()
        let key = SessionKey(application: Self.application, id: id)
        var items = SessionItems()
        items["name"] = .string("alice")
        items["n"] = .int(7)
        items["ok"] = .bool(true)
        try store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(items: items, timeout: 25), lockID: nil, newItem: true)

        let prefix = "{/shop_\(id)}"
        #expect(try client.command("EXISTS", "\(prefix)_SessionStateItemCollection") == .integer(1))
        #expect(try client.command("GET", "\(prefix)_SessionTimeout").text == "1500")
        for suffix in ["_SessionStateItemCollection", "_SessionTimeout"] {
            let ttl = try #require(Int(try client.command("TTL", prefix + suffix).text ?? ""))
            #expect((1490...1500).contains(ttl), "\(suffix): \(ttl)")
        }
        // No lock key unless a read-write request holds the session.
        #expect(try client.command("EXISTS", "\(prefix)_WriteLock") == .integer(0))
        guard case .string(let blob) = try client.command("GET", "\(prefix)_SessionStateItemCollection") else {
            Issue.record("no item blob")
            return
        }
        let decoded = try ItemCollectionDecoder.decode(blob)
        #expect(decoded.map(\.key) == ["name", "n", "ok"])
        #expect(decoded[0].value == .string("alice") && decoded[1].value == .int32(7) && decoded[2].value == .boolean(true))

        // A read-write request holds the lock key: DateTime.Now ticks (local time), TTL the
        // execution timeout.
        let lookup = try store.getItemExclusive(key)
        guard case .found(_, let lock?, _) = lookup else {
            Issue.record("not locked: \(lookup)")
            return
        }
        let value = try #require(Int(try client.command("GET", "\(prefix)_WriteLock").text ?? ""))
        #expect(value == lock.rawValue)
        let now = Date()
        let localTicks = Int((now.timeIntervalSince1970 + Double(TimeZone.current.secondsFromGMT(for: now))) * 10_000_000) + 621_355_968_000_000_000
        #expect(abs(localTicks - value) < 50_000_000, "lock \(value), local ticks \(localTicks)")
        let lockTTL = try #require(Int(try client.command("TTL", "\(prefix)_WriteLock").text ?? ""))
        #expect((85...90).contains(lockTTL))
        try store.releaseItemExclusive(key, lockID: lock)
        #expect(try client.command("EXISTS", "\(prefix)_WriteLock") == .integer(0))

        // applicationName replaces the virtual path.
        let named = Self.store(server) { $0.applicationName = "Shared" }
        try named.setAndReleaseItemExclusive(key, data: SessionStateStoreData(items: items, timeout: 20), lockID: nil, newItem: true)
        #expect(try client.command("EXISTS", "{Shared_\(id)}_SessionStateItemCollection") == .integer(1))
    }

    /// A session as Microsoft's provider writes it (keys, item blob, timeout in seconds, and a
    /// lock held by an ASP.NET worker) is read by the store.
    @Test func readsSessionsMicrosoftsProviderWrote() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let store = Self.store(server)
        defer { store.close() }
        let client = try server.client()
        let id = ASPNETSessionID.generate()
        let prefix = "{/shop_\(id)}"
        let blob = ItemCollectionDecoder.encode([("Cart", .string("3 apples")), ("Visits", .int32(12))])
        _ = try client.command([Array("SET".utf8), Array("\(prefix)_SessionStateItemCollection".utf8), blob, Array("EX".utf8), Array("1800".utf8)])
        _ = try client.command("SET", "\(prefix)_SessionTimeout", "1800", "EX", "1800")
        let key = SessionKey(application: Self.application, id: id)
        guard case .found(let data, nil, .none) = try store.getItem(key) else {
            Issue.record("Microsoft's session is not read")
            return
        }
        #expect(data.timeout == 30)
        if case .string(let cart)? = data.items["cart"] { #expect(cart == "3 apples") } else { Issue.record("Cart") }
        if case .int(let visits)? = data.items["Visits"] { #expect(visits == 12) } else { Issue.record("Visits") }

        // An ASP.NET worker holds the lock (its DateTime.Now ticks, 2 s ago): held, with its age.
        let now = Date().addingTimeInterval(-2)
        let ticks = Int((now.timeIntervalSince1970 + Double(TimeZone.current.secondsFromGMT(for: now))) * 10_000_000) + 621_355_968_000_000_000
        _ = try client.command("SET", "\(prefix)_WriteLock", "\(ticks)", "EX", "110")
        guard case .locked(let age, let holder) = try store.getItemExclusive(key) else {
            Issue.record("the ASP.NET worker's lock is not seen")
            return
        }
        #expect(holder.rawValue == ticks)
        #expect(age >= .milliseconds(1500) && age < .seconds(30), "\(age)")
        // Broken with the holder's value (as after the execution timeout), it is ours.
        try store.releaseItemExclusive(key, lockID: holder)
        guard case .found(_, let lock?, _) = try store.getItemExclusive(key) else {
            Issue.record("not taken after the break")
            return
        }
        var items = data.items
        items["Visits"] = .int(13)
        try store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(items: items, timeout: 30), lockID: lock, newItem: false)
        guard case .string(let written) = try client.command("GET", "\(prefix)_SessionStateItemCollection") else {
            Issue.record("nothing written")
            return
        }
        let back = try ItemCollectionDecoder.decode(written)
        #expect(back.map(\.key) == ["Cart", "Visits"])
        #expect(back[1].value == .int32(13))

        // Uninitialized items carry Microsoft's marker, as text that its Enum.Parse reads.
        let fresh = SessionKey(application: Self.application, id: ASPNETSessionID.generate())
        try store.createUninitializedItem(fresh, timeout: 20)
        guard case .string(let marker) = try client.command("GET", "{/shop_\(fresh.id)}_SessionStateItemCollection") else {
            Issue.record("no uninitialized item")
            return
        }
        #expect(try ItemCollectionDecoder.decode(marker).first?.key == "SessionStateActions")
        #expect(try ItemCollectionDecoder.decode(marker).first?.value == .string("InitializeItem"))
    }

    /// A release publishes a wake-up only when someone waits, and a waiter in another process
    /// (another store instance, as another worker) returns at the release, not at its poll.
    @Test func releasesWakeWaitersOfOtherWorkers() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let holderWorker = Self.store(server), waiterWorker = Self.store(server)
        defer {
            holderWorker.close()
            waiterWorker.close()
        }
        let subscriber = try server.client()
        _ = try subscriber.command("SUBSCRIBE", holderWorker.channel)
        let key = SessionKey(application: Self.application, id: ASPNETSessionID.generate())
        try holderWorker.setAndReleaseItemExclusive(key, data: SessionStateStoreData(timeout: 20), lockID: nil, newItem: true)

        // Nobody waits: a lock and its release publish nothing.
        guard case .found(_, let quiet?, _) = try holderWorker.getItemExclusive(key) else { Issue.record("not locked"); return }
        try holderWorker.releaseItemExclusive(key, lockID: quiet)

        guard case .found(_, let lock?, _) = try holderWorker.getItemExclusive(key) else { Issue.record("not locked"); return }
        guard case .locked(_, let seen) = try waiterWorker.getItemExclusive(key) else { Issue.record("not held"); return }
        #expect(seen == lock)
        let releaser = Thread {
            Thread.sleep(forTimeInterval: 0.1)
            do { try holderWorker.releaseItemExclusive(key, lockID: lock) } catch { Issue.record("\(error)") }
        }
        releaser.start()
        waiterWorker.waitForRelease(key, lockID: lock, deadline: .now + .seconds(30))
        // The waiting worker heard of the other's release through pub/sub (its own signal
        // learns of no other way), so its wait ended at the release, not at the 500 ms poll.
        var heard = false
        for _ in 0..<100 where !heard {
            heard = waiterWorker.signal.lastRelease(of: "/shop_\(key.id)")?.cookie == lock.rawValue
            if !heard { Thread.sleep(forTimeInterval: 0.05) }
        }
        #expect(heard, "the release was not heard by the waiting worker")
        // Exactly one message reached a subscriber: the release that had a waiter.
        let message = try subscriber.command("PING")
        #expect(message == .array([.string(Array("message".utf8)), .string(Array(holderWorker.channel.utf8)), .string(Array("/shop_\(key.id) \(lock.rawValue)".utf8))]))
    }

    /// Redis down: reads fail as unavailable (503 upstream) within the timeouts, and the store
    /// works again when Redis is back, without a restart.
    @Test func aServerThatIsDownIsAnOutageAndRecovery() throws {
        let server = try RedisServer()
        defer { server.stop() }
        let store = Self.store(server) { $0.retryTimeout = .milliseconds(500) }
        defer { store.close() }
        let key = SessionKey(application: Self.application, id: ASPNETSessionID.generate())
        try store.setAndReleaseItemExclusive(key, data: SessionStateStoreData(timeout: 20), lockID: nil, newItem: true)
        server.kill()
        let start = ContinuousClock.now
        let error = #expect(throws: SessionStoreError.self) { _ = try store.getItem(key) }
        #expect(error?.isTransient == true)
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(!store.failsOpen)
        #expect(Self.store(server) { $0.throwOnError = false }.failsOpen)
        try server.start()
        let again = SessionKey(application: Self.application, id: ASPNETSessionID.generate())
        try store.setAndReleaseItemExclusive(again, data: SessionStateStoreData(timeout: 20), lockID: nil, newItem: true)
        guard case .found = try store.getItem(again) else { Issue.record("no recovery"); return }
    }

    /// A server that accepts and never answers: a timeout (503 upstream) within the operation
    /// timeout. One that answers with bytes that are not RESP: refused (500), not a hang.
    @Test func hungAndGarbledServersFailCleanly() throws {
        let key = SessionKey(application: Self.application, id: ASPNETSessionID.generate())
        let hung = Sockets.silentListener()
        defer { close(hung.fd) }
        let silent = RedisSessionStateStore(
            configuration: RedisStoreConfiguration(endpoint: .tcp(host: "127.0.0.1", port: hung.port), operationTimeout: .milliseconds(300), retryTimeout: .zero),
            logger: Self.logger)
        let start = ContinuousClock.now
        let timeout = #expect(throws: SessionStoreError.self) { _ = try silent.getItemExclusive(key) }
        #expect(timeout?.kind == .timeout, "\(String(describing: timeout))")
        #expect(ContinuousClock.now - start < .seconds(10))

        let garbled = Sockets.silentListener()
        defer { close(garbled.fd) }
        let server = Thread {
            let client = accept(garbled.fd, nil, nil)
            guard client >= 0 else { return }
            var request = [UInt8](repeating: 0, count: 4096)
            _ = recv(client, &request, request.count, 0)
            _ = "@@ not redis\r\n".withCString { send(client, $0, strlen($0), 0) }
            close(client)
        }
        server.start()
        let bad = RedisSessionStateStore(
            configuration: RedisStoreConfiguration(endpoint: .tcp(host: "127.0.0.1", port: garbled.port), operationTimeout: .seconds(2), retryTimeout: .zero),
            logger: Self.logger)
        let refused = #expect(throws: SessionStoreError.self) { _ = try bad.getItemExclusive(key) }
        #expect(refused?.kind == .refused, "\(String(describing: refused))")
    }
}

/// `SessionStateItemCollection.Serialize`'s form, written here from its description (count; the
/// null key's index or -1; the keys as .NET strings; each value's end offset; the values, each a
/// type byte and its payload), for the types the tests use: String (1), Int32 (2), Boolean (3).
enum ItemCollectionDecoder {
    enum Value: Equatable {
        case string(String)
        case int32(Int32)
        case boolean(Bool)
        case other(UInt8, [UInt8])
    }

    struct Failure: Error {}

    static func decode(_ bytes: [UInt8]) throws -> [(key: String, value: Value)] {
        var offset = 0
        func int32() throws -> Int32 {
            guard offset + 4 <= bytes.count else { throw Failure() }
            defer { offset += 4 }
            return Int32(bitPattern: UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24)
        }
        func string(_ source: [UInt8], _ position: inout Int) throws -> String {
            var length = 0, shift = 0
            while true {
                guard position < source.count else { throw Failure() }
                let byte = source[position]
                position += 1
                length |= Int(byte & 0x7F) << shift
                shift += 7
                if byte & 0x80 == 0 { break }
            }
            guard position + length <= source.count else { throw Failure() }
            defer { position += length }
            return String(decoding: source[position..<(position + length)], as: UTF8.self)
        }
        let count = Int(try int32())
        guard count > 0 else { return [] }
        guard try int32() == -1 else { throw Failure() }
        let keys = try (0..<count).map { _ in try string(bytes, &offset) }
        let ends = try (0..<count).map { _ in Int(try int32()) }
        let start = offset
        var previous = 0
        var result: [(key: String, value: Value)] = []
        for (key, end) in zip(keys, ends) {
            let slot = Array(bytes[(start + previous)..<(start + end)])
            previous = end
            var position = 1
            switch slot[0] {
            case 1: result.append((key, .string(try string(slot, &position))))
            case 2: result.append((key, .int32(Int32(bitPattern: UInt32(slot[1]) | UInt32(slot[2]) << 8 | UInt32(slot[3]) << 16 | UInt32(slot[4]) << 24))))
            case 3: result.append((key, .boolean(slot[1] != 0)))
            default: result.append((key, .other(slot[0], Array(slot.dropFirst()))))
            }
        }
        guard start + previous == bytes.count else { throw Failure() }
        return result
    }

    static func encode(_ items: [(String, Value)]) -> [UInt8] {
        func int32(_ value: Int32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
        func string(_ text: String) -> [UInt8] {
            var length = text.utf8.count, prefix: [UInt8] = []
            repeat {
                prefix.append(UInt8(length & 0x7F) | (length > 0x7F ? 0x80 : 0))
                length >>= 7
            } while length > 0
            return prefix + Array(text.utf8)
        }
        var out = int32(Int32(items.count)) + int32(-1)
        var values: [UInt8] = [], ends: [UInt8] = []
        for (key, value) in items {
            out += string(key)
            switch value {
            case .string(let text): values += [1] + string(text)
            case .int32(let number): values += [2] + int32(number)
            case .boolean(let flag): values += [3, flag ? 1 : 0]
            case .other(let type, let payload): values += [type] + payload
            }
            ends += int32(Int32(values.count))
        }
        return out + ends + values
    }
}
