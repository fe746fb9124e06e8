import Foundation
import PQCore
import Testing

@Suite struct TaskPathsTests {
    /// root/
    ///   myjobs/a.so b.so notes.txt
    ///   pkg/top.so
    ///   pkg/one/x.so   pkg/two/y.so   pkg/_hidden/h.so   pkg/.dot/d.so   pkg/one/nested/n.so
    func makeTree() throws -> String {
        let root = Fixtures.temporaryDirectory()
        let fm = FileManager.default
        for dir in ["myjobs", "pkg/one/nested", "pkg/two", "pkg/_hidden", "pkg/.dot"] {
            try fm.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true)
        }
        for file in [
            "myjobs/b.so", "myjobs/a.so", "myjobs/notes.txt", "pkg/top.so", "pkg/one/x.so", "pkg/two/y.so",
            "pkg/_hidden/h.so", "pkg/.dot/d.so", "pkg/one/nested/n.so", "myjobs/.hidden.so",
        ] {
            _ = fm.createFile(atPath: root + "/" + file, contents: Data("x".utf8))
        }
        return root
    }

    @Test func plainEntryListsSharedObjectsSortedByName() throws {
        let root = try makeTree()
        let dirs = try TaskPaths.resolve(["myjobs"], root: root)
        #expect(dirs.count == 1)
        #expect(dirs[0].directory == root + "/myjobs")
        #expect(dirs[0].libraries == [root + "/myjobs/a.so", root + "/myjobs/b.so"])
    }

    @Test func wildcardTakesParentThenImmediateSubdirectoriesSkippingHiddenAndNested() throws {
        let root = try makeTree()
        let dirs = try TaskPaths.resolve(["pkg.*"], root: root)
        #expect(dirs.map(\.directory) == [root + "/pkg", root + "/pkg/one", root + "/pkg/two"])
        #expect(dirs.flatMap(\.libraries) == [root + "/pkg/top.so", root + "/pkg/one/x.so", root + "/pkg/two/y.so"])
        #expect(dirs[0].isWildcardParent)
    }

    @Test func dottedEntryIsNestedDirectoryAndOrderFollowsEntries() throws {
        let root = try makeTree()
        let dirs = try TaskPaths.resolve(["pkg.two", "myjobs", "pkg.one"], root: root)
        #expect(dirs.map(\.directory) == [root + "/pkg/two", root + "/myjobs", root + "/pkg/one"])
        #expect(dirs[2].libraries == [root + "/pkg/one/x.so"])
    }

    @Test func missingDirectoryNamesEntryAndPath() throws {
        let root = try makeTree()
        let error = #expect(throws: PluginError.self) { try TaskPaths.resolve(["myjobs", "nope.sub"], root: root) }
        #expect(error?.code == .missingDirectory)
        #expect(error?.description.contains("'nope.sub'") == true)
        #expect(error?.description.contains(root + "/nope/sub") == true)
    }

    @Test func malformedEntriesAreRejected() throws {
        let root = try makeTree()
        for bad in ["..", "a..b", "pkg.*.x", ".hidden", ""] where !bad.isEmpty {
            #expect(throws: PluginError.self) { try TaskPaths.resolve([bad], root: root) }
        }
        #expect(throws: PluginError.self) { try TaskPaths.resolve([], root: root) }
        #expect(TaskPaths.split(" a, b.* ,,c ") == ["a", "b.*", "c"])
    }
}
