import AtomicFile
import Foundation
import ScratchFiles
import Dispatch
import XCTest

/// An output appears whole or not at all, and the only other file ever beside it is the
/// temporary that `ScratchFiles` tracks (so that an interruption leaves nothing behind).
final class AtomicFileTests: XCTestCase {
    private var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("bnkit-atomic-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    /// What the listing thread has seen, and whether to stop.
    private final class Listing: @unchecked Sendable {
        private let lock = NSLock()
        private var names: Set<String> = []
        private var stopped = false
        var done: Bool { lock.withLock { stopped } }
        func stop() { lock.withLock { stopped = true } }
        func add(_ more: [String]) { lock.withLock { names.formUnion(more) } }
        var seen: Set<String> { lock.withLock { names } }
    }

    /// Every name seen in `folder` while `body` runs, listed over and over on another thread.
    private func namesSeen(during body: () throws -> Void) rethrows -> Set<String> {
        let listing = Listing(), path = folder.path
        let finished = DispatchSemaphore(value: 0)
        Thread {
            while !listing.done { listing.add((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []) }
            finished.signal()
        }.start()
        defer { listing.stop(); finished.wait() }
        try body()
        return listing.seen.union((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
    }

    /// The names `AtomicFile` may use for `name`: the name itself and its tracked temporary.
    private func assertOnlyOwnNames(_ names: Set<String>, for name: String, file: StaticString = #filePath, line: UInt = #line) {
        let strangers = names.filter { $0 != name && !($0.hasPrefix(".\(name).\(getpid())-") && $0.hasSuffix(".tmp")) }.sorted()
        XCTAssertTrue(strangers.isEmpty, "\(strangers.count) files other than \(name) and its own temporary appeared beside it, "
                      + "such as \(strangers.prefix(3))", file: file, line: line)
        XCTAssertTrue(names.contains(name), file: file, line: line)
    }

    /// A large write (tens of milliseconds): Foundation's `FileManager.createFile` would write it
    /// to a hidden `.dat.nosync…` file first, one that no handler knows to remove.
    func testWriteMakesNoOtherFile() throws {
        let target = folder.appendingPathComponent("model.bin").path
        var bytes = [UInt8](repeating: 0, count: 48 << 20)
        for i in stride(from: 0, to: bytes.count, by: 4096) { bytes[i] = UInt8(truncatingIfNeeded: i >> 12) }
        let data = Data(bytes)
        let names = try namesSeen { for _ in 0..<2 { try AtomicFile.write(data, to: target) } }
        assertOnlyOwnNames(names, for: "model.bin")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: target)), data)
        let mode = try FileManager.default.attributesOfItem(atPath: target)[.posixPermissions] as? Int
        let mask = umask(0); umask(mask)
        XCTAssertEqual(mode, 0o666 & ~Int(mask), "an output gets the permissions the umask allows")
    }

    func testStreamMakesNoOtherFileAndAppearsOnlyWhenCommitted() throws {
        let target = folder.appendingPathComponent("report.csv").path
        let names = try namesSeen {
            for round in 0..<200 {
                let stream = try AtomicFile.Stream(replacing: target)
                try stream.handle.write(contentsOf: Data("round \(round)\n".utf8))
                if round % 2 == 0 { try stream.commit() } else { stream.abandon() }
            }
        }
        assertOnlyOwnNames(names, for: "report.csv")
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "round 198\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["report.csv"])
    }

    func testCreateFileRefusesAnExistingFile() throws {
        let path = folder.appendingPathComponent("scratch").path
        let handle = try XCTUnwrap(ScratchFiles.createFile(path, permissions: 0o600))
        try handle.write(contentsOf: Data([1, 2, 3]))
        try handle.close()
        XCTAssertNil(ScratchFiles.createFile(path), "an existing file is not truncated")
        XCTAssertEqual(errno, EEXIST)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), Data([1, 2, 3]))
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int, 0o600)
        // Made and tracked under one lock: a path that exists is neither made nor tracked.
        XCTAssertThrowsError(try ScratchFiles.createTrackedFile(path)) { error in
            XCTAssertEqual((error as? ScratchFiles.CreateError)?.code, EEXIST)
            XCTAssertTrue("\(error)".hasPrefix(path + ": "), "\(error)")
        }
        XCTAssertThrowsError(try ScratchFiles.makeTrackedFolder(folder.path)) { error in
            XCTAssertEqual((error as? ScratchFiles.CreateError)?.code, EEXIST)
        }
        let inner = folder.appendingPathComponent("inner").path
        let token = try ScratchFiles.makeTrackedFolder(inner)
        ScratchFiles.untrack(token)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: inner)[.posixPermissions] as? Int, 0o700)
    }
}
