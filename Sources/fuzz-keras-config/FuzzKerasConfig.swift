// Fuzz target: the Keras model-config parser and graph builder (JSON →
// model), with weights synthesized to fit whatever the config asks for.
import Foundation
import FuzzSupport
@_spi(Fuzzing) import KerasHDF5

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzKerasConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = try? KerasConfigFuzzing.buildGraph(configJSON: text)
    return 0
}

@main
struct Main {
    static func main() throws {
        try runFuzzTarget { data, size in fuzzKerasConfig(data, size) }
    }
}
