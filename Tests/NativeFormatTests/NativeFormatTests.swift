import BNFolding
import Foundation
import KerasHDF5
import ModelIR
import NativeFormat
import TestSupport
import XCTest

final class NativeFormatTests: XCTestCase {
    private func seedGraph(_ producer: String) throws -> Graph {
        try KerasModelReader.read(path: try KerasReference(producer: producer).modelPath).graph
    }

    /// A model small enough to corrupt byte by byte: every op kind that has tensors.
    private func smallGraph() throws -> Graph {
        let dense = try Dense(kernel: Tensor(shape: [3, 2], values: [1, -2, 3.5, 0.25, -0.125, 7]), bias: Tensor([0.5, -0.5]), activation: .linear)
        let bn = try BatchNorm(gamma: Tensor([1.5, 0.5]), beta: Tensor([0.1, 0.2]), movingMean: Tensor([-1, 1]),
                               movingVariance: Tensor([2, 3]), epsilon: 1e-3)
        let affine = try Affine(scale: Tensor([2, 3]), shift: Tensor([-1, 1]))
        return try Graph.sequential(name: "small", inputShape: [3], layers: [
            ("d", .dense(dense)), ("bn", .batchNorm(bn)), ("a", .affine(affine)), ("s", .activation(.softmax)),
        ])
    }

