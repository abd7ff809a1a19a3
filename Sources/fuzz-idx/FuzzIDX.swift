// Fuzz target: the IDX reader, plain and gzip (gzip inputs are made by
// prefixing the fuzz input's first byte: odd = gzip-compress the rest).
import Foundation
import IDX

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIDX(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Data(bytes: data, count: size)
    if let array = try? IDXReader.parse(bytes, path: "fuzz") {
        // Every element must be readable.
        if array.count > 0 {
            _ = array.value(at: array.count - 1)
            _ = array.floats(0..<min(array.count, 16), divisor: 255)
        }
        _ = array.integers()
    }
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
        exit(LLVMFuzzerRunDriver(&argc, &argv, { data, size in fuzzIDX(data, size) }))
        #else
        // Replays the files given as arguments (regression inputs, corpora).
        for path in CommandLine.arguments.dropFirst() {
            let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            _ = data.withUnsafeBufferPointer { fuzzIDX($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
        }
        #endif
    }
}
