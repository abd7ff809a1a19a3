// The entry point every fuzz target shares: under libFuzzer (-DFUZZING) it
// hands the target to the fuzzer driver; in a plain build it replays the
// files named on the command line (regression inputs, corpora).
import Foundation

public typealias FuzzTarget = @convention(c) (UnsafePointer<UInt8>, Int) -> Int32

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: FuzzTarget) -> Int32
#endif

public func runFuzzTarget(_ target: FuzzTarget) throws -> Never {
    #if FUZZING
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, target))
    #else
    for path in CommandLine.arguments.dropFirst() {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        _ = data.withUnsafeBufferPointer { target($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
    }
    exit(0)
    #endif
}
