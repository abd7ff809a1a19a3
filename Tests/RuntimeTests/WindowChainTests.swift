import ModelIR
import Runtime
import TestSupport
import XCTest

/// Chains of zero paddings, croppings and 1×1 poolings run as one pass (`WindowChains`,
/// `Kernels.window`): the same values bit for bit as the operations one by one.
final class WindowChainTests: XCTestCase {
    private var random = SeededGenerator(seed: 41)

    /// A map of one sample, (h, w, c) row-major, and the plain definitions of the three moves.
    private struct Map {
        var h: Int, w: Int, c: Int
        var values: [Float]

        func at(_ y: Int, _ x: Int, _ ch: Int) -> Float { values[(y * w + x) * c + ch] }

        func padded(_ pads: [Int]) -> Map {
            let (oh, ow) = (h + pads[0] + pads[1], w + pads[2] + pads[3])
            var out = [Float](repeating: 0, count: oh * ow * c)
            for y in 0..<h { for x in 0..<w { for ch in 0..<c { out[((y + pads[0]) * ow + x + pads[2]) * c + ch] = at(y, x, ch) } } }
            return Map(h: oh, w: ow, c: c, values: out)
        }

        func cropped(_ crops: [Int]) -> Map {
            let (oh, ow) = (h - crops[0] - crops[1], w - crops[2] - crops[3])
            var out: [Float] = []
            for y in 0..<oh { for x in 0..<ow { for ch in 0..<c { out.append(at(y + crops[0], x + crops[2], ch)) } } }
            return Map(h: oh, w: ow, c: c, values: out)
        }

        func subsampled(_ sy: Int, _ sx: Int) -> Map {
            let (oh, ow) = ((h - 1) / sy + 1, (w - 1) / sx + 1)
            var out: [Float] = []
            for y in 0..<oh { for x in 0..<ow { for ch in 0..<c { out.append(at(y * sy, x * sx, ch)) } } }
            return Map(h: oh, w: ow, c: c, values: out)
        }
    }

    /// Random chains of two to five moves on random maps (1×1 poolings average or max, `valid` or
    /// `same`, strides 1 to 3 on each axis), batch 3, one and two threads: bit for bit, in one step.
    func testRandomChainsEqualTheMovesOneByOne() throws {
        for trial in 0..<60 {
            let (h, w, c) = (Int.random(in: 3...12, using: &random), Int.random(in: 3...12, using: &random), Int.random(in: 1...5, using: &random))
            var layers: [(String, Op)] = []
            var moves: [(Map) -> Map] = []
            var (ch, cw) = (h, w)
            for k in 0..<Int.random(in: 2...5, using: &random) {
                switch Int.random(in: 0..<3, using: &random) {
                case 0:
                    let pads = (0..<4).map { _ in Int.random(in: 0...2, using: &random) }
                    layers.append(("m\(k)", Bool.random(using: &random) ? .zeroPadding2d(pads) : .pad2d(pads: pads, value: 0)))
                    moves.append { $0.padded(pads) }
                    (ch, cw) = (ch + pads[0] + pads[1], cw + pads[2] + pads[3])
                case 1 where ch > 2 && cw > 2:
                    let crops = [Int.random(in: 0...1, using: &random), Int.random(in: 0...1, using: &random),
                                 Int.random(in: 0...1, using: &random), Int.random(in: 0...1, using: &random)]
                    layers.append(("m\(k)", .cropping2d(crops)))
                    moves.append { $0.cropped(crops) }
                    (ch, cw) = (ch - crops[0] - crops[1], cw - crops[2] - crops[3])
                default:
                    let (sy, sx) = (Int.random(in: 1...3, using: &random), Int.random(in: 1...3, using: &random))
                    let pool = try Pool2D(kind: Bool.random(using: &random) ? .max : .average, size: [1, 1], strides: [sy, sx],
                                          padding: Bool.random(using: &random) ? .same : .valid)
                    layers.append(("m\(k)", .pool2d(pool)))
                    moves.append { $0.subsampled(sy, sx) }
                    (ch, cw) = ((ch - 1) / sy + 1, (cw - 1) / sx + 1)
                }
            }
            let graph = try Graph.sequential(name: "chain", inputShape: [h, w, c], layers: layers)
            let executor = try Executor(graph: graph)
            XCTAssertEqual(executor.stepProfile.map(\.operation), ["window"], "trial \(trial): \(layers.map(\.1))")
            let x = random.floats(3 * h * w * c, in: -1...1)
            var expected: [Float] = []
            for b in 0..<3 {
                expected += moves.reduce(Map(h: h, w: w, c: c, values: Array(x[(b * h * w * c)..<((b + 1) * h * w * c)]))) { $1($0) }.values
            }
            for threads in [1, 2] {
                XCTAssertEqual(try executor.run(x, threads: threads), expected, "trial \(trial), threads \(threads): \(layers.map(\.1))")
            }
        }
    }

