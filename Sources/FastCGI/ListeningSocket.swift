import CFastCGI
import Glibc

/// The socket the worker threads accept on.
struct ListeningSocket: Sendable {
    let fd: Int32
    let address: ListenAddress
    /// The unix socket file this process created (and removes on close), with its inode so a
    /// file that another process put there since is left alone.
    private let ownedPath: (path: String, inode: UInt)?

    /// The TCP port actually bound (differs from the requested one when that was 0).
    var boundPort: Int? {
        var storage = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0, storage.sin_family == sa_family_t(AF_INET) else { return nil }
        return Int(UInt16(bigEndian: storage.sin_port))
    }

    static func open(_ address: ListenAddress, backlog: Int32, ownership: SocketOwnership = SocketOwnership()) throws(FastCGIServerError) -> ListeningSocket {
        switch address {
        case .inherited(let fd):
            var type: Int32 = 0
            var listening: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0, type == Int32(SOCK_STREAM.rawValue),
                  getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0, listening != 0
            else {
                throw .cannotListen(address: address, reason: "file descriptor \(fd) is not a listening stream socket")
            }
            return ListeningSocket(fd: fd, address: address, ownedPath: nil)

        case .tcp(let host, let port):
            let fd = FCGX_OpenSocket("\(host):\(port)", backlog)
            guard fd >= 0 else { throw .cannotListen(address: address, reason: errnoText()) }
            return ListeningSocket(fd: fd, address: address, ownedPath: nil)

        case .unix(let path):
            if isLiveSocket(path) {
                throw .cannotListen(address: address, reason: "another process is accepting on \(path)")
            }
            // libfcgi unlinks a stale file itself; the umask gives the socket no more than its
            // final mode from the start, so there is no moment at which others could connect.
            let oldMask = umask(mode_t(~ownership.mode & 0o777))
            let fd = FCGX_OpenSocket(path, backlog)
            let openError = errno
            umask(oldMask)
            guard fd >= 0 else { throw .cannotListen(address: address, reason: errnoText(openError)) }
            if let group = ownership.group, chown(path, uid_t.max, gid_t(group)) != 0 {
                let reason = errnoText()
                _ = Glibc.close(fd)
                unlink(path)
                throw .cannotListen(address: address, reason: "cannot give the socket to group \(group): \(reason)")
            }
            chmod(path, mode_t(ownership.mode))
            var status = stat()
            let inode = stat(path, &status) == 0 ? UInt(status.st_ino) : 0
            return ListeningSocket(fd: fd, address: address, ownedPath: (path, inode))
        }
    }

    /// Wakes every thread blocked in `accept` (Linux returns EINVAL to them) without closing the
    /// descriptor under their feet.
    func stopAccepting() {
        shutdown(fd, Int32(SHUT_RDWR))
    }

    func close() {
        _ = Glibc.close(fd)
        if let (path, inode) = ownedPath {
            var status = stat()
            if stat(path, &status) == 0, UInt(status.st_ino) == inode { unlink(path) }
        }
    }

    /// Whether something accepts connections at `path` right now.
    private static func isLiveSocket(_ path: String) -> Bool {
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return false }
        defer { _ = Glibc.close(probe) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            let bytes = Array(path.utf8.prefix(buffer.count - 1))
            buffer.copyBytes(from: bytes)
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }
}

/// Who may connect to a unix socket the worker creates (php-fpm's `listen.mode` and
/// `listen.group`), so that a web server running as another user (`www-data`) can.
public struct SocketOwnership: Sendable, Hashable {
    /// Permission bits of the socket file; connecting needs write permission.
    public var mode: UInt32
    /// The socket file's group id; nil keeps the creating process's group.
    public var group: UInt32?

    public init(mode: UInt32 = 0o660, group: UInt32? = nil) {
        self.mode = mode
        self.group = group
    }
}

func errnoText(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}