    private func assertBitIdentical(_ a: Graph, _ b: Graph, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a, b, file: file, line: line)
        for (x, y) in zip(a.nodes, b.nodes) {
            XCTAssertEqual(x.operation.weights.map(\.role), y.operation.weights.map(\.role), file: file, line: line)
            for (p, q) in zip(x.operation.weights, y.operation.weights) {
                XCTAssertTrue(p.tensor.isBitIdentical(to: q.tensor), "\(x.name)/\(p.role)", file: file, line: line)
            }
        }
    }

    /// A .bin read from disk is memory-mapped and its weights are used in place:
    /// every weight tensor is a view of the mapping, equal bit for bit to the model
    /// that was written, and stays valid after the reader and file handle are gone.
    func testWeightsAreUsedInPlaceFromTheMappedFile() throws {
        let folded = try BNFolder.fold(try seedGraph("keras3")).graph
        let path = try temporaryFolder().appendingPathComponent("m.bin").path
        try NativeFormat.encode(NativeModel(graph: folded)).write(to: URL(fileURLWithPath: path))
        let read = try NativeFormat.read(path: path).graph
        try FileManager.default.removeItem(atPath: path)  // the mapping outlives the directory entry
        let weights = read.nodes.flatMap { $0.operation.weights.map(\.tensor) }
        XCTAssertFalse(weights.isEmpty)
        XCTAssertTrue(weights.allSatisfy(\.isView), "weights copied instead of used in place")
        assertBitIdentical(folded, read)
        // Pages given back (as the runtime does for kernels it repacked) come back from the file unchanged.
        weights.forEach { $0.releaseResidency() }
        assertBitIdentical(folded, read)
        // decode(_:) views its own aligned copy of the bytes (anonymous memory: releasing keeps it).
        let decoded = try NativeFormat.decode(try NativeFormat.encode(NativeModel(graph: folded))).graph
        XCTAssertTrue(decoded.nodes.flatMap { $0.operation.weights.map(\.tensor) }.allSatisfy(\.isView))
        decoded.nodes.flatMap { $0.operation.weights.map(\.tensor) }.forEach { $0.releaseResidency() }
        assertBitIdentical(folded, decoded)
    }

    func testCRC32CCheckValue() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        // The hardware instruction (where this CPU has it) and the tables agree on every
        // length and alignment.
        var state: UInt64 = 7
        let bytes = (0..<4099).map { _ -> UInt8 in state = state &* 6364136223846793005 &+ 1442695040888963407; return UInt8(state >> 56) }
        bytes.withUnsafeBytes { all in
            for start in 0..<9 {
                for length in [0, 1, 7, 8, 9, 63, 64, 65, 1000, 4090 - start] {
                    let slice = UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                    XCTAssertEqual(CRC32C.checksum(slice), CRC32C.portableChecksum(slice), "\(CRC32C.implementation) at \(start), \(length) bytes")
                }
            }
        }
        XCTAssertEqual(Array("123456789".utf8).withUnsafeBytes { CRC32C.portableChecksum($0) }, 0xE306_9283)
    }

    func testUnfoldedSeedModelsRoundTripBitExactly() throws {
        for producer in KerasReference.producers {
            let graph = try seedGraph(producer)
            let data = try NativeFormat.encode(NativeModel(graph: graph, metadata: ["producer": producer]))
            let decoded = try NativeFormat.decode(data)
            assertBitIdentical(graph, decoded.graph)
            XCTAssertEqual(decoded.metadata, ["producer": producer])
            XCTAssertEqual(decoded.graph.nodes.filter { $0.operation.kind == "batch_norm" }.count, 2, "BN layers kept with their four tensors")
            // bin -> bin is byte-identical.
            XCTAssertEqual(try NativeFormat.encode(decoded), data)
        }
    }

    func testSliceRoundTrips() throws {
        let graph = try Graph.sequential(name: "s", inputShape: [5, 4, 6], layers: [("split", .slice(axis: 2, start: 1, end: 4))])
        let decoded = try NativeFormat.decode(try NativeFormat.encode(NativeModel(graph: graph))).graph
        XCTAssertEqual(decoded.nodes.map(\.operation), graph.nodes.map(\.operation))
    }

    func testFoldedModelRoundTripsAndIsAligned() throws {
        let folded = try BNFolder.fold(try seedGraph("keras2")).graph
        let data = try NativeFormat.encode(NativeModel(graph: folded))
        assertBitIdentical(folded, try NativeFormat.decode(data).graph)
        // The data section starts at a multiple of 64, and so does every tensor.
        let dataOffset = data[32..<40].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(dataOffset % 64, 0)
        let headerLength = data[24..<32].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try XCTUnwrap(JSONSerialization.jsonObject(with: data[64..<(64 + headerLength)]) as? [String: Any])
        for tensor in try XCTUnwrap(header["tensors"] as? [[String: Any]]) {
            XCTAssertEqual((tensor["offset"] as? Int ?? 1) % 64, 0)
        }
    }

    func testEverySingleByteFlipIsDetected() throws {
        let data = try NativeFormat.encode(NativeModel(graph: try smallGraph(), metadata: ["k": "v"]))
        for position in 0..<data.count {
            for mask: UInt8 in [0x01, 0x80, 0xFF] {
                var corrupted = data
                corrupted[position] ^= mask
                XCTAssertThrowsError(try NativeFormat.decode(corrupted), "flip at \(position) with \(mask) went unnoticed")
            }
        }
    }

    func testSampledByteFlipsOfTheSeedModelAreDetected() throws {
        let data = try NativeFormat.encode(NativeModel(graph: try BNFolder.fold(try seedGraph("keras3")).graph))
        var random = SeededGenerator(seed: 3)
        for _ in 0..<300 {
            var corrupted = data
            let position = Int.random(in: 0..<data.count, using: &random)
            corrupted[position] ^= UInt8.random(in: 1...255, using: &random)
            XCTAssertThrowsError(try NativeFormat.decode(corrupted, path: "m.bin")) { error in
                XCTAssertTrue("\(error)".hasPrefix("m.bin: "), "\(error)")
            }
        }
    }

    func testEveryTruncationAndExtensionIsDetected() throws {
        let data = try NativeFormat.encode(NativeModel(graph: try smallGraph()))
        for length in 0..<data.count {
            XCTAssertThrowsError(try NativeFormat.decode(data.prefix(length)), "truncated to \(length)")
        }
        XCTAssertThrowsError(try NativeFormat.decode(data + Data([0])))
    }

    /// Rewrites the header JSON and recomputes every checksum, so that only
    /// the structural checks can catch the change.
    private func withHeader(_ data: Data, _ edit: (inout [String: Any]) -> Void) throws -> Data {
        let headerLength = data[24..<32].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        var header = try XCTUnwrap(JSONSerialization.jsonObject(with: data[64..<(64 + headerLength)]) as? [String: Any])
        edit(&header)
        let json = try JSONSerialization.data(withJSONObject: header)
        let dataOffset = data[32..<40].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let payload = data[dataOffset...]
        let newOffset = (64 + json.count + 63) / 64 * 64
        var file = Data(data[0..<64])
        func put32(_ v: UInt32, _ at: Int) { for k in 0..<4 { file[at + k] = UInt8((v >> (8 * UInt32(k))) & 0xFF) } }
        func put64(_ v: Int, _ at: Int) { for k in 0..<8 { file[at + k] = UInt8((v >> (8 * k)) & 0xFF) } }
        put64(json.count, 24)
        put64(newOffset, 32)
        put32(CRC32C.checksum([UInt8](json)), 48)
        put32(CRC32C.checksum([UInt8](file[0..<56])), 56)
        file += json + Data(count: newOffset - 64 - json.count) + payload
        return file
    }

    func testStructuralChecksBehindValidChecksums() throws {
        let data = try NativeFormat.encode(NativeModel(graph: try smallGraph()))
        XCTAssertNoThrow(try NativeFormat.decode(try withHeader(data) { _ in }))
        func tensors(_ header: inout [String: Any], _ edit: (inout [String: Any]) -> Void) {
            var list = header["tensors"] as! [[String: Any]]
            edit(&list[0])
            header["tensors"] = list
        }
        let cases: [(String, (inout [String: Any]) -> Void)] = [
            ("misaligned", { tensors(&$0) { $0["offset"] = 4 } }),
            ("outside", { tensors(&$0) { $0["offset"] = 1 << 20 } }),
            ("huge offset", { tensors(&$0) { $0["offset"] = Int.max - 63 } }),
            ("length vs shape", { tensors(&$0) { $0["shape"] = [3, 3] } }),
            ("huge shape", { tensors(&$0) { $0["shape"] = [Int.max, 4] } }),
            ("negative dim", { tensors(&$0) { $0["shape"] = [-3, -2] } }),
            ("dtype", { tensors(&$0) { $0["dtype"] = "float16" } }),
            ("format", { $0["format"] = "other" }),
            ("missing graph", { $0["graph"] = nil }),
        ]
        for (name, edit) in cases {
            XCTAssertThrowsError(try NativeFormat.decode(try withHeader(data, edit)), name) { print(name, "->", $0) }
        }
    }

    /// Found by fuzz-native: a NaN weight (behind valid checksums) decoded,
    /// then failed to compare equal after a round trip. Non-finite weights
    /// and non-positive variance are now refused.
    func testNonFiniteWeightsAndBadVarianceAreRefused() throws {
        let data = try NativeFormat.encode(NativeModel(graph: try smallGraph()))
        let header = try withHeader(data) { _ in }
        // The first tensor (d/kernel) starts at the data offset: make its first value NaN.
        let dataOffset = header[32..<40].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        for (bits, name) in [(Float.nan.bitPattern, "nan"), (Float.infinity.bitPattern, "inf")] {
            var bytes = header
            for k in 0..<4 { bytes[dataOffset + k] = UInt8((bits >> (8 * UInt32(k))) & 0xFF) }
            let crc = CRC32C.checksum([UInt8](bytes[dataOffset...]))
            for k in 0..<4 { bytes[52 + k] = UInt8((crc >> (8 * UInt32(k))) & 0xFF) }
            let crcPreamble = CRC32C.checksum([UInt8](bytes[0..<56]))
            for k in 0..<4 { bytes[56 + k] = UInt8((crcPreamble >> (8 * UInt32(k))) & 0xFF) }
            XCTAssertThrowsError(try NativeFormat.decode(bytes, path: "x.bin"), name) {
                XCTAssertTrue("\($0)".contains("non-finite"), "\($0)")
            }
        }
        let negative = try withHeader(data) { header in
            var nodes = (header["graph"] as! [String: Any])["nodes"] as! [[String: Any]]
            nodes[2]["epsilon"] = -5.0
            var graph = header["graph"] as! [String: Any]
            graph["nodes"] = nodes
            header["graph"] = graph
        }
        XCTAssertThrowsError(try NativeFormat.decode(negative))
    }

    func testUnsupportedVersionIsNamed() throws {
        var data = try NativeFormat.encode(NativeModel(graph: try smallGraph()))
        data[8] = 2
        let crc = CRC32C.checksum([UInt8](data[0..<56]))
        for k in 0..<4 { data[56 + k] = UInt8((crc >> (8 * UInt32(k))) & 0xFF) }
        XCTAssertThrowsError(try NativeFormat.decode(data, path: "x.bin")) {
            XCTAssertEqual($0 as? NativeFormatError, .unsupportedVersion(path: "x.bin", version: 2))
        }
    }
}
