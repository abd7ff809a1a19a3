import Foundation
import IDX
import TestSupport
import XCTest

final class IDXTests: XCTestCase {
    private func idx(_ type: UInt8, _ dims: [UInt32], _ payload: [UInt8]) -> Data {
        var bytes: [UInt8] = [0, 0, type, UInt8(dims.count)]
        for d in dims { bytes += [UInt8(d >> 24), UInt8((d >> 16) & 0xFF), UInt8((d >> 8) & 0xFF), UInt8(d & 0xFF)] }
        return Data(bytes + payload)
    }

    private func gzip(_ data: Data) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/gzip")
        process.arguments = ["-c"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(data)
        try input.fileHandleForWriting.close()
        let result = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return result
    }

    func testAllSixTypesBigEndian() throws {
        let cases: [(UInt8, [UInt8], [Double])] = [
            (0x08, [0, 255, 7], [0, 255, 7]),
            (0x09, [0x80, 0x7F, 0xFF], [-128, 127, -1]),
            (0x0B, [0x80, 0x00, 0x01, 0x02, 0xFF, 0xFF], [-32768, 258, -1]),
            (0x0C, [0x80, 0, 0, 0, 0, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFE], [-2_147_483_648, 256, -2]),
            (0x0D, [0x3F, 0x80, 0, 0, 0xC0, 0x49, 0x0F, 0xDB, 0, 0, 0, 1], [1, Double(Float(-3.14159274)), Double(Float.leastNonzeroMagnitude)]),
            (0x0E, [0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 0xEF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], [1, -2, Double.greatestFiniteMagnitude]),
        ]
        for (type, payload, expected) in cases {
            let array = try IDXReader.parse(idx(type, [3], payload), path: "t")
            XCTAssertEqual(array.dataType.rawValue, type)
            XCTAssertEqual((0..<3).map { array.value(at: $0) }, expected, "type 0x\(String(type, radix: 16))")
        }
    }

