import ModelIR
import Runtime
import TestSupport
import XCTest

/// Chains of transposes and reshapes collapsed into one transpose between reshapes
/// (GraphRewrites.collapsingMovements): the same values bit for bit, in fewer steps.
final class MovementChainTests: XCTestCase {
    private var random = SeededGenerator(seed: 29)

    /// The values of a (row-major) sample of `shape` with its axes permuted by `perm`.
    private func transposed(_ x: [Float], shape: [Int], perm: [Int]) -> [Float] {
        var strides = [Int](repeating: 1, count: shape.count)
        for d in stride(from: shape.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * shape[d + 1] }
        let outShape = perm.map { shape[$0] }
        var y: [Float] = []
        var coordinate = [Int](repeating: 0, count: shape.count)
        for _ in 0..<x.count {
            y.append(x[zip(coordinate, perm).reduce(0) { $0 + $1.0 * strides[$1.1] }])
            var d = shape.count - 1
            while d >= 0 { coordinate[d] += 1; if coordinate[d] < outShape[d] { break }; coordinate[d] = 0; d -= 1 }
        }
        return y
    }

    /// PyTorch's channel shuffle as the ONNX import writes it on a channels-last map: two groups
    /// of 6 channels interleaved, in at most three steps.
    func testChannelShuffleIsOnePass() throws {
        let (h, w, c) = (3, 5, 12)
        let graph = try Graph.sequential(name: "shuffle", inputShape: [h, w, c], layers: [
            ("to_nchw", .transpose([2, 0, 1])), ("view", .reshape([2, c / 2, h, w])), ("view/to_nhwc", .transpose([1, 2, 3, 0])),
            ("t/to_nchw", .transpose([3, 0, 1, 2])), ("t", .transpose([1, 0, 2, 3])), ("t/to_nhwc", .transpose([1, 2, 3, 0])),
            ("back/to_nchw", .transpose([3, 0, 1, 2])), ("back", .reshape([c, h, w])), ("back/to_nhwc", .transpose([1, 2, 0])),
        ])
        let executor = try Executor(graph: graph)
        XCTAssertEqual(executor.stepProfile.filter { $0.operation == "transpose" }.count, 1, "\(executor.stepProfile.map(\.operation))")
        XCTAssertLessThanOrEqual(executor.stepProfile.count, 3)
        let x = random.floats(2 * h * w * c, in: -1...1)
        let y = try executor.run(x)
        for b in 0..<2 { for p in 0..<(h * w) { for j in 0..<(c / 2) { for i in 0..<2 {
            // Output channel j·2 + i is input channel i·(c/2) + j.
            XCTAssertEqual(y[(b * h * w + p) * c + j * 2 + i], x[(b * h * w + p) * c + i * (c / 2) + j])
        } } } }
    }

    /// Matrix transposes of every few-rows form (2, 3 and 4 rows interleaved: a channel shuffle, an
    /// RGB or RGBA image fed NCHW) and the tiled one, bit for bit against the definition.
    func testFewRowTransposesInterleaveExactly() throws {
        for (a, b) in [(2, 37), (3, 41), (4, 23), (5, 19), (3, 1), (17, 33)] {
            let graph = try Graph.sequential(name: "t", inputShape: [a, b], layers: [("t", .transpose([1, 0]))])
            let x = random.floats(3 * a * b, in: -1...1)
            let y = try Executor(graph: graph).run(x)
            for n in 0..<3 {
                XCTAssertEqual(Array(y[(n * a * b)..<((n + 1) * a * b)]),
                               transposed(Array(x[(n * a * b)..<((n + 1) * a * b)]), shape: [a, b], perm: [1, 0]), "\(a) × \(b)")
            }
        }
    }

