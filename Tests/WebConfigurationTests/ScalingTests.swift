import Foundation
import Testing
@testable import WebConfiguration

/// The store's cost is bounded by the tree on disk and linear in file size. Judged from the
/// store's own counters (files parsed, elements, blocks, disk probes, memo bytes), never from
/// time.
struct ScalingTests {
    /// A site with folders shop/catalog/books (each with a web.config) and a /shop application.
    static func shopTree() throws -> ConfigTree {
        try ConfigTree([
            "www/shop/web.config": webConfig("<sessionState timeout=\"31\" />"),
            "www/shop/catalog/web.config": webConfig("<pages enableSessionState=\"ReadOnly\" />"),
            "www/shop/catalog/books/web.config": webConfig("<pages enableSessionState=\"false\" />"),
        ], appHost: ConfigTree.appHost(applications: ConfigTree.application("shop")))
    }

    static func deepPath(_ segments: Int, prefix: String = "/shop/catalog/books", tag: Int = 0) -> String {
        prefix + "/x\(tag)" + String(repeating: "/a", count: segments - 5) + "/page"
    }

    /// The work one new URL adds to the store's counters.
    static func cost(of path: String, in store: ConfigurationStore) throws -> ConfigurationStoreStatistics {
        let before = store.statistics
        _ = try store.configuration(path: path).get()
        var after = store.statistics
        after.filesParsed -= before.filesParsed
        after.elementsParsed -= before.elementsParsed
        after.pathProbes -= before.pathProbes
        after.resolutions -= before.resolutions
        after.blocksConsidered -= before.blocksConsidered
        after.elementsMerged -= before.elementsMerged
        return after
    }

    @Test(arguments: [4000, 10_000])
    func aDeepURLCostsWhatItsExistingPrefixCosts(segments: Int) throws {
        let tree = try Self.shopTree()
        let store = tree.store()
        _ = try store.configuration(path: "/shop/catalog/books/first").get()
        let shallow = try Self.cost(of: "/shop/catalog/books/x1/page", in: store)
        let deep = try Self.cost(of: Self.deepPath(segments, tag: 2), in: store)
        // The same settings as the shallow URL's, found with the same work: one probe for the
        // missing folder, nothing parsed, nothing resolved again.
        let settings = try store.configuration(path: Self.deepPath(segments, tag: 3)).get()
        #expect(settings.enableSessionState == .false && settings.sessionState.timeout == .seconds(31 * 60))
        #expect(deep.pathProbes == shallow.pathProbes)
        #expect(deep.pathProbes <= 2)
        #expect(deep.filesParsed == 0 && deep.resolutions == 0 && deep.elementsMerged == 0)
        #expect(shallow.resolutions == 0)
    }

    @Test func aThousandDeepURLsStayWithinTheMemoBounds() throws {
        let tree = try Self.shopTree()
        let store = tree.store()
        _ = try store.configuration(path: "/shop/catalog/books/first").get()
        let start = store.statistics
        for tag in 0..<1000 {
            _ = try store.configuration(path: Self.deepPath(4000, tag: tag)).get()
        }
        let end = store.statistics
        // Each URL was looked up (none came from a thread memo: all are new) …
        #expect(end.sharedLookups - start.sharedLookups == 1000)
        // … and the memo of URLs stays within its bound while the rest does not grow at all.
        #expect(end.memoisedURLBytes <= ConfigurationStoreStatistics.memoisedURLByteLimit)
        #expect(end.memoisedDirectories == start.memoisedDirectories)
        #expect(end.memoisedDirectoryBytes == start.memoisedDirectoryBytes)
        #expect(end.watchedPaths == start.watchedPaths)
        #expect(end.watchedBytes == start.watchedBytes)
        #expect(end.resolutions == start.resolutions)
        #expect(end.filesParsed == start.filesParsed)
        // The URLs are long (8 KB each): fewer than all of them fit, the most recent do.
        #expect(end.memoisedURLs < 1000)
        let again = try Self.cost(of: Self.deepPath(4000, tag: 999), in: store)
        #expect(again.pathProbes == 0)
    }

    @Test func urlsBelowAMissingFolderShareOneMemoisedPrefix() throws {
        let tree = try Self.shopTree()
        let store = tree.store()
        for index in 0..<500 {
            _ = try store.configuration(path: "/shop/catalog/nope\(index)/page").get()
        }
        let statistics = store.statistics
        // One prefix, /shop/catalog: the missing folders add none and are not watched.
        #expect(statistics.memoisedDirectories == 1)
        #expect(statistics.resolutions == 1)
        #expect(statistics.watchedPaths < 12)
    }

