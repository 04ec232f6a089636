import Foundation
import Glibc
import Locking
import SessionState

/// One answer of a state server.
struct StateServerReply: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]
    /// The server asked to close the connection after this answer.
    var closes: Bool

    /// `name` in lower case (header names are stored lower-cased).
    func header(_ name: String) -> String? {
        headers.first { $0.name == name }?.value
    }
}

/// A blocking TCP connection to a state server, used by one worker thread at a time. Every
/// connect, send and receive is bounded by the network timeout (`stateNetworkTimeout`).
final class StateServerConnection {
    let fd: Int32
    private var buffer: [UInt8] = []
    /// What `recv` reads into, allocated once per connection.
    private var scratch = [UInt8](repeating: 0, count: 16 * 1024)
    private let host: String
    /// Whether a request went through it (a failure on a reused connection may just mean the
    /// server closed it while idle).
    private(set) var used = false

    /// Connects to `address`; throws `unavailable` or `timeout`.
    init(address: StateServerAddress, timeout: Duration) throws(SessionStoreError) {
        BlockingHint.willBlock()
        host = address.host
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(address.host, String(address.port), &hints, &list)
        guard status == 0, let first = list else {
            throw SessionStoreError(.unavailable, "the state server's host \(address.host) cannot be resolved: \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        var timedOut = false
        while let info = candidate {
            candidate = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { continue }
            switch Self.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen, timeout: timeout) {
            case nil:
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                self.fd = fd
                setTimeout(timeout)
                return
            case let error?:
                Glibc.close(fd)
                lastError = error
                timedOut = timedOut || error == "timed out"
            }
        }
        throw SessionStoreError(timedOut ? .timeout : .unavailable, "cannot connect to the state server at \(address): \(lastError)")
    }

    deinit { Glibc.close(fd) }

    /// A non-blocking connect waited for with `poll`, so an unreachable host costs at most
    /// `timeout`. Nil on success, else the reason.
    private static func connect(_ fd: Int32, _ address: UnsafeMutablePointer<sockaddr>?, _ length: socklen_t, timeout: Duration) -> String? {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(fd, F_SETFL, flags) }
        if Glibc.connect(fd, address, length) == 0 { return nil }
        guard errno == EINPROGRESS else { return String(cString: strerror(errno)) }
        var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let ready = poll(&poller, 1, Int32(clamping: timeout.milliseconds))
        if ready == 0 { return "timed out" }
        if ready < 0 { return String(cString: strerror(errno)) }
        var error: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size)
        return error == 0 ? nil : String(cString: strerror(error))
    }

    /// How long a send or receive may block.
    func setTimeout(_ timeout: Duration) {
        let milliseconds = max(1, timeout.milliseconds)
        var value = timeval(tv_sec: milliseconds / 1000, tv_usec: Int((milliseconds % 1000) * 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends one request and reads its answer. `bodyless`: a HEAD, whose answer has no body.
    func exchange(verb: String, target: String, headers: [(String, String)], body: [UInt8]?) throws(SessionStoreError) -> StateServerReply {
        used = true
        // The worker thread waits for the network now: its pool may let another thread run.
        BlockingHint.willBlock()
        var head = "\(verb) \(target) HTTP/1.1\r\nHost: \(host)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        do {
            try send(Array(head.utf8) + (body ?? []))
        } catch {
            // The server may have answered before reading the whole body and closed (413 for a
            // session over its --max-item-size): that answer says more than the broken send. If
            // there is none, the send's error is the one to report.
            do { return try readReply(bodyless: verb == "HEAD") } catch _ { throw error }
        }
        return try readReply(bodyless: verb == "HEAD")
    }

    /// Whether a kept connection still looks usable: the server has not closed it while it sat
    /// idle (a read that would block means open; end of stream means closed).
    var isOpen: Bool {
        var byte: UInt8 = 0
        let received = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
    }

    private func send(_ bytes: [UInt8]) throws(SessionStoreError) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent > 0 {
                offset += sent
                continue
            }
            if sent < 0, errno == EINTR { continue }
            throw failure("sending to", code: errno)
        }
    }

    private func readReply(bodyless: Bool) throws(SessionStoreError) -> StateServerReply {
        var searched = 0
        while true {
            if let end = Self.endOfHead(buffer, from: searched) {
                var reply = try Self.parseHead(buffer[..<end])
                let length = bodyless ? 0 : (reply.header("content-length").flatMap { Int($0) } ?? 0)
                guard length >= 0, length <= 1 << 30 else { throw SessionStoreError(.refused, "the state server announced a body of \(length) bytes") }
                while buffer.count < end + 4 + length { try receive() }
                reply.body = Array(buffer[(end + 4)..<(end + 4 + length)])
                reply.closes = reply.header("connection")?.lowercased() == "close"
                buffer.removeFirst(end + 4 + length)
                return reply
            }
            guard buffer.count <= 64 * 1024 else { throw SessionStoreError(.refused, "the state server's answer head is over 64 KiB") }
            searched = max(0, buffer.count - 3)
            try receive()
        }
    }

    /// The status line and headers (names lower-cased), from the bytes before the blank line.
    private static func parseHead(_ head: ArraySlice<UInt8>) throws(SessionStoreError) -> StateServerReply {
        var lines = head.split(separator: 10, omittingEmptySubsequences: false).map { line in
            line.last == 13 ? line.dropLast() : line
        }
        let statusLine = lines.removeFirst()
        // "HTTP/1.x NNN …"
        let parts = statusLine.split(separator: UInt8(ascii: " "), maxSplits: 2)
        guard parts.count >= 2, parts[0].starts(with: Array("HTTP/1.".utf8)), parts[1].count == 3,
              let status = Int(String(decoding: parts[1], as: UTF8.self))
        else { throw SessionStoreError(.refused, "the state server sent a malformed answer") }
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            var value = line[(colon + 1)...]
            while value.first == UInt8(ascii: " ") || value.first == 9 { value = value.dropFirst() }
            while value.last == UInt8(ascii: " ") || value.last == 9 { value = value.dropLast() }
            headers.append((String(decoding: line[..<colon], as: UTF8.self).lowercased(), String(decoding: value, as: UTF8.self)))
        }
        return StateServerReply(status: status, headers: headers, body: [], closes: false)
    }

    private func receive() throws(SessionStoreError) {
        while true {
            let count = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                buffer.append(contentsOf: scratch[..<count])
                return
            }
            if count == 0 { throw SessionStoreError(.unavailable, "the state server closed the connection") }
            if errno == EINTR { continue }
            throw failure("reading from", code: errno)
        }
    }

    private func failure(_ doing: String, code: Int32) -> SessionStoreError {
        if code == EAGAIN || code == EWOULDBLOCK {
            return SessionStoreError(.timeout, "no answer from the state server within the network timeout (stateNetworkTimeout)")
        }
        return SessionStoreError(.unavailable, "error \(doing) the state server: \(String(cString: strerror(code)))")
    }

    /// Where the blank line after the head starts, searching from `start`.
    private static func endOfHead(_ bytes: [UInt8], from start: Int) -> Int? {
        guard bytes.count >= 4 else { return nil }
        var index = start
        while index <= bytes.count - 4 {
            if bytes[index] == 13, bytes[index + 1] == 10, bytes[index + 2] == 13, bytes[index + 3] == 10 { return index }
            index += 1
        }
        return nil
    }
}

extension Duration {
    var milliseconds: Int {
        let parts = components
        return Int(parts.seconds) * 1000 + Int(parts.attoseconds / 1_000_000_000_000_000)
    }
}
