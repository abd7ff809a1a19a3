import Runtime
import XCTest

final class FloatMemoryTests: XCTestCase {
    /// Buffers start on a cache line; those of 2 MiB or more on a 2 MiB boundary (a huge page),
    /// and hold what is written to all of them.
    func testFloatMemoryAlignsLargeBuffersToHugePages() {
        for count in [0, 1, 1000, FloatMemory.hugePage / 4 - 1, FloatMemory.hugePage / 4, 3 * FloatMemory.hugePage / 4 + 5] {
            for huge in [false, true] {
                let buffer = FloatMemory.allocate(count, huge: huge)
                defer { FloatMemory.release(buffer) }
                let address = Int(bitPattern: buffer), large = huge && count * 4 >= FloatMemory.hugePage
                XCTAssertEqual(address % (large ? FloatMemory.hugePage : 64), 0, "\(count) floats, huge \(huge)")
                for i in 0..<max(count, 1) { buffer[i] = Float(i % 977) }
                XCTAssert((0..<max(count, 1)).allSatisfy { buffer[$0] == Float($0 % 977) }, "\(count) floats")
            }
        }
        FloatMemory.release(nil)
    }
}
