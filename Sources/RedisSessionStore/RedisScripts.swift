import Crypto
import Foundation

/// One Lua script of the store: its text and SHA-1 (for `EVALSHA`).
struct RedisScript: Sendable {
    let source: [UInt8]
    /// The hex SHA-1, as `EVALSHA` takes it.
    let sha1: [UInt8]

    init(_ text: String) {
        source = Array(text.utf8)
        sha1 = Array(Insecure.SHA1.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined().utf8)
    }
}

/// The store's operations, each one Lua script and so atomic, on the keys of Microsoft's Redis
/// provider v5 (`KeyGenerator`): `{<app>_<id>}_SessionStateItemCollection` (the items, as
/// `SessionStateItemCollection.Serialize` writes them), `{…}_WriteLock` (the lock: `DateTime.Now`
/// ticks as text), `{…}_SessionTimeout` (seconds). The hash tag keeps a session's keys in one
/// cluster slot. SessionHost adds `{…}_SessionHostWaiters`, set while a request waits for the
/// lock, so that a release publishes a wake-up only when someone listens for it.
///
/// Keys are always, in this order: lock, data, timeout, waiters. Every script slides the data
/// and timeout keys' TTLs by the stored timeout, as Microsoft's do.
enum RedisScripts {
    /// The current time as `DateTime` ticks in the writer's local time (ARGV[1]: the UTC offset in
    /// seconds), taken from the Redis server's clock so that every worker's locks and lock ages
    /// use one clock. Lua numbers are doubles: the 18 digits are built as text.
    private static let now = """
        if redis.replicate_commands then redis.replicate_commands() end
        local clock = redis.call('TIME')
        local seconds = tonumber(clock[1]) + 62135596800 + tonumber(ARGV[1])
        local fraction = tonumber(clock[2]) * 10
        -- The holder's age in ms; -1 only for a value that is not ticks. A holder whose clock
        -- is ahead of this one (another machine, a step back of the clock) is 0 ms old.
        local function age(holder)
            if string.len(holder) < 8 or not string.match(holder, '^%d+$') then return -1 end
            local heldSeconds = tonumber(string.sub(holder, 1, -8))
            local heldFraction = tonumber(string.sub(holder, -7))
            local held = (seconds - heldSeconds) * 1000 + math.floor((fraction - heldFraction) / 10000)
            if held < 0 then return 0 end
            return held
        end
        """ + slide

    /// Slides the data and timeout keys' TTLs by the stored timeout (seconds); returns it.
    private static let slide = """

        local function slide()
            local timeout = redis.call('GET', KEYS[3])
            if timeout then
                redis.call('EXPIRE', KEYS[2], timeout)
                redis.call('EXPIRE', KEYS[3], timeout)
            end
            return timeout
        end
        """

    /// `GetItemExclusive`. ARGV: UTC offset (s), lock TTL (s). Returns `{0}` (no session),
    /// `{1, lock, items, timeout}` (taken), or `{2, holder, age ms}` (held by another request,
    /// which is then marked as waited for). The TTLs slide when the request gives the lock
    /// back (release or update), which every taken lock is followed by, or by its own expiry.
    static let getExclusive = RedisScript(now + """

        local items = redis.call('GET', KEYS[2])
        if not items then return {0} end
        local mine = string.format('%d%07d', seconds, fraction)
        if redis.call('SET', KEYS[1], mine, 'NX', 'EX', ARGV[2]) then
            return {1, mine, items, redis.call('GET', KEYS[3]) or '-1'}
        end
        slide()
        local holder = redis.call('GET', KEYS[1]) or ''
        redis.call('SET', KEYS[4], '1', 'EX', ARGV[2])
        return {2, holder, age(holder)}
        """)

    /// `GetItem` (read-only): readers wait for a writer too, as with Microsoft's provider.
    /// ARGV: UTC offset (s), lock TTL (s). Returns `{0}`, `{1, '', items, timeout}` or
    /// `{2, holder, age ms}`.
    static let get = RedisScript(now + """

        local timeout = slide()
        local holder = redis.call('GET', KEYS[1])
        if holder then
            redis.call('SET', KEYS[4], '1', 'EX', ARGV[2])
            return {2, holder, age(holder)}
        end
        local items = redis.call('GET', KEYS[2])
        if not items then return {0} end
        return {1, '', items, timeout or '-1'}
        """)

    /// Wakes the waiters of other workers if any: `PUBLISH channel "<session> <lock>"`.
    /// ARGV[2]: the channel, ARGV[3]: the session's name in the payload, ARGV[1]: the lock.
    private static let wake = """
        local function wake()
            if redis.call('DEL', KEYS[4]) == 1 then redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. ARGV[1]) end
        end
        """

    /// `ReleaseItemExclusive`: only the holder's lock value unlocks. ARGV: lock, channel, name.
    static let release = RedisScript(wake + slide + """

        if redis.call('GET', KEYS[1]) == ARGV[1] then
            redis.call('DEL', KEYS[1])
            wake()
        end
        slide()
        return 1
        """)

    /// `SetAndReleaseItemExclusive` of an existing session. ARGV: lock, channel, name, items,
    /// timeout (s). Returns 0 and writes nothing when the lock is no longer this request's
    /// (Microsoft's script returns silently then; the store reports the loss).
    static let update = RedisScript(wake + """

        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[5])
        redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[5])
        redis.call('DEL', KEYS[1])
        wake()
        return 1
        """)

    /// `SetAndReleaseItemExclusive` of a new session, and `CreateUninitializedItem` (ARGV[3] =
    /// 'NX': never replaces an existing session). ARGV: items, timeout (s), mode.
    static let insert = RedisScript("""
        local written
        if ARGV[3] == 'NX' then
            written = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2])
        else
            written = redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
        end
        if written then redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[2]) end
        if written then return 1 end
        return 0
        """)

    /// `RemoveItem`: with a lock (ARGV[1]) only by its holder; without one ('') only when nobody
    /// holds the session. ARGV: lock, channel, name. Returns 0 when nothing was removed because
    /// of the lock.
    static let remove = RedisScript(wake + """

        local holder = redis.call('GET', KEYS[1])
        if ARGV[1] ~= '' and holder ~= ARGV[1] then return 0 end
        if ARGV[1] == '' and holder then return 0 end
        redis.call('DEL', KEYS[2], KEYS[3], KEYS[1])
        wake()
        return 1
        """)

    /// `ResetItemTimeout`: slides the TTLs of an existing session.
    static let resetTimeout = RedisScript(slide + """

        if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
        slide()
        return 1
        """)

    static let all = [getExclusive, get, release, update, insert, remove, resetTimeout]
}
