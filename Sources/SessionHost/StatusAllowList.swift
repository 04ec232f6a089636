import Glibc

/// Who may read the status page (`--status-path`): loopback clients always, and the addresses
/// or networks of `--status-allow` (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`), compared with the
/// request's `REMOTE_ADDR`.
public struct StatusAllowList: Sendable, Hashable {
    struct Network: Sendable, Hashable {
        var bytes: [UInt8]
        var prefixBits: Int
    }

    private var networks: [Network] = []

    public init() {}

    /// Reads `entries` (addresses, optionally `/bits`); throws with the first one that is not.
    public init(_ entries: [String]) throws(StatusAllowListError) {
        for entry in entries {
            let parts = entry.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard let address = parts.first, var bytes = Self.addressBytes(address) else { throw StatusAllowListError(entry: entry) }
            guard var bits = parts.count == 2 ? Int(parts[1]) : bytes.count * 8, bits >= 0, bits <= bytes.count * 8 else {
                throw StatusAllowListError(entry: entry)
            }
            // An IPv4-mapped entry (`::ffff:10.0.0.0/104`) is kept as the IPv4 network it names,
            // as mapped clients are matched as IPv4.
            if let v4 = Self.mappedIPv4(bytes) {
                bytes = v4
                bits = max(0, bits - 96)
            }
            networks.append(Network(bytes: bytes, prefixBits: bits))
        }
    }

    /// Whether `address` (a `REMOTE_ADDR`) may read the page.
    public func allows(_ address: String) -> Bool {
        if HostServer.isLoopback(address) { return true }
        guard !networks.isEmpty, var bytes = Self.addressBytes(address) else { return false }
        // An IPv4 client on an IPv6 socket (`::ffff:10.0.0.5`) is matched as IPv4.
        if let v4 = Self.mappedIPv4(bytes) { bytes = v4 }
        return networks.contains { network in
            guard network.bytes.count == bytes.count else { return false }
            var remaining = network.prefixBits
            for index in bytes.indices where remaining > 0 {
                let mask: UInt8 = remaining >= 8 ? 0xFF : ~(0xFF >> UInt8(remaining))
                if bytes[index] & mask != network.bytes[index] & mask { return false }
                remaining -= 8
            }
            return true
        }
    }

    /// The IPv4 address of an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
    static func mappedIPv4(_ bytes: [UInt8]) -> [UInt8]? {
        guard bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF else { return nil }
        return Array(bytes[12...])
    }

    /// An IPv4 (4 bytes) or IPv6 (16 bytes) address.
    static func addressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}

/// A `--status-allow` entry that is neither an address nor an address with `/bits`.
public struct StatusAllowListError: Error, Hashable, CustomStringConvertible {
    public var entry: String

    public var description: String {
        "'\(entry)' is not an IPv4 or IPv6 address, optionally with /bits (10.0.0.0/8, fd00::/8)"
    }
}
