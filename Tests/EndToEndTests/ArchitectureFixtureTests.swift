import BNFolding
import BNKit
import Foundation
import ModelIR
import Runtime
import TestSupport
import XCTest

/// Every model in Fixtures/architectures (made by real Keras, both producers, by
/// tools/make_architecture_fixtures.py: SE, inverted residual with hard-swish, separable,
/// ConvNeXt, DenseNet, 1-D and U-Net blocks) against Keras's own outputs, through the CLIs
/// and the library; folding, `.bin` and `.h5` round trips keep the outputs. The fixtures are
/// found by listing the folder: nothing here depends on their names or shapes.
final class ArchitectureFixtureTests: XCTestCase {
    /// The fixtures' paths without extension (`…/unet_keras3`).
    static var fixtures: [String] {
        let folder = TestPaths.fixture("architectures")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasSuffix(".h5") }.sorted().map { folder + "/" + $0.dropLast(3) }
    }

    private func relativeError(_ got: [Float], _ expected: [Float]) -> Float {
        let scale = expected.map(abs).max() ?? 0
        return maxAbsDifference(got, expected) / max(scale, 1e-30)
    }

    func testFoldedModelsRunByTheCLIsGiveKerasOutputs() throws {
        let folder = try temporaryFolder()
        XCTAssertGreaterThanOrEqual(Self.fixtures.count, 14)
        for base in Self.fixtures {
            let name = URL(fileURLWithPath: base).lastPathComponent
            let bin = folder.appendingPathComponent(name + ".bin").path, out = folder.appendingPathComponent(name + ".out.npy").path
            let fold = try runTool("bnconv", ["fold", base + ".h5", "-o", bin])
            XCTAssertEqual(fold.status, 0, "\(name): \(fold.stderr)")
            let info = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: base + ".json"))) as? [String: Any]
            let batchNorms = info?["batch_norm_layers"] as? Int ?? -1
            let reported = fold.stdout.split(separator: "\n").filter { $0.contains("folded into") || $0.contains("kept as a per-channel") }
            XCTAssertEqual(reported.count, batchNorms, "\(name): one line per BatchNormalization layer\n\(fold.stdout)")
            let run = try runTool("bnrun", [bin, base + ".x.npy", "--format", "npy", "--output", out])
            XCTAssertEqual(run.status, 0, "\(name): \(run.stderr)")
            let expected = try NPYValues(base + ".y.npy").values, got = try NPYValues(out).values
            XCTAssertEqual(got.count, expected.count, name)
            guard got.count == expected.count else { continue }
            let error = relativeError(got, expected)
            print("\(name): folded by bnconv, run by bnrun: max abs error \(maxAbsDifference(got, expected)), relative \(error)")
            XCTAssertLessThanOrEqual(error, 1e-5, name)
        }
    }

    func testUnfoldedFoldedAndRoundTrippedModelsAgree() throws {
        let folder = try temporaryFolder()
        for base in Self.fixtures {
            let name = URL(fileURLWithPath: base).lastPathComponent
            let model = try Model.load(path: base + ".h5")
            let x = try NPYValues(base + ".x.npy").values, expected = try NPYValues(base + ".y.npy").values
            let unfolded = try Executor(graph: model.graph).run(x)
            XCTAssertLessThanOrEqual(relativeError(unfolded, expected), 1e-5, "\(name) unfolded")

            let result = try BNFolder.fold(model.graph)
            XCTAssertFalse(result.graph.nodes.contains { $0.operation.kind == "batch_norm" }, name)
            let folded = try Executor(graph: result.graph).run(x)
            XCTAssertLessThanOrEqual(relativeError(folded, unfolded), 1e-5, "\(name) folded vs unfolded")

            // .bin and .h5 keep the unfolded graph bit for bit; a folded .h5 (generated config) keeps its outputs.
            for ext in ["bin", "h5"] {
                let path = folder.appendingPathComponent("\(name).\(ext)").path
                try model.save(to: path)
                XCTAssertEqual(try Model.load(path: path).graph, model.graph, "\(name) round trip through .\(ext)")
            }
            let foldedPath = folder.appendingPathComponent("\(name).folded.h5").path
            try Model(graph: result.graph).save(to: foldedPath)
            let reread = try Model.load(path: foldedPath)
            // (Exact, except where a fused hard-swish is spelled as layers both Keras versions read: x·ReLU6(x+3)·(1/6).)
            XCTAssertLessThanOrEqual(relativeError(try Executor(graph: reread.graph).run(x), folded), 1e-6, "\(name) folded, written as .h5 and read back")
        }
    }

    /// A map output (the U-Net's per-pixel softmax) is written whole; asking for classes is refused.
    func testMapOutputsAreWrittenWholeAndClassOptionsRefused() throws {
        guard let base = Self.fixtures.first(where: { (try? Model.load(path: $0 + ".h5")).map { try! Executor(graph: $0.graph).outputShape.count > 1 } ?? false })
        else { return XCTFail("no fixture with a map output") }
        let folder = try temporaryFolder()
        let bin = folder.appendingPathComponent("map.bin").path
        XCTAssertEqual(try runTool("bnconv", ["fold", base + ".h5", "-o", bin]).status, 0)
        let shape = try Executor(graph: try Model.load(path: bin).graph).outputShape
        let text = try runTool("bnrun", [bin, base + ".x.npy"])
        XCTAssertEqual(text.status, 0, text.stderr)
        let lines = text.stdout.split(separator: "\n").filter { $0.contains("\t") }
        XCTAssertEqual(lines.count, 4)
        XCTAssertEqual(lines.first?.split(separator: "\t").last?.split(separator: " ").count, shape.reduce(1, *))
        let csv = try runTool("bnrun", [bin, base + ".x.npy", "--format", "csv"])
        XCTAssertFalse(csv.stdout.hasPrefix("index,prediction"), "no argmax over a map")
        let names = folder.appendingPathComponent("names.txt").path
        try "a\nb\nc\n".write(toFile: names, atomically: true, encoding: .utf8)
        for options in [["--top", "2"], ["--class-names", names]] {
            let refused = try runTool("bnrun", [bin, base + ".x.npy"] + options)
            XCTAssertEqual(refused.status, 65, refused.stderr)
            XCTAssertTrue(refused.stderr.contains("not a vector of class scores"), refused.stderr)
        }
        // --format npy keeps the shape: (N, …output shape).
        let npy = folder.appendingPathComponent("map.npy").path
        XCTAssertEqual(try runTool("bnrun", [bin, base + ".x.npy", "--format", "npy", "--output", npy]).status, 0)
        let header = String(decoding: try Data(contentsOf: URL(fileURLWithPath: npy)).prefix(128), as: UTF8.self)
        XCTAssertTrue(header.contains("'shape': (4, " + shape.map(String.init).joined(separator: ", ") + ")"), header)
    }
}