    /// NASNet's reduction shift on a map large enough for two threads to split it (64 × 63 × 8,
    /// batch 3): a zero padding below and right, a cropping above and left, every other pixel; and
    /// the same on a one-dimensional map.
    func testNASNetShiftAndOneDimensionalMaps() throws {
        let pool = try Pool2D(kind: .average, size: [1, 1], strides: [2, 2], padding: .valid)
        let graph = try Graph.sequential(name: "shift", inputShape: [64, 63, 8], layers: [
            ("pad", .zeroPadding2d([0, 1, 0, 1])), ("crop", .cropping2d([1, 0, 1, 0])), ("pool", .pool2d(pool)),
        ])
        let executor = try Executor(graph: graph)
        XCTAssertEqual(executor.stepProfile.map(\.operation), ["window"])
        let x = random.floats(3 * 64 * 63 * 8, in: -1...1)
        var expected: [Float] = []
        for b in 0..<3 {
            let map = Map(h: 64, w: 63, c: 8, values: Array(x[(b * 64 * 63 * 8)..<((b + 1) * 64 * 63 * 8)]))
            // Output (i, j) is input (2i + 1, 2j + 1), zero past the last row or column.
            for i in 0..<32 { for j in 0..<32 { for ch in 0..<8 {
                expected.append(2 * i + 1 < 64 && 2 * j + 1 < 63 ? map.at(2 * i + 1, 2 * j + 1, ch) : 0)
            } } }
        }
        for threads in [1, 2] { XCTAssertEqual(try executor.run(x, threads: threads), expected, "threads \(threads)") }

        // (steps, channels): the height axis is 1.
        let pool1 = try Pool2D(kind: .max, size: [1, 1], strides: [1, 3], padding: .valid)
        let oneD = try Graph.sequential(name: "shift1", inputShape: [10, 2], layers: [
            ("pad", .zeroPadding2d([0, 0, 2, 0])), ("pool", .pool2d(pool1)), ("crop", .cropping2d([0, 0, 1, 0])),
        ])
        let executor1 = try Executor(graph: oneD)
        XCTAssertEqual(executor1.stepProfile.map(\.operation), ["window"])
        let x1 = random.floats(2 * 20, in: -1...1)
        // Padded: 12 steps, the first two zero; every third: steps 0, 3, 6, 9 of it (0, input 1, 4, 7); then the first dropped.
        var expected1: [Float] = []
        for b in 0..<2 { for t in [1, 4, 7] { for ch in 0..<2 { expected1.append(x1[b * 20 + t * 2 + ch]) } } }
        XCTAssertEqual(try executor1.run(x1, threads: 1), expected1)
    }

    /// A chain read by a layer that is not a move (NASNet's 1×1 conv after the shift) is still one
    /// step, the conv's its own.
    func testChainBeforeAConvIsOneStep() throws {
        let pool = try Pool2D(kind: .average, size: [1, 1], strides: [2, 2], padding: .valid)
        let conv = try Conv2D(kernel: Tensor(shape: [1, 1, 3, 4], values: random.floats(12, in: -1...1)), bias: nil, padding: .valid)
        let graph = try Graph.sequential(name: "shiftconv", inputShape: [7, 7, 3], layers: [
            ("pad", .zeroPadding2d([0, 1, 0, 1])), ("crop", .cropping2d([1, 0, 1, 0])), ("pool", .pool2d(pool)), ("conv", .conv2d(conv)),
        ])
        XCTAssertEqual(try Executor(graph: graph).stepProfile.map(\.operation), ["window", "conv2d"])
    }

    /// A link read by something else ends the chain there (its values are needed); a padding a
    /// convolution reads stays folded into the convolution.
    func testChainsStopAtSharedLinksAndLeaveConvPaddingsAlone() throws {
        let pool = try Pool2D(kind: .average, size: [1, 1], strides: [2, 2], padding: .valid)
        let nodes = [
            Node(name: "x", operation: .input(shape: [6, 6, 2]), inputs: []),
            Node(name: "pad", operation: .zeroPadding2d([0, 1, 0, 1]), inputs: ["x"]),
            Node(name: "crop", operation: .cropping2d([1, 0, 1, 0]), inputs: ["pad"]),
            Node(name: "pool", operation: .pool2d(pool), inputs: ["crop"]),
            Node(name: "pool2", operation: .pool2d(pool), inputs: ["crop"]),
            Node(name: "y", operation: .add, inputs: ["pool", "pool2"]),
        ]
        let shared = try Executor(graph: try Graph(name: "fork", nodes: nodes, outputs: ["y"]))
        // pad and crop in one step (crop read twice), each pooling its own.
        XCTAssertEqual(shared.stepProfile.map(\.operation), ["window", "pool", "pool", "add"])
        let x = random.floats(72, in: -1...1)
        let map = Map(h: 6, w: 6, c: 2, values: x).padded([0, 1, 0, 1]).cropped([1, 0, 1, 0]).subsampled(2, 2)
        XCTAssertEqual(try shared.run(x), map.values.map { $0 + $0 })

        let conv = try Conv2D(kernel: Tensor(shape: [3, 3, 2, 4], values: random.floats(72, in: -1...1)), bias: nil, padding: .valid)
        let padded = try Graph.sequential(name: "padconv", inputShape: [6, 6, 2], layers: [
            ("crop", .cropping2d([1, 0, 1, 0])), ("pad", .zeroPadding2d([1, 1, 1, 1])), ("conv", .conv2d(conv)),
        ])
        XCTAssertEqual(try Executor(graph: padded).stepProfile.map(\.operation), ["crop", "conv2d"])
    }
}
