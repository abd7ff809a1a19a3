// Fuzz target: the IDX reader, plain and gzip (gzip inputs are made by
// prefixing the fuzz input's first byte: odd = gzip-compress the rest).
import Foundation
import FuzzSupport
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

@main
struct Main {
    static func main() throws {
        try runFuzzTarget { data, size in fuzzIDX(data, size) }
    }
}
