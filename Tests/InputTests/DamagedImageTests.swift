import Foundation
import Images
import NumPy
import TestSupport
import XCTest

/// Damaged and hostile images: refused where Pillow (`keras.utils.load_img`) refuses them,
/// with the file named and the problem said; decoded to Pillow's pixels where Pillow decodes
/// them. The damaged files are cut from the fixtures here; Fixtures/images/hostile comes from
/// tools/make_hostile_images.py.
final class DamagedImageTests: XCTestCase {
    private var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("bnkit-images-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    private func fixture(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("images/\(name)"))))
    }

    private func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = folder.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    private func assertRefused(_ path: String, saying words: String, file: StaticString = #filePath, line: UInt = #line) {
        for channels in [3, 1] {
            XCTAssertThrowsError(try Image8.decode(path: path, channels: channels), file: file, line: line) { error in
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix(path + ": ") && text.contains(words), "\(path): \(text)", file: file, line: line)
            }
        }
    }

    /// A PNG chunk: length, type, data, CRC-32 of type and data (`crcDelta` damages the CRC).
    private func chunk(_ type: String, _ data: [UInt8], crcDelta: UInt32 = 0) -> [UInt8] {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in Array(type.utf8) + data {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        crc = ~crc &+ crcDelta
        func bigEndian(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) } }
        return bigEndian(UInt32(data.count)) + Array(type.utf8) + data + bigEndian(crc)
    }

    /// bnrun keeps one decoder a thread, its buffer reused: after a refusal (a truncated JPEG or
    /// PNG, whose decoding stopped midway in that buffer) it gives the next images exactly
    /// as a fresh decode does, larger and smaller than the one refused.
    func testAKeptDecoderGoesOnAfterARefusal() throws {
        let kept = ImageDecoder()
        let photo = try fixture("photo.jpg"), png = try fixture("rgb.png")
        let cutJPEG = try write(Array(photo.prefix(photo.count / 2)), "cut.jpg")
        let cutPNG = try write(Array(png.prefix(png.count * 3 / 4)), "cut.png")
        for name in ["rgb.png", "photo.jpg", "gray.png", "photo.jpg", "gray16.png", "rgb.png"] {
            for cut in [cutJPEG, cutPNG] {
                XCTAssertThrowsError(try kept.load(path: cut, channels: 3, width: 9, height: 7, method: .bilinear), name)
            }
            let path = TestPaths.fixture("images/\(name)")
            for channels in [3, 1] {
                XCTAssertEqual(try kept.load(path: path, channels: channels, width: 9, height: 7, method: .bilinear),
                               try Image8.decode(path: path, channels: channels).resized(width: 9, height: 7, method: .bilinear), name)
                XCTAssertEqual(try kept.decode(path: path, channels: channels), try Image8.decode(path: path, channels: channels), name)
            }
        }
    }

    /// A JPEG that ends early, in its entropy-coded data or just before its end marker: libjpeg
    /// pads it and goes on (a gray or garbled bottom); Pillow refuses it ("image file is
    /// truncated"), and so does bnkit.
    func testTruncatedJPEGsAreRefused() throws {
        for name in ["photo.jpg", "gray.jpg", "hostile/progressive.jpg"] {
            let bytes = try fixture(name)
            XCTAssertNoThrow(try Image8.decode(path: try write(bytes, "whole.jpg"), channels: 3), name)
            let base = name.replacingOccurrences(of: "/", with: "-")
            assertRefused(try write(Array(bytes.prefix(bytes.count * 2 / 3)), "cut-\(base)"), saying: "truncated")
            assertRefused(try write(Array(bytes.dropLast(2)), "no-end-\(base)"), saying: "truncated")
        }
    }

    /// A PNG cut inside its image data is refused as truncated (libpng's "Read Error" named
    /// for what it is). A PNG whose image data is whole but whose end (IEND) is missing decodes,
    /// as Pillow decodes it: to the full file's pixels.
    func testTruncatedPNGsAreRefusedButAMissingEndIsNot() throws {
        for name in ["rgb.png", "gray16.png", "palette.png"] {
            let bytes = try fixture(name)
            let whole = try Image8.decode(path: TestPaths.fixture("images/\(name)"), channels: 3)
            XCTAssertEqual(Array(bytes.suffix(12)), chunk("IEND", []), name)
            let noEnd = try Image8.decode(path: try write(Array(bytes.dropLast(12)), "no-end-\(name)"), channels: 3)
            XCTAssertEqual(noEnd, whole, name)
            assertRefused(try write(Array(bytes.prefix(bytes.count / 2)), "cut-\(name)"), saying: "truncated")
            assertRefused(try write(Array(bytes.prefix(20)), "header-\(name)"), saying: "truncated")
        }
    }

    /// A chunk with a wrong CRC before the image data is refused even when it is an ancillary
    /// one libpng would only warn about (Pillow refuses a bad CRC in any chunk it reads); the
    /// same chunk with its right CRC decodes to the same pixels.
    func testDamagedAncillaryChunkIsRefused() throws {
        let bytes = try fixture("rgb.png")
        let afterHeader = 8 + 25  // signature, IHDR
        let text = Array("Comment\u{0}made by a test".utf8)
        let good = Array(bytes.prefix(afterHeader)) + chunk("tEXt", text) + Array(bytes.dropFirst(afterHeader))
        XCTAssertEqual(try Image8.decode(path: try write(good, "text.png"), channels: 3),
                       try Image8.decode(path: TestPaths.fixture("images/rgb.png"), channels: 3))
        let bad = Array(bytes.prefix(afterHeader)) + chunk("tEXt", text, crcDelta: 1) + Array(bytes.dropFirst(afterHeader))
        assertRefused(try write(bad, "bad-crc.png"), saying: "CRC")
    }

    /// A progressive JPEG decodes to what Pillow decodes from it.
    func testProgressiveJPEGEqualsPillow() throws {
        let image = try Image8.decode(path: TestPaths.fixture("images/hostile/progressive.jpg"), channels: 3)
        let pillow = try NPYFile(path: TestPaths.fixture("images/hostile/progressive.rgb.npy"))
        XCTAssertEqual(pillow.header.shape, [image.height, image.width, 3])
        var expected = [Float](repeating: .nan, count: image.height * image.width * 3)
        expected.withUnsafeMutableBufferPointer { pillow.floats(items: 0..<image.height, into: $0) }
        XCTAssertEqual(image.pixels.map(Float.init), expected)
    }

    /// 600 scans, each a pass over the whole image: refused past 500 scans, as libjpeg-turbo
    /// advises for untrusted input, instead of decoded scan by scan.
    func testJPEGWithThousandsOfScansIsRefused() throws {
        assertRefused(TestPaths.fixture("images/hostile/many_scans.jpg"), saying: "over 500 progressive scans")
    }
}
