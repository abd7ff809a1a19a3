import Foundation
import IDX
import Images
import NumPy
import TestSupport
import XCTest

/// The NumPy and image readers against what NumPy, Pillow and Keras give
/// (tools/make_input_fixtures.py made the fixtures).
final class InputReaderTests: XCTestCase {
    private func array(_ file: NPYFile) -> [Float] {
        var out = [Float](repeating: .nan, count: file.itemCount * file.itemSize)
        out.withUnsafeMutableBufferPointer { file.floats(items: 0..<file.itemCount, into: $0) }
        return out
    }

    private func expected(_ archive: String) throws -> [String: [Float]] {
        var result: [String: [Float]] = [:]
        for name in try NPZ.arrayNames(path: archive) { result[name] = array(try NPZ.open(path: archive, array: name)) }
        return result
    }

    /// Every dtype numpy.save writes that bnkit reads, little- and big-endian, gives the
    /// values NumPy's astype(float32) gives.
    func testEveryNumPyTypeReadsAsNumPyConvertsIt() throws {
        let folder = TestPaths.fixture("npy")
        let expected = try expected(folder + "/expected.npz")
        XCTAssertGreaterThanOrEqual(expected.count, 16)
        for (name, values) in expected {
            let file = try NPYFile(path: "\(folder)/\(name).npy")
            XCTAssertEqual(file.itemCount, 7, name)
            XCTAssertEqual(file.itemShape, [3, 2], name)
            XCTAssertEqual(array(file), values, name)
        }
    }

    /// Damaged and crafted headers: a clear error naming the file, before any allocation.
    func testMalformedHeadersAreRefused() throws {
        let folder = try temporaryFolder()
        let good = try Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("npy/le_f4.npy")))
        func header(_ text: String, version: UInt8 = 1) -> Data {
            var padded = text
            while (10 + padded.utf8.count + 1) % 64 != 0 { padded += " " }
            padded += "\n"
            var data = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0])
            data.append(UInt8(padded.utf8.count & 0xFF)); data.append(UInt8(padded.utf8.count >> 8))
            return data + Data(padded.utf8)
        }
        let cases: [(String, Data, String)] = [
            ("magic", Data("NUMPY".utf8) + good.dropFirst(5), "not a NumPy"),
            ("truncated-header", good.prefix(40), "truncated"),
            ("truncated-data", good.dropLast(4), "needs 168 bytes"),
            ("fortran", header("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }") + Data(count: 8), "Fortran"),
            ("object", header("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }") + Data(count: 16), "object arrays"),
            ("structured", header("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }") + Data(count: 8), "malformed"),
            ("overflow", header("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387, 4096), }"), "too large"),
            ("scalar", header("{'descr': '<f4', 'fortran_order': False, 'shape': (), }") + Data(count: 4), "scalar"),
            ("code", header("{'descr': '<f4', 'fortran_order': __import__('os'), 'shape': (2,), }") + Data(count: 8), "malformed"),
            ("extra-key", header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}") + Data(count: 8), "malformed"),
            ("version", header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", version: 9) + Data(count: 8), "version"),
            ("empty", Data(), "empty"),
        ]
        for (name, bytes, words) in cases {
            let path = folder.appendingPathComponent("\(name).npy").path
            try bytes.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try NPYFile(path: path), name) { error in
                XCTAssertTrue("\(error)".contains(path) && "\(error)".contains(words), "\(name): \(error)")
            }
        }
    }

    /// Pixels fed to the model equal keras.utils.load_img + img_to_array + preprocess_input
    /// for every kind of PNG and JPEG, color mode, interpolation and preprocessing mode:
    /// decoded afresh and widened before resizing (`Image8`), and by one decoder kept from
    /// image to image and resizing from the decoded samples (`ImageDecoder`, as bnrun does).
    func testImagePixelsEqualKerasPreprocessing() throws {
        let expected = try expected(TestPaths.fixture("images/expected.npz"))
        XCTAssertEqual(expected.count, 90)
        var jpegDifference: Float = 0
        let kept = ImageDecoder()
        for (key, values) in expected.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: "-").map(String.init)
            let (name, color, resize, mode) = (parts[0], parts[1], parts[2], parts[3])
            let path = TestPaths.fixture("images/\(name)"), method = ResizeMethod(rawValue: resize)!
            let image = try Image8.decode(path: path, channels: color == "rgb" ? 3 : 1).resized(width: 20, height: 24, method: method)
            XCTAssertEqual(try kept.load(path: path, channels: color == "rgb" ? 3 : 1, width: 20, height: 24, method: method), image, key)
            var ours = [Float](repeating: .nan, count: image.pixels.count)
            ours.withUnsafeMutableBufferPointer { Preprocessing(rawValue: mode)!.apply(image.pixels, channels: image.channels, into: $0) }
            if name.hasSuffix(".jpg") {
                jpegDifference = max(jpegDifference, maxAbsDifference(ours, values))
            } else {
                XCTAssertEqual(ours, values, key)
            }
        }
        print("JPEG pixels vs Pillow (Keras load_img): max abs difference \(jpegDifference) (0…255 scale, after preprocessing)")
        XCTAssertEqual(jpegDifference, 0, "libjpeg-turbo decodes as Pillow's libjpeg-turbo does")
    }

    func testDamagedImagesNameTheFile() throws {
        let path = TestPaths.fixture("images/damaged.jpg")
        XCTAssertThrowsError(try Image8.decode(path: path, channels: 3)) { error in
            XCTAssertTrue("\(error)".contains(path), "\(error)")
        }
        let notImage = TestPaths.fixture("images/classes.txt")
        XCTAssertThrowsError(try Image8.decode(path: notImage, channels: 3)) { XCTAssertTrue("\($0)".contains("not a PNG or JPEG")) }
    }

    /// Resizing reproduces Pillow on shapes the fixtures do not cover: enlarging and
    /// shrinking by odd factors, one axis only (nearest: positions from Pillow's formula).
    func testNearestResizeIndexesLikePillow() {
        let image = Image8(width: 7, height: 1, channels: 1, pixels: [0, 1, 2, 3, 4, 5, 6])
        XCTAssertEqual(image.resized(width: 3, height: 1, method: .nearest).pixels, [1, 3, 5])  // floor((x + .5) * 7/3)
        XCTAssertEqual(image.resized(width: 10, height: 1, method: .nearest).pixels, [0, 1, 1, 2, 3, 3, 4, 5, 5, 6])
        XCTAssertEqual(image.resized(width: 7, height: 1, method: .bilinear), image)
    }
}
