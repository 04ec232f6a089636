import Glibc

/// Lets code that is about to block (a store's network I/O, a wait for a session's lock) tell
/// the thread pool running it, so that the pool can hand the thread's place to another thread at
/// once instead of noticing later. SessionHost's FastCGI worker threads install a handler; on
/// any other thread `willBlock()` does nothing.
package enum BlockingHint {
    /// Called (on the blocking thread) before it blocks; repeated calls in one request are cheap.
    package final class Handler: @unchecked Sendable {
        let willBlock: () -> Void

        package init(willBlock: @escaping () -> Void) {
            self.willBlock = willBlock
        }
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        // The handler is retained while installed; released when the thread ends.
        pthread_key_create(&key) { pointer in
            if let pointer { Unmanaged<Handler>.fromOpaque(pointer).release() }
        }
        return key
    }()

    /// Installs `handler` for the calling thread (nil removes it).
    package static func install(_ handler: Handler?) {
        if let old = pthread_getspecific(key) { Unmanaged<Handler>.fromOpaque(old).release() }
        pthread_setspecific(key, handler.map { Unmanaged.passRetained($0).toOpaque() })
    }

    /// The calling thread is about to block.
    package static func willBlock() {
        guard let pointer = pthread_getspecific(key) else { return }
        Unmanaged<Handler>.fromOpaque(pointer).takeUnretainedValue().willBlock()
    }
}
