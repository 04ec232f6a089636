import NIOCore
import Testing
@testable import SessionStateServer

/// The request side of aspnet_state's protocol (verbs, headers, the key) and its framing.
struct StateRequestTests {
    static func frames(_ text: String, maxBody: Int = 100) -> [StateFrame] {
        frames(Array(text.utf8), maxBody: maxBody)
    }

    static func frames(_ bytes: [UInt8], maxBody: Int = 100) -> [StateFrame] {
        let decoder = StateRequestDecoder(maxHeadSize: 1024, maxBodySize: maxBody)
        var buffer = ByteBuffer(bytes: bytes)
        var frames: [StateFrame] = []
        while let frame = decoder.nextFrame(&buffer) {
            frames.append(frame)
            if case .invalid = frame { break }
        }
        return frames
    }

    static func request(_ text: String) -> StateRequest? {
        guard case .request(let request)? = frames(text).first else { return nil }
        return request
    }

    static func invalid(_ text: String) -> String? {
        guard case .invalid(_, let reason)? = frames(text).first else { return nil }
        return reason
    }

    /// ASP.NET's client URL-encodes the whole key and sends it without a leading `/`.
    static let target = "%2fLM%2fW3SVC%2f1%2fROOT%2fapp(abc%2b%2fdef%3d)%2fsessionid"
    static let key = "/LM/W3SVC/1/ROOT/app(abc+/def=)/sessionid"

    @Test func theKeyIsDecodedWithOrWithoutALeadingSlash() {
        #expect(Self.request("GET \(Self.target) HTTP/1.1\r\nHost: x\r\n\r\n")?.key == Self.key)
        #expect(Self.request("GET /\(Self.target) HTTP/1.1\r\n\r\n")?.key == Self.key)
        // ASP.NET 1.1 clients prefixed one more `/`.
        #expect(Self.request("GET //LM/W3SVC/1/ROOT(x)/s HTTP/1.1\r\n\r\n")?.key == "/LM/W3SVC/1/ROOT(x)/s")
        #expect(Self.invalid("GET %2 HTTP/1.1\r\n\r\n") == "malformed request target")
        #expect(Self.invalid("GET %ff%fe HTTP/1.1\r\n\r\n") == "malformed request target")
    }

    @Test func everyOperationOfTheProtocol() {
        let t = Self.target
        #expect(Self.request("GET \(t) HTTP/1.1\r\n\r\n")?.operation == .get(acquire: false, waitMilliseconds: nil))
        #expect(Self.request("GET \(t) HTTP/1.1\r\nExclusive: acquire\r\n\r\n")?.operation == .get(acquire: true, waitMilliseconds: nil))
        #expect(Self.request("GET \(t) HTTP/1.1\r\nExclusive: Acquire\r\n\r\n")?.operation == .get(acquire: true, waitMilliseconds: nil))
        #expect(Self.request("GET \(t) HTTP/1.1\r\nExclusive: acquire\r\nX-SessionHost-Wait: 500\r\n\r\n")?.operation == .get(acquire: true, waitMilliseconds: 500))
        #expect(Self.request("GET \(t) HTTP/1.1\r\nExclusive: release\r\nLockCookie: 4\r\n\r\n")?.operation == .release(lockCookie: 4))
        #expect(Self.request("GET \(t) HTTP/1.1\r\nexclusive: RELEASE\r\nLock-Cookie: 4\r\n\r\n")?.operation == .release(lockCookie: 4))
        let put = Self.request("PUT \(t) HTTP/1.1\r\nTimeout: 30\r\nLockCookie: 2\r\nExtraFlags: 0\r\nContent-Length: 3\r\n\r\nabc")
        #expect(put?.operation == .put(timeout: 30, lockCookie: 2, uninitialized: false, strict: false))
        #expect(put?.key == Self.key && put?.body == Array("abc".utf8) && put?.keepAlive == true)
        #expect(Self.request("PUT \(t) HTTP/1.1\r\nTimeout: 20\r\nExtraFlags: 1\r\nContent-Length: 0\r\n\r\n")?.operation == .put(timeout: 20, lockCookie: nil, uninitialized: true, strict: false))
        // No Timeout: 20 minutes.
        #expect(Self.request("PUT \(t) HTTP/1.1\r\nContent-Length: 0\r\n\r\n")?.operation == .put(timeout: 20, lockCookie: nil, uninitialized: false, strict: false))
        #expect(Self.request("PUT \(t) HTTP/1.1\r\nX-SessionHost-Strict-Lock: 1\r\nLockCookie: 5\r\nContent-Length: 0\r\n\r\n")?.operation == .put(timeout: 20, lockCookie: 5, uninitialized: false, strict: true))
        #expect(Self.request("DELETE \(t) HTTP/1.1\r\nLockCookie: 3\r\n\r\n")?.operation == .delete(lockCookie: 3))
        #expect(Self.request("HEAD \(t) HTTP/1.1\r\n\r\n")?.operation == .head)
    }