    /// A map's NHWC → NCHW (bnk_transpose_rows: blocks of 8 × 8 turned in registers, a last block
    /// of under 8 channels masked, rows past the last block of 8 one by one), on one thread and shared
    /// by rows on two, bit for bit against the definition. Shapes: whole blocks, channel tails of 1 to
    /// 7, fewer than 8 channels, pixel counts with tails, one pixel.
    func testMapTransposesOverBlocksAndTails() throws {
        let shapes = [(16, 8, 8), (7, 9, 21), (100, 100, 21), (13, 11, 3), (64, 64, 96), (9, 5, 1), (1, 1, 37), (99, 101, 15)]
        for (h, w, c) in shapes {
            let graph = try Graph.sequential(name: "t", inputShape: [h, w, c], layers: [("t", .transpose([2, 0, 1]))])
            let executor = try Executor(graph: graph)
            let x = random.floats(2 * h * w * c, in: -1...1)
            let size = h * w * c
            var expected: [Float] = []
            for n in 0..<2 { expected += transposed(Array(x[(n * size)..<((n + 1) * size)]), shape: [h, w, c], perm: [2, 0, 1]) }
            for threads in [1, 2] {
                XCTAssertEqual(try executor.run(x, threads: threads), expected, "\(h) × \(w) × \(c), \(threads) threads")
                XCTAssertEqual(try executor.run(Array(x[0..<size]), threads: threads), Array(expected[0..<size]),
                               "\(h) × \(w) × \(c), one image, \(threads) threads")
            }
        }
    }

    /// Random chains of transposes and reshapes (axes of size 1 included) against the plain
    /// definition, and a chain whose middle is read twice (not collapsed past it).
    func testRandomChainsEqualTheirDefinition() throws {
        for _ in 0..<40 {
            var shape = [2, 3, 4]
            var layers: [(String, Op)] = []
            var steps: [(shape: [Int], perm: [Int]?)] = []
            for k in 0..<Int.random(in: 2...6, using: &random) {
                if Bool.random(using: &random) {
                    let perm = Array(0..<shape.count).shuffled(using: &random)
                    steps.append((shape, perm))
                    layers.append(("m\(k)", .transpose(perm)))
                    shape = perm.map { shape[$0] }
                } else {
                    // A random factorization of the 24 elements.
                    let candidates: [[Int]] = [[24], [4, 6], [6, 4], [2, 12], [3, 8], [2, 3, 4], [4, 3, 2], [1, 6, 4], [2, 2, 6], [3, 1, 8], [2, 2, 2, 3]]
                    let target = candidates.randomElement(using: &random)!
                    steps.append((shape, nil))
                    layers.append(("m\(k)", .reshape(target)))
                    shape = target
                }
            }
            let graph = try Graph.sequential(name: "chain", inputShape: [2, 3, 4], layers: layers)
            let x = random.floats(3 * 24, in: -1...1)
            var expected: [Float] = []
            for b in 0..<3 {
                var v = Array(x[(b * 24)..<((b + 1) * 24)])
                for step in steps { if let perm = step.perm { v = transposed(v, shape: step.shape, perm: perm) } }
                expected += v
            }
            XCTAssertEqual(try Executor(graph: graph).run(x), expected, "\(layers.map(\.1))")
        }
        // The middle transpose also read by an Add: the chains stop at it, the values stay.
        let input = Node(name: "x", operation: .input(shape: [2, 3, 4]), inputs: [])
        let graph = try Graph(name: "fork", nodes: [
            input, Node(name: "a", operation: .transpose([1, 0, 2]), inputs: ["x"]), Node(name: "b", operation: .reshape([3, 8]), inputs: ["a"]),
            Node(name: "c", operation: .transpose([1, 0]), inputs: ["b"]), Node(name: "d", operation: .flatten, inputs: ["a"]),
            Node(name: "e", operation: .flatten, inputs: ["c"]), Node(name: "y", operation: .add, inputs: ["d", "e"]),
        ], outputs: ["y"])
        let x = random.floats(24, in: -1...1)
        let a = transposed(x, shape: [2, 3, 4], perm: [1, 0, 2]), c = transposed(a, shape: [3, 8], perm: [1, 0])
        XCTAssertEqual(try Executor(graph: graph).run(x), zip(a, c).map { $0 + $1 })
    }
}
