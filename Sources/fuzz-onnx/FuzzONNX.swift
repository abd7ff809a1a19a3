// Fuzz target: the ONNX reader (protobuf decoding with its limits, the tensor size checks, the
// import into the IR and its shape checks). Every model it accepts must be a valid graph that the
// runtime can plan and run on one sample.
import Foundation
import FuzzSupport
import ModelIR
import ONNXFormat
import Runtime

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzONNX(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Data(bytes: data, count: size)
    guard let model = try? ONNXReader.decode(bytes, name: "fuzz") else { return 0 }
    let shapes = try? model.graph.inferShapes()
    precondition(shapes != nil, "the reader returned a graph whose shapes do not check")
    if let executor = try? Executor(graph: model.graph), executor.inputSize > 0, executor.inputSize <= 1 << 16 {
        _ = try? executor.run([Float](repeating: 0.5, count: executor.inputSize))
    }
    return 0
}

@main
struct Main {
    static func main() throws {
        try runFuzzTarget { data, size in fuzzONNX(data, size) }
    }
}