    @Test func aRepeatedLookupOnOneThreadTakesNoSharedLock() throws {
        let tree = try Self.shopTree()
        let store = tree.store()
        _ = try store.configuration(path: "/shop/catalog/page").get()
        let before = store.statistics.sharedLookups
        for _ in 0..<1000 {
            #expect(try store.configuration(path: "/shop/catalog/page").get().enableSessionState == .readOnly)
        }
        #expect(store.statistics.sharedLookups == before)
        // A change on disk is seen by the thread's memo too (the generation moved).
        try tree.write("www/shop/catalog/web.config", webConfig("<pages enableSessionState=\"true\" />"))
        #expect(store.reloadIfChanged() == [tree.path("www/shop/catalog/web.config")])
        #expect(try store.configuration(path: "/shop/catalog/page").get().enableSessionState == .true)
        store.reload()
        #expect(try store.configuration(path: "/shop/catalog/page").get().enableSessionState == .true)
        #expect(store.statistics.sharedLookups == before + 2)
    }

    @Test func threadsAskingForOneNewPathParseEachFileOnce() throws {
        let tree = try Self.shopTree()
        let store = tree.store()
        // 16 threads of their own (not the 2-thread cooperative pool), released at once.
        let gate = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        let answers = Answers()
        for _ in 0..<16 {
            done.enter()
            Thread.detachNewThread {
                gate.wait()
                answers.add(try? store.configuration(path: "/shop/catalog/books/page").get().enableSessionState)
                done.leave()
            }
        }
        for _ in 0..<16 { gate.signal() }
        done.wait()
        #expect(answers.values.count == 16 && answers.values.allSatisfy { $0 == .false })
        // applicationHost.config and the three web.config files of www/shop, catalog and books
        // (machine.config and the root web.config are absent: built in, not parsed; www has none).
        #expect(store.statistics.filesParsed == 4)
        #expect(store.statistics.resolutions == 1)
        #expect(store.statistics.sharedLookups == 16)
    }

    // MARK: Large files

    static func connectionStringsTree(_ count: Int) throws -> ConfigTree {
        var adds = ""
        for index in 0..<count { adds += "<add name=\"c\(index)\" connectionString=\"s\(index)\"/>\n" }
        return try ConfigTree([
            "www/web.config": "<configuration>\n<connectionStrings>\n\(adds)</connectionStrings>\n<system.web><sessionState sqlConnectionString=\"c\(count - 1)\" /></system.web>\n</configuration>\n",
        ])
    }

    @Test func fiveThousandConnectionStringsMergeInLinearWork() throws {
        let small = try Self.connectionStringsTree(2500)
        let large = try Self.connectionStringsTree(5000)
        var work: [ConfigurationStoreStatistics] = []
        for tree in [small, large] {
            let store = tree.store()
            let settings = try store.configuration(path: "/a/page").get()
            #expect(settings.connectionStrings.count == (tree === small ? 2500 : 5000))
            #expect(settings.sessionState.sqlConnectionString == (tree === small ? "s2499" : "s4999"))
            #expect(settings.connectionStrings[1234].name == "c1234")
            // Further URLs below the file resolve nothing again.
            for index in 0..<200 { _ = try store.configuration(path: "/f\(index)/page").get() }
            #expect(store.statistics.resolutions == 1)
            // applicationHost.config and the web.config (the other two are built in).
            #expect(store.statistics.filesParsed == 2)
            work.append(store.statistics)
        }
        // Twice the items, twice the work (give or take the fixed part), not four times.
        #expect(Double(work[1].elementsParsed) / Double(work[0].elementsParsed) < 2.05)
        #expect(Double(work[1].elementsMerged) / Double(work[0].elementsMerged) < 2.05)
    }

