import Foundation
import Testing
@testable import SessionState

struct SessionItemsTests {
    @Test func keysCompareIgnoringCaseAndKeepTheirFirstSpelling() {
        var items = SessionItems()
        items["UserName"] = .string("alice")
        items["USERNAME"] = .string("bob")
        items["username"] = .string("carol")
        #expect(items.count == 1)
        #expect(items.keys == ["UserName"])
        #expect(items["uSeRnAmE"].map { same($0, .string("carol")) } == true)
        items["username"] = nil
        #expect(items.count == 0)
        #expect(items["UserName"] == nil)
        // Unicode keys fold too.
        items["Ärger"] = .int(1)
        #expect(items["ärger"].map { same($0, .int(1)) } == true)
        #expect(items["ÄRGER"].map { same($0, .int(1)) } == true)
    }

    @Test func orderIsTheOrderOfFirstSetting() {
        var items = SessionItems()
        for key in ["c", "a", "B", "d"] { items[key] = .string(key) }
        items["A"] = .int(2) // overwrite keeps the position
        #expect(items.keys == ["c", "a", "B", "d"])
        #expect(items.elements.map(\.key) == ["c", "a", "B", "d"])
        #expect(same(items.elements[1].value, .int(2)))
        items["b"] = nil
        #expect(items.keys == ["c", "a", "d"])
        items["B"] = .bool(true) // re-added after removal: at the end, with the new spelling
        #expect(items.keys == ["c", "a", "d", "B"])
        items.removeAll()
        #expect(items.keys.isEmpty && items.elements.isEmpty && items.count == 0)
    }

    enum Change: String, CaseIterable, Sendable {
        case set, overwriteSameValue, overwriteOtherCase, remove, removeMissing, removeAll, removeAllOfEmpty
    }

    @Test(arguments: Change.allCases)
    func everyChangeMakesTheItemsDirty(change: Change) {
        var items = SessionItems()
        items["Key"] = .int(1)
        items.markClean()
        #expect(!items.isDirty)
        switch change {
        case .set: items["other"] = .int(2)
        case .overwriteSameValue: items["Key"] = .int(1)
        case .overwriteOtherCase: items["KEY"] = .int(3)
        case .remove: items["key"] = nil
        // ASP.NET's Remove and Clear set Dirty unconditionally.
        case .removeMissing: items["missing"] = nil
        case .removeAll: items.removeAll()
        case .removeAllOfEmpty:
            items = SessionItems()
            #expect(!items.isDirty)
            items.removeAll()
        }
        #expect(items.isDirty)
        items.markClean()
        #expect(!items.isDirty)
    }

    @Test func readsDoNotMakeTheItemsDirty() {
        var items = SessionItems()
        #expect(!items.isDirty)
        items["a"] = .data(Data([1, 2, 3]))
        items["b"] = .string("x")
        items.markClean()
        _ = items["a"]
        _ = items["A"]
        _ = items["missing"]
        _ = items.keys
        _ = items.elements
        _ = items.count
        #expect(!items.isDirty)
    }
}
