import Locking
import Logging
import SessionState

/// A store whose sessions live in several stores of one mode, each session in the one whose
/// connection string the application's partition resolver returns for its ID (ASP.NET's
/// `partitionResolverType`). Stores are made once per returned string and kept.
final class PartitionedSessionStore: ClosableSessionStateStore, MaintainedSessionStateStore {
    private let resolver: SessionPartitionResolver
    private let factory: SessionStoreFactory
    private let settings: SessionStoreSettings
    var statusLocation: String { "partitioned by \(resolver.typeName)" }
    private let logger: Logger
    private let partitions = Locked<[String: any SessionStateStore]>([:])
    private let expireCallback = Locked<(@Sendable (SessionKey, SessionStateStoreData, SessionEndReason) -> Void)?>(nil)

    init(resolver: SessionPartitionResolver, factory: SessionStoreFactory, settings: SessionStoreSettings, logger: Logger) {
        self.resolver = resolver
        self.factory = factory
        self.settings = settings
        self.logger = logger
    }

    /// The store of `id`'s partition.
    private func store(for id: String) throws(SessionStoreError) -> any SessionStateStore {
        guard let connection = resolver.resolve(id) else {
            throw SessionStoreError(.configuration, "Session state cannot connect to the server because a null connection string was returned by an instance of the IPartitionResolver type '\(resolver.typeName)'.")
        }
        if let known = partitions.withLock({ $0[connection] }) { return known }
        var partition = settings
        partition.connectionString = connection
        if let problem = factory.validate(partition).first {
            throw SessionStoreError(.configuration, "The partition resolver type '\(resolver.typeName)' returned an invalid connection string: \(problem.message)")
        }
        let made = try factory.make(partition, logger)
        let existing = partitions.withLock { partitions -> (any SessionStateStore)? in
            if let existing = partitions[connection] { return existing }
            partitions[connection] = made
            return nil
        }
        // Another thread made one meanwhile: keep the first, close this one.
        guard let existing else {
            if let callback = expireCallback.withLock({ $0 }) { _ = made.setItemExpireCallback(callback) }
            return made
        }
        (made as? any ClosableSessionStateStore)?.close()
        return existing
    }

    /// Passed on to each partition's store as it is made (the SQL store with Session_End on
    /// raises it for expired and removed sessions). Reports false: which partitions will
    /// raise it is not known before they exist, so an abandoned session that was never
    /// stored raises none.
    func setItemExpireCallback(_ callback: @escaping @Sendable (SessionKey, SessionStateStoreData, SessionEndReason) -> Void) -> Bool {
        expireCallback.withLock { $0 = callback }
        return false
    }

    func performMaintenance() {
        for store in partitions.withLock({ Array($0.values) }) { (store as? any MaintainedSessionStateStore)?.performMaintenance() }
    }

    func getItem(_ key: SessionKey) throws(SessionStoreError) -> StoreLookup { try store(for: key.id).getItem(key) }
    func getItemExclusive(_ key: SessionKey) throws(SessionStoreError) -> StoreLookup { try store(for: key.id).getItemExclusive(key) }
    func releaseItemExclusive(_ key: SessionKey, lockID: LockID) throws(SessionStoreError) { try store(for: key.id).releaseItemExclusive(key, lockID: lockID) }
    func setAndReleaseItemExclusive(_ key: SessionKey, data: SessionStateStoreData, lockID: LockID?, newItem: Bool) throws(SessionStoreError) {
        try store(for: key.id).setAndReleaseItemExclusive(key, data: data, lockID: lockID, newItem: newItem)
    }
    func removeItem(_ key: SessionKey, lockID: LockID?, data: SessionStateStoreData?) throws(SessionStoreError) {
        try store(for: key.id).removeItem(key, lockID: lockID, data: data)
    }
    func resetItemTimeout(_ key: SessionKey) throws(SessionStoreError) { try store(for: key.id).resetItemTimeout(key) }
    func createUninitializedItem(_ key: SessionKey, timeout: Int) throws(SessionStoreError) { try store(for: key.id).createUninitializedItem(key, timeout: timeout) }
    func containsSession(id: String) throws(SessionStoreError) -> Bool { try store(for: id).containsSession(id: id) }

    func waitForRelease(_ key: SessionKey, lockID: LockID, deadline: ContinuousClock.Instant) {
        do { try store(for: key.id).waitForRelease(key, lockID: lockID, deadline: deadline) } catch {
            // The acquire that follows meets the same error and reports it.
            logger.debug("partitioned store: no partition to wait on", metadata: ["error": "\(error)"])
        }
    }

    func close() {
        let all = partitions.withLock { partitions -> [any SessionStateStore] in
            defer { partitions = [:] }
            return Array(partitions.values)
        }
        for store in all { (store as? any ClosableSessionStateStore)?.close() }
    }
}