    @Test func badHeadersAndVerbsAre400() {
        let t = Self.target
        #expect(Self.invalid("PUT \(t) HTTP/1.1\r\nTimeout: 525601\r\nContent-Length: 0\r\n\r\n") == "Invalid header Timeout")
        #expect(Self.request("PUT \(t) HTTP/1.1\r\nTimeout: 525600\r\nContent-Length: 0\r\n\r\n") != nil)
        #expect(Self.invalid("PUT \(t) HTTP/1.1\r\nTimeout: -1\r\nContent-Length: 0\r\n\r\n") == "Invalid header Timeout")
        #expect(Self.invalid("PUT \(t) HTTP/1.1\r\nTimeout: ten\r\nContent-Length: 0\r\n\r\n") == "Invalid header Timeout")
        #expect(Self.invalid("DELETE \(t) HTTP/1.1\r\nLockCookie: x\r\n\r\n") == "Invalid header LockCookie")
        #expect(Self.invalid("GET \(t) HTTP/1.1\r\nExclusive: steal\r\n\r\n") == "Invalid header Exclusive")
        #expect(Self.invalid("GET \(t) HTTP/1.1\r\nExclusive: release\r\n\r\n") == "Invalid header LockCookie")
        #expect(Self.invalid("POST \(t) HTTP/1.1\r\nContent-Length: 0\r\n\r\n") == "unknown verb")
        #expect(Self.invalid("GET \(t)\r\n\r\n") == "malformed request line")
        #expect(Self.invalid("GET \(t) SPDY/3\r\n\r\n") == "malformed request line")
        #expect(Self.invalid("GET \(t) HTTP/1.1\r\nno colon\r\n\r\n") == "malformed header line")
        #expect(Self.invalid("PUT \(t) HTTP/1.1\r\nContent-Length: -4\r\n\r\n") == "Invalid header Content-Length")
        #expect(Self.invalid("PUT \(t) HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == "Transfer-Encoding is not supported (send Content-Length)")
    }

    @Test func limitsAreEnforcedBeforeBuffering() {
        #expect(Self.frames("PUT k HTTP/1.1\r\nContent-Length: 101\r\n\r\n") == [.invalid(status: 413, reason: "request body of 101 bytes; this server accepts at most 100")])
        // A head that never ends is refused once it passes the limit, not buffered forever.
        #expect(Self.frames("GET k HTTP/1.1\r\nX-Filler: " + String(repeating: "a", count: 2000)) == [.invalid(status: 431, reason: "request head larger than 1024 bytes")])
    }

    @Test func pipelinedRequestsComeOutInOrderAndPartialOnesWait() {
        let three = "GET a HTTP/1.1\r\n\r\nPUT b HTTP/1.1\r\nContent-Length: 2\r\n\r\nxyHEAD c HTTP/1.1\r\n\r\n"
        let keys = Self.frames(three).compactMap { frame -> String? in
            if case .request(let request) = frame { return request.key } else { return nil }
        }
        #expect(keys == ["a", "b", "c"])
        // Every split of the bytes: nothing until a request is whole.
        let bytes = Array("PUT b HTTP/1.1\r\nContent-Length: 2\r\n\r\nxy".utf8)
        for cut in 0..<bytes.count {
            #expect(Self.frames(Array(bytes[..<cut])).isEmpty, "cut at \(cut)")
        }
        #expect(Self.frames(bytes).count == 1)
    }

    @Test func keepAliveFollowsTheHTTPVersion() {
        #expect(Self.request("GET k HTTP/1.1\r\n\r\n")?.keepAlive == true)
        #expect(Self.request("GET k HTTP/1.1\r\nConnection: close\r\n\r\n")?.keepAlive == false)
        #expect(Self.request("GET k HTTP/1.0\r\n\r\n")?.keepAlive == false)
        #expect(Self.request("GET k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")?.keepAlive == true)
    }
}
