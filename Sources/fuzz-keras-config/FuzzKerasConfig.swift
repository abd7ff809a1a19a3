// Fuzz target: the Keras model-config parser and graph builder (JSON →
// model), with weights synthesized to fit whatever the config asks for.
import Foundation
@_spi(Fuzzing) import KerasHDF5

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzKerasConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = try? KerasConfigFuzzing.buildGraph(configJSON: text)
    return 0
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Int32
#endif

@main
struct Main {
    static func main() throws {
        #if FUZZING
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, { data, size in fuzzKerasConfig(data, size) }))
        #else
        // Replays the files given as arguments (regression inputs, corpora).
        for path in CommandLine.arguments.dropFirst() {
            let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            _ = data.withUnsafeBufferPointer { fuzzKerasConfig($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
        }
        #endif
    }
}
