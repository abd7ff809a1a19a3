import BNKit
import Dispatch
import Foundation
import TestSupport
import XCTest

/// The isolated reader gives the same models as libhdf5 in process, bit for bit.
final class IsolatedLoadTests: XCTestCase {
    /// Loads `path` isolated and in process (median of `repeats` timed loads each, after one
    /// untimed), checks they agree and returns the two times in seconds.
    @discardableResult
    private func assertSameLoad(_ path: String, repeats: Int = 1, line: UInt = #line) throws -> (isolated: Double, inProcess: Double) {
        func timed(_ isolation: HDF5Isolation) throws -> (Model, Double) {
            HDF5ChildProcess.isolation = isolation
            var model = try Model.load(path: path)
            var times: [Double] = []
            for _ in 0..<repeats {
                let start = DispatchTime.now().uptimeNanoseconds
                model = try Model.load(path: path)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            return (model, times.sorted()[times.count / 2])
        }
        defer { HDF5ChildProcess.isolation = .automatic }
        let (isolated, isolatedTime) = try timed(.automatic)
        let (direct, directTime) = try timed(.inProcess)
        XCTAssertEqual(isolated.graph.nodes.map(\.name), direct.graph.nodes.map(\.name), path, line: line)
        for (a, b) in zip(isolated.graph.nodes, direct.graph.nodes) {
            XCTAssertEqual(a.operation.weights.count, b.operation.weights.count, "\(path) \(a.name)", line: line)
            for (x, y) in zip(a.operation.weights, b.operation.weights) {
                XCTAssertTrue(x.tensor.isBitIdentical(to: y.tensor), "\(path) \(a.name) \(x.role)", line: line)
            }
        }
        XCTAssertEqual(isolated.graph, direct.graph, path, line: line)
        XCTAssertEqual(isolated.sourceFormat, direct.sourceFormat, path, line: line)
        XCTAssertEqual(isolated.keras?.modelConfig, direct.keras?.modelConfig, path, line: line)
        XCTAssertEqual(isolated.keras?.optimizerWeights, direct.keras?.optimizerWeights, path, line: line)
        return (isolatedTime, directTime)
    }

    func testEveryFixtureLoadsTheSameIsolated() throws {
        guard case .childProcess = HDF5Isolation.automatic else { return XCTFail("bnkit-hdf5-reader not found next to the test bundle") }
        let folder = TestPaths.fixture("")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder)
            .filter { ($0.hasSuffix(".h5") || $0.hasSuffix(".keras")) && !$0.hasPrefix("two_inputs") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, 15)
        for file in files { try assertSameLoad(folder + "/" + file) }
        let (isolated, inProcess) = try assertSameLoad(folder + "/seed_mlp_keras3.h5", repeats: 5)
        print(String(format: "seed_mlp_keras3.h5 load time (median of 5): isolated %.1f ms, in process %.1f ms", isolated * 1000, inProcess * 1000))
    }

    /// Models too large to commit (tools/make_applications_model.py): set
    /// BNKIT_APPLICATIONS_DIR to a folder of .h5/.keras files to check them too.
    func testApplicationsModelsLoadTheSameIsolated() throws {
        guard let folder = ProcessInfo.processInfo.environment["BNKIT_APPLICATIONS_DIR"] else {
            throw XCTSkip("BNKIT_APPLICATIONS_DIR not set")
        }
        for file in try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        where file.hasSuffix(".h5") || file.hasSuffix(".keras") {
            let (isolated, inProcess) = try assertSameLoad(folder + "/" + file, repeats: 5)
            print(String(format: "isolated load equals in-process load: %@; load time (median of 5) isolated %.0f ms, in process %.0f ms",
                         file, isolated * 1000, inProcess * 1000))
        }
    }
}

/// A reader child that dies (killed for its time, crashed by a hostile file) leaves no temporary
/// file behind: its temporary folder is the parent's private one, removed when the child ends.
final class IsolatedTemporaryFilesTests: XCTestCase {
    func testACrashedChildLeavesNoTemporaryFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("bnkit-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: folder) }
        // A stand-in reader: notes where its temporary files go, writes one there as the real
        // reader extracts a .keras archive's weights, and crashes.
        let report = folder.appendingPathComponent("report").path
        let reader = folder.appendingPathComponent("reader.sh").path
        try """
        #!/bin/sh
        printf '%s\\n%s\\n' "${TMPDIR:-/tmp}" "$5" > '\(report)'
        : > "${TMPDIR:-/tmp}/bnkit-crashed-child.weights.h5"
        kill -SEGV $$
        """.write(toFile: reader, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: reader)
        HDF5ChildProcess.isolation = .childProcess(executable: reader)
        defer { HDF5ChildProcess.isolation = .automatic }
        let model = TestPaths.fixture("small_cnn_keras3.keras")
        XCTAssertThrowsError(try Model.load(path: model)) { error in
            XCTAssertTrue("\(error)".contains("crashed") && "\(error)".contains(model), "\(error)")
        }
        let lines = try String(contentsOfFile: report, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2)
        // The child's temporary folder is the one its output goes in, and it is gone with its file.
        XCTAssertEqual(lines.first, (lines.last.map { ($0 as NSString).deletingLastPathComponent }))
        XCTAssertFalse(FileManager.default.fileExists(atPath: lines[0] + "/bnkit-crashed-child.weights.h5"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: lines[0]))
    }
}