    @Test func removingAndReAddingThousandsOfItemsKeepsTheirOrder() throws {
        var adds = ""
        for index in 0..<3000 { adds += "<add name=\"c\(index)\" connectionString=\"s\(index)\"/>\n" }
        var removes = ""
        for index in stride(from: 0, to: 3000, by: 2) { removes += "<remove name=\"C\(index)\"/>\n" }
        let tree = try ConfigTree([
            "www/web.config": "<configuration><connectionStrings>\(adds)</connectionStrings></configuration>",
            "www/sub/web.config": "<configuration><connectionStrings>\(removes)<add name=\"c0\" connectionString=\"again\"/></connectionStrings></configuration>",
        ])
        let settings = try tree.settings("/sub/page")
        #expect(settings.connectionStrings.count == 1501)
        #expect(settings.connectionStrings.first?.name == "c1")
        #expect(settings.connectionStrings.last.map { "\($0.name)=\($0.connectionString)" } == "c0=again")
    }

    static func locationsTree(_ count: Int) throws -> ConfigTree {
        var blocks = ""
        for index in 0..<count {
            blocks += "<location path=\"d\(index)\"><system.web><pages enableSessionState=\"\(index % 2 == 0 ? "ReadOnly" : "false")\" /></system.web></location>\n"
        }
        return try ConfigTree(["www/web.config": "<configuration>\n\(blocks)</configuration>\n"])
    }

    @Test func twentyFiveHundredLocationsAreCheckedInLinearWork() throws {
        var work: [ConfigurationStoreStatistics] = []
        for count in [1250, 2500] {
            let tree = try Self.locationsTree(count)
            let store = tree.store()
            #expect(store.check().isEmpty)
            #expect(try store.configuration(path: "/d17/x").get().enableSessionState == .false)
            #expect(try store.configuration(path: "/D\(count - 2)").get().enableSessionState == .readOnly)
            #expect(try store.configuration(path: "/d\(count)").get().enableSessionState == .true)
            work.append(store.statistics)
        }
        #expect(work[1].filesParsed == work[0].filesParsed)
        #expect(Double(work[1].blocksConsidered) / Double(work[0].blocksConsidered) < 2.1)
        #expect(Double(work[1].elementsMerged) / Double(work[0].elementsMerged) < 2.1)
        #expect(Double(work[1].resolutions) / Double(work[0].resolutions) < 2.1)
    }

    /// Both in one file: every <location> target merges the same connection strings, once.
    @Test func locationsBelowThousandsOfConnectionStringsMergeTheStringsOnce() throws {
        var work: [ConfigurationStoreStatistics] = []
        for count in [600, 1200] {
            var text = "<configuration>\n<connectionStrings>\n"
            for index in 0..<(2 * count) { text += "<add name=\"c\(index)\" connectionString=\"s\(index)\"/>\n" }
            text += "</connectionStrings>\n"
            for index in 0..<count {
                text += "<location path=\"d\(index)\"><system.web><pages enableSessionState=\"false\" /></system.web></location>\n"
            }
            let tree = try ConfigTree(["www/web.config": text + "</configuration>\n"])
            let store = tree.store()
            #expect(store.check().isEmpty)
            let settings = try store.configuration(path: "/d\(count - 1)/page").get()
            #expect(settings.enableSessionState == .false && settings.connectionStrings.count == 2 * count)
            #expect(settings.sources["connectionStrings/c7"] != nil)
            work.append(store.statistics)
        }
        #expect(Double(work[1].elementsMerged) / Double(work[0].elementsMerged) < 2.1)
        #expect(Double(work[1].blocksConsidered) / Double(work[0].blocksConsidered) < 2.1)
    }

    @Test func aLocationTargetBelowAMissingFolderStillApplies() throws {
        let tree = try ConfigTree([
            "www/web.config": webConfig(rest: "<location path=\"virtual/deeper/page.aspx\"><system.web><pages enableSessionState=\"false\" /></system.web></location>"),
        ])
        let store = tree.store()
        #expect(try store.configuration(path: "/virtual/deeper/page.aspx").get().enableSessionState == .false)
        #expect(try store.configuration(path: "/Virtual/Deeper/Page.aspx/x/y").get().enableSessionState == .false)
        #expect(try store.configuration(path: "/virtual/deeper/other.aspx").get().enableSessionState == .true)
        #expect(try store.configuration(path: "/virtual").get().enableSessionState == .true)
    }

