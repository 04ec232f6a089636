import Locking

/// The time a store measures expiry and lock age with. Tests inject a `ManualSessionClock` so
/// that a 20-minute expiry takes no 20 minutes.
public protocol SessionClock: Sendable {
    /// Time since an arbitrary, fixed origin; never goes back.
    var now: Duration { get }
}

/// The real, monotonic time.
public struct SystemSessionClock: SessionClock {
    private let origin = ContinuousClock.now

    public init() {}

    public var now: Duration { ContinuousClock.now - origin }
}

/// A clock that moves only when told to.
public final class ManualSessionClock: SessionClock {
    private let current = Locked(Duration.zero)

    public init() {}

    public var now: Duration { current.withLock { $0 } }

    public func advance(by duration: Duration) {
        current.withLock { $0 += duration }
    }
}
