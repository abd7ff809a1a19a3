import BNFolding
import BNKit
import Foundation
import ModelIR
import Runtime
import TestSupport
import XCTest

/// ONNX files exported by real PyTorch with their BatchNormalization nodes (Fixtures/onnx, made by
/// tools/make_torch_fixtures.sh), through the CLIs and the library, against PyTorch's eval-mode
/// outputs. Found by listing the folder: nothing depends on the fixtures' names.
final class ONNXImportTests: XCTestCase {
    static var fixtures: [String] {
        let folder = TestPaths.fixture("onnx")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasSuffix(".onnx") }.sorted().map { folder + "/" + $0.dropLast(5) }
    }

    private func relativeError(_ got: [Float], _ expected: [Float]) -> Float {
        maxAbsDifference(got, expected) / max(expected.map(abs).max() ?? 0, 1e-30)
    }

    func testPyTorchExportsFoldAndRunWithPyTorchOutputs() throws {
        let folder = try temporaryFolder()
        XCTAssertGreaterThanOrEqual(Self.fixtures.count, 2)
        for base in Self.fixtures {
            let name = URL(fileURLWithPath: base).lastPathComponent
            let expected = try NPYValues(base + ".y.npy").values
            // Unfolded, straight from the .onnx (fed NCHW arrays, as the graph declares).
            let direct = folder.appendingPathComponent(name + ".direct.npy").path
            let run = try runTool("bnrun", [base + ".onnx", base + ".x.npy", "--format", "npy", "--output", direct])
            XCTAssertEqual(run.status, 0, "\(name): \(run.stderr)")
            XCTAssertLessThanOrEqual(relativeError(try NPYValues(direct).values, expected), 1e-5, "\(name) unfolded")
            // Folded: every BN reported, none left.
            let bin = folder.appendingPathComponent(name + ".bin").path
            let fold = try runTool("bnconv", ["fold", base + ".onnx", "-o", bin])
            XCTAssertEqual(fold.status, 0, "\(name): \(fold.stderr)")
            XCTAssertTrue(fold.stdout.contains("folded into"), fold.stdout)
            let folded = try Model.load(path: bin)
            XCTAssertFalse(folded.graph.nodes.contains { $0.operation.kind == "batch_norm" }, name)
            let out = folder.appendingPathComponent(name + ".out.npy").path
            XCTAssertEqual(try runTool("bnrun", [bin, base + ".x.npy", "--format", "npy", "--output", out]).status, 0)
            let error = relativeError(try NPYValues(out).values, expected)
            print("\(name): PyTorch export folded by bnconv, run by bnrun: relative error \(error)")
            XCTAssertLessThanOrEqual(error, 1e-5, "\(name) folded")
            // inspect and verify read it; .bin keeps it bit for bit; it exports back to ONNX.
            XCTAssertEqual(try runTool("bnconv", ["inspect", base + ".onnx"]).status, 0)
            let verify = try runTool("bnconv", ["verify", base + ".onnx"])
            XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
            let model = try Model.load(path: base + ".onnx")
            let copy = folder.appendingPathComponent(name + ".copy.bin").path
            try model.save(to: copy)
            XCTAssertEqual(try Model.load(path: copy).graph, model.graph)
            let again = folder.appendingPathComponent(name + ".again.onnx").path
            XCTAssertEqual(try runTool("bnconv", ["convert", bin, again]).status, 0)
            let x = try NPYValues(base + ".x.npy").values
            let reread = try Executor(graph: try Model.load(path: again).graph).run(x)
            XCTAssertLessThanOrEqual(relativeError(reread, expected), 1e-5, "\(name) folded, exported to ONNX and read back")
        }
    }

    func testDamagedONNXFilesGetOneClearError() throws {
        let folder = try temporaryFolder()
        guard let base = Self.fixtures.first else { return XCTFail("no ONNX fixture") }
        let data = try Data(contentsOf: URL(fileURLWithPath: base + ".onnx"))
        let cases: [(String, Data)] = [
            ("truncated.onnx", data.prefix(data.count * 2 / 3)),
            ("flipped.onnx", Data(data.enumerated().map { $0.offset % 97 == 13 ? $0.element ^ 0x5A : $0.element })),
        ]
        for (file, bytes) in cases {
            let path = folder.appendingPathComponent(file).path
            try bytes.write(to: URL(fileURLWithPath: path))
            let out = folder.appendingPathComponent(file + ".bin").path
            let fold = try runTool("bnconv", ["fold", path, "-o", out])
            // Damage is refused (exit 65, one line naming the file), or, where it only changed weights, read.
            if fold.status != 0 {
                XCTAssertEqual(fold.status, 65, fold.stderr)
                XCTAssertTrue(fold.stderr.contains(path), fold.stderr)
                XCTAssertEqual(fold.stderr.split(separator: "\n").count, 1, fold.stderr)
                XCTAssertFalse(FileManager.default.fileExists(atPath: out))
            }
        }
    }
}
