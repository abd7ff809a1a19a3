import Foundation
import HDF5
import TestSupport
import XCTest

final class HDF5Tests: XCTestCase {
    func testWriteAndReadBack() throws {
        let path = try temporaryFolder().appendingPathComponent("t.h5").path
        do {
            let root = try HDF5File.create(path).root()
            try root.setStringAttribute("utf8", "ünïcode ✓")
            try root.setStringArrayAttribute("names", ["a", "bb", ""])
            try root.setFixedStringAttribute("fixed", ["x", "yyyy"])
            try root.createFloatDataset("g/h/w:0", shape: [2, 3], values: [1, 2, 3, 4, 5, -0.0])
        }
        let root = try HDF5File.open(path).root()
        XCTAssertEqual(try root.stringAttribute("utf8"), "ünïcode ✓")
        XCTAssertEqual(try root.stringArrayAttribute("names"), ["a", "bb", ""])
        XCTAssertEqual(try root.stringArrayAttribute("fixed"), ["x", "yyyy"])
        XCTAssertEqual(try root.attributeNames().sorted(), ["fixed", "names", "utf8"])
        XCTAssertTrue(try root.hasChild("g/h/w:0"))
        XCTAssertFalse(try root.hasChild("g/nope/w"))
        XCTAssertEqual(try root.childKind("g/h"), .group)
        let dataset = try root.dataset("g/h/w:0")
        XCTAssertEqual(try dataset.shape(), [2, 3])
        XCTAssertEqual(try dataset.readFloats().map(\.bitPattern), [1, 2, 3, 4, 5, -0.0].map { Float($0).bitPattern })
    }

    func testErrorsAreValuesWithHDF5sMessage() throws {
        let path = try temporaryFolder().appendingPathComponent("t.h5").path
        _ = try HDF5File.create(path)
        let root = try HDF5File.open(path).root()
        XCTAssertThrowsError(try root.stringAttribute("missing")) { error in
            let error = error as? HDF5Error
            XCTAssertEqual(error?.operation, "read attribute 'missing' of '/'")
            XCTAssertFalse(error?.detail.isEmpty ?? true)
        }
        XCTAssertThrowsError(try root.dataset("nothing"))
        XCTAssertThrowsError(try HDF5File.open("/nonexistent.h5"))
    }
}