    @Test func aFolderCreatedLaterWithAWebConfigIsPickedUp() throws {
        let tree = try Self.shopTree()
        let store = tree.store()
        #expect(try store.configuration(path: "/shop/catalog/new/page").get().enableSessionState == .readOnly)
        try tree.write("www/shop/catalog/new/web.config", webConfig("<pages enableSessionState=\"false\" />"))
        // The folder's parent changed: what was resolved is resolved again.
        let generation = store.statistics.generation
        store.reloadIfChanged()
        #expect(store.statistics.generation == generation + 1)
        #expect(try store.configuration(path: "/shop/catalog/new/page").get().enableSessionState == .false)
    }

    @Test func aSymbolicLinkCycleDoesNotMakeEverNewPaths() throws {
        let tree = try Self.shopTree()
        try FileManager.default.createSymbolicLink(atPath: tree.path("www/shop/catalog/again"), withDestinationPath: "..")
        let store = tree.store()
        #expect(try store.configuration(path: "/shop/catalog/again/page").get().enableSessionState == .readOnly)
        let watched = store.statistics.watchedPaths
        for depth in 1...200 {
            let path = "/shop/catalog" + String(repeating: "/again/catalog", count: depth) + "/page"
            #expect(try store.configuration(path: path).get().enableSessionState == .readOnly)
        }
        // `again` (= shop) is met again on the path: it counts as missing, nothing below it is read.
        #expect(store.statistics.watchedPaths == watched)
        #expect(store.statistics.memoisedDirectories == 1)
    }

    @Test func aFolderBehindADanglingLinkIsWatchedUntilItAppears() throws {
        let tree = try Self.shopTree()
        try FileManager.default.createSymbolicLink(atPath: tree.path("www/uploads"), withDestinationPath: tree.path("data/uploads"))
        let store = tree.store()
        #expect(try store.configuration(path: "/uploads/f").get().enableSessionState == .true)
        try tree.write("data/uploads/web.config", webConfig("<pages enableSessionState=\"false\" />"))
        let generation = store.statistics.generation
        store.reloadIfChanged()
        #expect(store.statistics.generation == generation + 1)
        #expect(try store.configuration(path: "/uploads/f").get().enableSessionState == .false)
    }

    @Test func twoApplicationsOnOneFolderBothReadItsWebConfig() throws {
        let tree = try ConfigTree([
            "www/shared/web.config": webConfig("<pages enableSessionState=\"ReadOnly\" />"),
        ], appHost: ConfigTree.appHost(applications: """
            <application path="/one"><virtualDirectory path="/" physicalPath="../www/shared" /></application>
            <application path="/one/two"><virtualDirectory path="/" physicalPath="../www/shared" /></application>
            """))
        let store = tree.store()
        #expect(try store.configuration(path: "/one/two/page").get().enableSessionState == .readOnly)
        #expect(try store.configuration(path: "/one/two/page").get().application.path == "/one/two")
    }

    @Test func aVirtualDirectoryPathTwiceIsAnError() throws {
        let tree = try ConfigTree(appHost: ConfigTree.appHost(applications: """
            <application path="/media">
              <virtualDirectory path="/" physicalPath="../www" />
              <virtualDirectory path="/img" physicalPath="../a" />
              <virtualDirectory path="/IMG" physicalPath="../b" />
            </application>
            """))
        #expect(tree.describe(errorsOf: "/").contains { $0.hasSuffix("The entry '/IMG' has already been added.") })
    }

    @Test(arguments: [("fifo", "it is not a regular file but a FIFO (named pipe)"), ("device", "it is not a regular file but a character device")])
    func aWebConfigThatIsNotARegularFileIsRefusedWithTheReason(kind: String, reason: String) throws {
        let tree = try ConfigTree()
        try FileManager.default.createDirectory(atPath: tree.path("www/odd"), withIntermediateDirectories: true)
        if kind == "fifo" {
            #expect(mkfifo(tree.path("www/odd/web.config"), 0o644) == 0)
        } else {
            try FileManager.default.createSymbolicLink(atPath: tree.path("www/odd/web.config"), withDestinationPath: "/dev/zero")
        }
        #expect(tree.describe(errorsOf: "/odd/page") == ["www/odd/web.config:1: The configuration file cannot be read: \(reason)"])
    }
}

/// Answers collected from several threads (NSLock is a pthread mutex: the thread sanitizer
/// sees it).
private final class Answers: @unchecked Sendable {
    private let lock = NSLock()
    private var collected: [EnableSessionState?] = []

    func add(_ answer: EnableSessionState?) {
        lock.withLock { collected.append(answer) }
    }

    var values: [EnableSessionState?] { lock.withLock { collected } }
}
