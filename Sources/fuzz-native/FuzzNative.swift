// Fuzz target: the bnkit .bin reader. Built with libFuzzer by tools/fuzz.sh
// (-sanitize=fuzzer,address -DFUZZING); a plain build replays files given
// as arguments (regression inputs).
import Foundation
import FuzzSupport
import ModelIR
import NativeFormat

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNative(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Data(bytes: data, count: size)
    check(bytes)
    // Checksums stop almost every mutation at the door; also decode the input
    // with its checksums repaired, so the structural checks behind them are fuzzed too.
    if let repaired = repairingChecksums(bytes) { check(repaired) }
    return 0
}

private func check(_ bytes: Data) {
    if let model = try? NativeFormat.decode(bytes, path: "fuzz") {
        // Whatever decodes must re-encode and decode to the same model.
        let again = try! NativeFormat.decode(try! NativeFormat.encode(model), path: "fuzz")
        precondition(again.graph == model.graph, "re-encoded model differs")
    }
}

private func repairingChecksums(_ input: Data) -> Data? {
    var bytes = [UInt8](input)
    guard bytes.count >= 64 else { return nil }
    func u64(_ o: Int) -> Int? {
        let v = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[o + $1]) << (8 * UInt64($1)) }
        return v <= UInt64(bytes.count) ? Int(v) : nil
    }
    func put(_ value: UInt32, _ o: Int) { for k in 0..<4 { bytes[o + k] = UInt8((value >> (8 * UInt32(k))) & 0xFF) } }
    guard let headerLength = u64(24), let dataOffset = u64(32), 64 + headerLength <= bytes.count, dataOffset <= bytes.count else { return nil }
    put(CRC32C.checksum(bytes[64..<(64 + headerLength)]), 48)
    put(CRC32C.checksum(bytes[dataOffset...]), 52)
    put(CRC32C.checksum(bytes[0..<56]), 56)
    return Data(bytes)
}

@main
struct Main {
    static func main() throws {
        if CommandLine.arguments.count == 3, CommandLine.arguments[1] == "--write-seeds" {
            try writeSeeds(to: CommandLine.arguments[2])
            return
        }
        try runFuzzTarget { data, size in fuzzNative(data, size) }
    }
}

/// Small models holding every op kind, as a seed corpus (fixture-sized files
/// make the fuzzer slow without reaching more code).
func writeSeeds(to folder: String) throws {
    func t(_ shape: [Int], _ seed: Float = 0.5) throws -> Tensor {
        let count = shape.reduce(1, *)
        return try Tensor(shape: shape, values: (0..<count).map { Float($0 % 7) * seed - 1 })
    }
    let bn = try BatchNorm(gamma: t([4]), beta: t([4], 0.25), movingMean: t([4], 0.1), movingVariance: Tensor([1, 2, 3, 4]), epsilon: 1e-3)
    let graphs: [Graph] = [
        try Graph.sequential(name: "mlp", inputShape: [6], layers: [
            ("d", .dense(try Dense(kernel: t([6, 4]), bias: t([4]), activation: .linear))), ("bn", .batchNorm(bn)),
            ("s", .activation(.sigmoid)), ("o", .dense(try Dense(kernel: t([4, 3]), bias: nil, activation: .softmax))),
        ]),
        try Graph.sequential(name: "cnn", inputShape: [6, 6, 2], layers: [
            ("c", .conv2d(try Conv2D(kernel: t([3, 3, 2, 4]), bias: nil, strides: [2, 2], padding: .same))),
            ("bn", .batchNorm(bn)), ("r", .activation(.relu6)),
            ("dw", .depthwiseConv2d(try DepthwiseConv2D(kernel: t([2, 2, 4, 2]), bias: t([8]), padding: .valid, activation: .elu(alpha: 1)))),
            ("p", .pool2d(try Pool2D(kind: .max, size: [2, 2], strides: [1, 1], padding: .same))),
            ("z", .zeroPadding2d([1, 0, 0, 1])), ("g", .globalPool(kind: .average, keepDims: false)),
            ("a", .affine(try Affine(scale: t([8]), shift: t([8], 0.3)))), ("l", .activation(.leakyRelu(alpha: 0.3))),
        ]),
        try Graph(name: "joins", nodes: [
            Node(name: "in", operation: .input(shape: [2, 3]), inputs: []),
            Node(name: "f", operation: .flatten, inputs: ["in"]),
            Node(name: "r", operation: .reshape([3, -1]), inputs: ["f"]),
            Node(name: "h", operation: .activation(.hardSigmoid(slope: 0.2)), inputs: ["r"]),
            Node(name: "cat", operation: .concatenate(axis: 1), inputs: ["r", "h"]),
            Node(name: "sum", operation: .add, inputs: ["cat", "cat"]),
            Node(name: "m", operation: .multiply, inputs: ["sum", "cat"]),
            Node(name: "i", operation: .identity, inputs: ["m"]),
            Node(name: "c", operation: .activation(.clippedRelu(maxValue: 6, negativeSlope: 0.1, threshold: 0.5)), inputs: ["i"]),
        ], outputs: ["c"]),
    ]
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    for graph in graphs {
        let state = [try NamedArray(name: "iteration", shape: [], values: .int64([7]))]
        let data = try NativeFormat.encode(NativeModel(graph: graph, metadata: ["producer": "seed"], optimizerState: state))
        try data.write(to: URL(fileURLWithPath: folder + "/" + graph.name + ".bin"))
    }
}