    /// `floats` has typed fast paths; each must give exactly `Float(value) * multiplier / divisor`.
    func testFloatsMatchTheElementDefinitionForEveryType() throws {
        var generator = SystemRandomNumberGenerator()
        for type in IDXDataType.allCases {
            let count = type.size == 1 ? 256 : 300
            let payload: [UInt8] = type.size == 1 ? (0..<256).map { UInt8($0) }
                : (0..<(count * type.size)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let array = try IDXReader.parse(idx(type.rawValue, [UInt32(count)], payload), path: "t")
            for (multiplier, divisor) in [(Float(1), Float(1)), (1, 255), (2, 3)] {
                let expected = (5..<count).map { Float(array.value(at: $0)) * multiplier / divisor }
                let found = array.floats(5..<count, multiplier: multiplier, divisor: divisor)
                XCTAssertEqual(found.map(\.bitPattern), expected.map(\.bitPattern), "\(type) \(multiplier)/\(divisor)")
            }
        }
    }

    func testManyDimensionsAndItemSize() throws {
        let payload = (0..<120).map { UInt8($0) }
        let array = try IDXReader.parse(idx(0x08, [2, 3, 4, 5], payload), path: "t")
        XCTAssertEqual(array.dimensions, [2, 3, 4, 5])
        XCTAssertEqual(array.itemCount, 2)
        XCTAssertEqual(array.itemSize, 60)
        XCTAssertEqual(array.floats(60..<63), [60, 61, 62])
        XCTAssertEqual(array.floats(0..<3, divisor: 255), [0, Float(1) / 255, Float(2) / 255])
    }

    func testGzipIsDetectedByContentNotName() throws {
        let folder = try temporaryFolder()
        let plain = idx(0x08, [2, 2], [1, 2, 3, 4])
        let gzPath = folder.appendingPathComponent("named-plain.idx").path
        try gzip(plain).write(to: URL(fileURLWithPath: gzPath))
        let plainPath = folder.appendingPathComponent("named-compressed.gz").path
        try plain.write(to: URL(fileURLWithPath: plainPath))
        for path in [gzPath, plainPath] {
            let array = try IDXReader.read(path: path)
            XCTAssertEqual(array.floats(0..<4), [1, 2, 3, 4], path)
        }
    }

    func testRealMNISTTestSet() throws {
        let images = try IDXReader.read(path: TestPaths.testImages)
        XCTAssertEqual(images.dimensions, [10_000, 28, 28])
        XCTAssertEqual(images.dataType, .uint8)
        let labels = try IDXReader.read(path: TestPaths.testLabels)
        XCTAssertEqual(Array(try XCTUnwrap(labels.integers()).prefix(5)), [7, 2, 1, 0, 4])
    }

    func testHeaderThatClaimsMoreDataThanTheFileHolds() throws {
        XCTAssertThrowsError(try IDXReader.parse(idx(0x08, [10, 28, 28], [UInt8](repeating: 0, count: 7839)), path: "short.idx")) {
            XCTAssertEqual($0 as? IDXError, .sizeMismatch(path: "short.idx", dimensions: [10, 28, 28], expectedBytes: 7840, actualBytes: 7839))
        }
        XCTAssertThrowsError(try IDXReader.parse(try gzip(idx(0x08, [10, 28, 28], [UInt8](repeating: 0, count: 100))), path: "short.gz"))
    }

    func testHeaderThatClaimsLessDataThanTheFileHolds() throws {
        XCTAssertThrowsError(try IDXReader.parse(idx(0x08, [3], [1, 2, 3, 4]), path: "long.idx"))
        // A gzip stream that inflates far beyond its header is stopped at the header's size.
        let bomb = try gzip(idx(0x08, [4], [UInt8](repeating: 0, count: 50_000_000)))
        XCTAssertThrowsError(try IDXReader.parse(bomb, path: "bomb.gz")) { XCTAssertTrue("\($0)".contains("more than"), "\($0)") }
    }

    func testUnknownTypeCodeAndBadMagic() {
        XCTAssertThrowsError(try IDXReader.parse(idx(0x0A, [1], [0]), path: "t.idx")) {
            XCTAssertEqual($0 as? IDXError, .unknownType(path: "t.idx", code: 0x0A))
            XCTAssertTrue("\($0)".contains("0xA"))
        }
        XCTAssertThrowsError(try IDXReader.parse(Data([1, 0, 8, 1, 0, 0, 0, 1, 0]), path: "t.idx")) {
            XCTAssertEqual($0 as? IDXError, .badMagic(path: "t.idx"))
        }
        XCTAssertThrowsError(try IDXReader.parse(Data([0, 0, 8, 0]), path: "t.idx"))
        XCTAssertThrowsError(try IDXReader.parse(Data(), path: "t.idx"))
        XCTAssertThrowsError(try IDXReader.parse(Data([0, 0, 8, 3, 0, 0]), path: "t.idx"))
    }

    func testHugeDeclaredSizesAreRefusedBeforeAllocation() {
        XCTAssertThrowsError(try IDXReader.parse(idx(0x0E, [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], []), path: "t.idx")) {
            if case .sizeOverflow = $0 as? IDXError {} else { XCTFail("\($0)") }
        }
    }

    func testTruncatedGzip() throws {
        let compressed = try gzip(idx(0x08, [1000], (0..<1000).map { UInt8($0 % 251) }))
        XCTAssertThrowsError(try IDXReader.parse(compressed.prefix(compressed.count - 12), path: "t.gz")) {
            XCTAssertTrue("\($0)".contains("t.gz"), "\($0)")
        }
    }

    // MARK: - Streaming

    private func write(_ data: Data, _ name: String) throws -> String {
        let path = try temporaryFolder().appendingPathComponent(name).path
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    func testStreamReadsWhatTheWholeFileReaderReads() throws {
        let whole = try IDXReader.read(path: TestPaths.testImages)
        for path in [TestPaths.testImages, try write(try gzip(idx(0x0B, [7, 3], (0..<42).map { UInt8($0 * 5 % 256) })), "s.idx"),
                     try write(idx(0x0D, [5, 2], (0..<40).map { UInt8($0) }), "f.idx")] {
            let stream = try IDXStream(path: path)
            let reference = try IDXReader.read(path: path)
            XCTAssertEqual(stream.dimensions, reference.dimensions)
            var values: [Float] = []
            while stream.position < stream.itemCount { values += try stream.next(3, divisor: 255) }
            XCTAssertEqual(values.map(\.bitPattern), reference.floats(0..<reference.count, divisor: 255).map(\.bitPattern), path)
        }
        XCTAssertEqual(whole.itemCount, 10_000)
    }

    /// Small gzip files are inflated whole by libdeflate, large ones stream through
    /// zlib: both give the same values, and the same refusals, as the whole-file reader.
    func testWholeAndStreamedInflationAgree() throws {
        func values(_ path: String, limit: Int) throws -> [Float] {
            let stream = try IDXStream(path: path, inflateWholeUpTo: limit)
            var all: [Float] = []
            var tile: [Float] = []
            while stream.position < stream.itemCount {
                try stream.next(777, into: &tile, divisor: 255)
                all += tile
            }
            return all
        }
        let mnist = TestPaths.testImages
        let whole = try values(mnist, limit: IDXStream.wholeInflateLimit)
        XCTAssertEqual(whole.count, 10_000 * 784)
        XCTAssertEqual(try values(mnist, limit: 0).map(\.bitPattern), whole.map(\.bitPattern))
        let reference = try IDXReader.read(path: mnist)
        XCTAssertEqual(reference.floats(0..<reference.count, divisor: 255).map(\.bitPattern), whole.map(\.bitPattern))

        // Damaged files, both ways: a trailer that lies about the size, trailing bytes,
        // a truncated stream, a flipped byte in the compressed data.
        let folder = try temporaryFolder()
        let good = try gzip(idx(0x08, [4, 3], (0..<12).map { UInt8($0) }))
        var lyingSize = good; lyingSize[lyingSize.count - 4] ^= 0x01
        let trailing = good + Data([0x00, 0x01])
        let truncated = good.prefix(good.count - 6)
        var flipped = good; flipped[12] ^= 0x40
        for (name, data) in [("good", good), ("lying-size", lyingSize), ("trailing", trailing), ("truncated", Data(truncated)), ("flipped", flipped)] {
            let path = folder.appendingPathComponent("\(name).idx.gz").path
            try data.write(to: URL(fileURLWithPath: path))
            let small = Result { try values(path, limit: IDXStream.wholeInflateLimit) }
            let streamed = Result { try values(path, limit: 0) }
            switch (small, streamed) {
            case let (.success(a), .success(b)): XCTAssertEqual(a, b, name)
            case let (.failure(a), .failure(b)): XCTAssertEqual("\(a)", "\(b)", name)
            default: XCTFail("\(name): inflated whole \(small), streamed \(streamed)")
            }
        }
    }

    func testStreamRefusesLyingHeaders() throws {
        XCTAssertThrowsError(try IDXStream(path: try write(idx(0x08, [10, 28, 28], [UInt8](repeating: 0, count: 7839)), "short.idx"))) {
            guard case .sizeMismatch = $0 as? IDXError else { return XCTFail("\($0)") }
        }
        // gzip: a stream shorter than its header, and one longer (stopped at the header's size).
        let short = try IDXStream(path: try write(try gzip(idx(0x08, [10, 4], [UInt8](repeating: 1, count: 20))), "short.gz"))
        XCTAssertThrowsError(try short.next(10))
        let long = try IDXStream(path: try write(try gzip(idx(0x08, [4], [UInt8](repeating: 0, count: 5_000_000))), "long.gz"))
        XCTAssertThrowsError(try long.next(4)) { XCTAssertTrue("\($0)".contains("more than"), "\($0)") }
        let compressed = try gzip(idx(0x08, [1000], (0..<1000).map { UInt8($0 % 251) }))
        let truncated = try IDXStream(path: try write(compressed.prefix(compressed.count - 12), "cut.gz"))
        XCTAssertThrowsError(try truncated.next(1000))
        XCTAssertThrowsError(try IDXStream(path: try write(Data(), "empty.idx")))
        XCTAssertThrowsError(try IDXStream(path: "/nonexistent.idx"))
    }

    /// Found by fuzz-idx: a gzip file whose header declares zero items, followed by corrupt
    /// deflate data, was refused by the whole-file reader but accepted by the stream (it had
    /// nothing to read, so never looked further). The stream now checks the end at once.
    func testZeroItemGzipWithCorruptTailIsRefusedByBothReaders() throws {
        let path = TestPaths.root.appendingPathComponent("Fixtures/fuzz-regressions/fuzz-idx/stream-vs-whole-gzip").path
        XCTAssertThrowsError(try IDXReader.read(path: path))
        XCTAssertThrowsError(try IDXStream(path: path)) { XCTAssertTrue("\($0)".hasPrefix(path + ": damaged gzip data"), "\($0)") }
    }

    /// Found by fuzz-idx: dimensions [0, huge, huge, ...] have a total size of 0, so the size
    /// check passed, and counting the elements per item overflowed (a trap). Now refused.
    func testZeroFirstDimensionWithHugeOthersIsRefused() throws {
        let lying = idx(0x08, [0, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], [])
        XCTAssertThrowsError(try IDXReader.parse(lying, path: "t.idx")) {
            if case .sizeOverflow = $0 as? IDXError {} else { XCTFail("\($0)") }
        }
        let path = try write(lying, "zero.idx")
        XCTAssertThrowsError(try IDXStream(path: path)) { if case .sizeOverflow = $0 as? IDXError {} else { XCTFail("\($0)") } }
    }
}
