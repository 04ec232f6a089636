/// One request of ASP.NET's state-server protocol: an HTTP/1.x request whose target is the
/// URL-encoded session key (`OutOfProcSessionStateStore` sends it without a leading `/`).
package struct StateRequest: Sendable, Equatable {
    package enum Operation: Sendable, Equatable {
        /// GET; `acquire` with `Exclusive: acquire`. `waitMilliseconds`: SessionHost's wake-up
        /// extension (`X-SessionHost-Wait: <ms>`), how long to hold the answer while the lock is
        /// held (aspnet_state ignores the header and answers 423 at once). `waitOnly`
        /// (`X-SessionHost-Wait-Only: 1`): the answer after the wait carries no item (the waiter
        /// only wants to know that the lock is gone).
        case get(acquire: Bool, waitMilliseconds: Int?, waitOnly: Bool = false)
        /// GET with `Exclusive: release`.
        case release(lockCookie: Int)
        /// PUT: `ExtraFlags: 1` inserts an uninitialized item only if none exists.
        /// `strict`: SessionHost's `X-SessionHost-Strict-Lock: 1`, refuse a write by anyone but
        /// the holder of the current lock cookie.
        case put(timeout: Int, lockCookie: Int?, uninitialized: Bool, strict: Bool)
        /// `strict`: SessionHost's `X-SessionHost-Strict-Lock: 1`, as for PUT.
        case delete(lockCookie: Int?, strict: Bool = false)
        /// HEAD: ResetItemTimeout.
        case head
    }

    package var operation: Operation
    /// The session key: the request target without one leading `/`, URL-decoded.
    package var key: String
    package var body: [UInt8]
    /// Whether the connection stays open after the answer (HTTP/1.1 unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive`).
    package var keepAlive: Bool

    /// The most minutes a session may live (`Timeout` header), as aspnet_state.
    package static let maxTimeout = 525_600

    /// A request the server answers with 400 and then closes the connection.
    package struct Invalid: Error, Sendable, Equatable {
        package var reason: String
    }

    /// The request head: its request line, its headers by lower-cased name (the first of a
    /// repeated one), and `body` as framed by `Content-Length`.
    package init(requestLine: Substring, headers: [String: Substring], body: [UInt8]) throws(Invalid) {
        let parts = requestLine.utf8.split(separator: UInt8(ascii: " ")).map { Substring($0) }
        guard parts.count == 3, parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else {
            throw Invalid(reason: "malformed request line")
        }
        // `headers` is keyed by lower-cased names; `display` is the name in error messages.
        func header(_ name: String) -> Substring? {
            headers[name]
        }
        func integer(_ name: String, _ display: String) throws(Invalid) -> Int? {
            guard let text = header(name) else { return nil }
            guard let value = Int(text), value >= 0 else { throw Invalid(reason: "Invalid header \(display)") }
            return value
        }
        let connection = header("connection")?.lowercased()
        keepAlive = parts[2] == "HTTP/1.1" ? connection != "close" : connection == "keep-alive"
        // ASP.NET's client URL-encodes the whole key (`/LM/W3SVC/…` becomes `%2fLM%2fW3SVC…`) and
        // sends no leading `/`; a client that adds one (as HTTP wants, or as ASP.NET 1.1 did in
        // front of an unencoded key) has it removed, so both reach the same session.
        let target = parts[1].hasPrefix("/") ? parts[1].dropFirst() : parts[1]
        guard let decoded = Self.percentDecode(target) else { throw Invalid(reason: "malformed request target") }
        key = decoded
        guard !key.isEmpty else { throw Invalid(reason: "empty session key") }
        self.body = body
        // Both spellings: the protocol's examples write Lock-Cookie, aspnet_state answers LockCookie.
        var lockCookie = try integer("lockcookie", "LockCookie")
        if lockCookie == nil { lockCookie = try integer("lock-cookie", "LockCookie") }
        switch parts[0] {
        case "GET":
            switch header("exclusive")?.lowercased() {
            case nil:
                operation = .get(acquire: false, waitMilliseconds: try integer("x-sessionhost-wait", "X-SessionHost-Wait"), waitOnly: header("x-sessionhost-wait-only") == "1")
            case "acquire":
                operation = .get(acquire: true, waitMilliseconds: try integer("x-sessionhost-wait", "X-SessionHost-Wait"))
            case "release":
                guard let lockCookie else { throw Invalid(reason: "Invalid header LockCookie") }
                operation = .release(lockCookie: lockCookie)
            default:
                throw Invalid(reason: "Invalid header Exclusive")
            }
        case "PUT":
            let timeout = try integer("timeout", "Timeout") ?? 20
            guard timeout <= Self.maxTimeout else { throw Invalid(reason: "Invalid header Timeout") }
            let flags = try integer("extraflags", "ExtraFlags") ?? 0
            operation = .put(timeout: timeout, lockCookie: lockCookie, uninitialized: flags & 1 != 0, strict: header("x-sessionhost-strict-lock") == "1")
        case "DELETE":
            operation = .delete(lockCookie: lockCookie, strict: header("x-sessionhost-strict-lock") == "1")
        case "HEAD":
            operation = .head
        default:
            throw Invalid(reason: "unknown verb")
        }
    }

    /// `%XX` decoding of the whole target (`HttpUtility.UrlEncode` also turns spaces into `+`).
    static func percentDecode(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
                bytes.append(high << 4 | low)
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            default:
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var text = self
        while text.first == " " || text.first == "\t" { text.removeFirst() }
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return text
    }
}
