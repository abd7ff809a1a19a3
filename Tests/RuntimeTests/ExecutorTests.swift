import Dispatch
import Foundation
import ModelIR
import Runtime
import TestSupport
import XCTest

final class ExecutorTests: XCTestCase {
    private func reference(dense: Dense, _ x: [Double]) -> [Double] {
        (0..<dense.units).map { o in
            (0..<dense.inputs).reduce(Double(dense.bias?.values[o] ?? 0)) { $0 + x[$1] * Double(dense.kernel.values[$1 * dense.units + o]) }
        }
    }

    func testDenseAgainstPlainReferenceOnOddShapes() throws {
        var random = SeededGenerator(seed: 5)
        // The last: a kernel over Executor.densePanelFloats (prepacked into panels), 50 rows.
        for (inputs, units, batch, withBias) in [(1, 1, 1, true), (7, 3, 5, false), (33, 17, 9, true), (784, 50, 3, true), (5, 1, 64, false),
                                                 (1030, 1021, 50, true)] {
            let dense = try Dense(kernel: Tensor(shape: [inputs, units], values: random.floats(inputs * units, in: -1...1)),
                                  bias: withBias ? Tensor(random.floats(units, in: -1...1)) : nil, activation: .linear)
            let graph = try Graph.sequential(name: "d", inputShape: [inputs], layers: [("d", .dense(dense))])
            let x = random.floats(inputs * batch, in: -2...2)
            let executor = try Executor(graph: graph)
            let y = try executor.run(x)
            XCTAssertEqual(y.count, batch * units)
            // Two threads: the rows shared; one sample: the columns shared. The same values.
            XCTAssertEqual(try executor.run(x, threads: 2), y)
            XCTAssertEqual(try executor.run(Array(x[0..<inputs]), threads: 2), Array(y[0..<units]))
            for b in 0..<batch {
                let expected = reference(dense: dense, x[(b * inputs)..<((b + 1) * inputs)].map(Double.init))
                for o in 0..<units {
                    XCTAssertEqual(Double(y[b * units + o]), expected[o], accuracy: 1e-5 * Double(inputs), "\(inputs)x\(units) b\(b) o\(o)")
                }
            }
        }
    }

    /// A softmax head with few rows on two threads (heavy enough that a sample's steps are split): the columns shared, the softmax over each whole row after; the
    /// same values as one thread bit for bit, and the reference's.
    func testSoftmaxHeadSharedByColumnsOnTwoThreads() throws {
        var random = SeededGenerator(seed: 7)
        for (inputs, units, batch) in [(2048, 2000, 1), (2000, 2051, 3)] {
            let dense = try Dense(kernel: Tensor(shape: [inputs, units], values: random.floats(inputs * units, in: -0.2...0.2)),
                                  bias: Tensor(random.floats(units, in: -1...1)), activation: .softmax)
            let graph = try Graph.sequential(name: "d", inputShape: [inputs], layers: [("d", .dense(dense))])
            let x = random.floats(inputs * batch, in: -1...1)
            let executor = try Executor(graph: graph)
            XCTAssertTrue(executor.splitsSamples)
            let y = try executor.run(x)
            XCTAssertEqual(try executor.run(x, threads: 2), y, "\(inputs)x\(units) batch \(batch)")
            for b in 0..<batch {
                let logits = reference(dense: dense, x[(b * inputs)..<((b + 1) * inputs)].map(Double.init))
                let top = logits.max()!, sum = logits.reduce(0) { $0 + exp($1 - top) }
                for o in 0..<units {
                    // Float32 logits over 2,000 products: a few parts in a million of each probability.
                    let expected = exp(logits[o] - top) / sum
                    XCTAssertEqual(Double(y[b * units + o]), expected, accuracy: 5e-5 * expected + 1e-9, "\(inputs)x\(units) b\(b) o\(o)")
                }
            }
        }
    }

    /// Mostly-zero inputs (pixels, ReLU outputs) take the sparse path: the same values
    /// as the reference, for row counts that are and are not multiples of four and
    /// widths that need one to five column blocks, with each fused activation.
    func testDenseOnSparseInputs() throws {
        var random = SeededGenerator(seed: 6)
        for (inputs, units, batch, density) in [(784, 50, 37, 0.2), (64, 10, 8, 0.05), (300, 70, 9, 0.3), (130, 130, 6, 0.0), (200, 17, 5, 1.0)] {
            for activation in [Activation.linear, .relu, .relu6, .sigmoid] {
                let dense = try Dense(kernel: Tensor(shape: [inputs, units], values: random.floats(inputs * units, in: -1...1)),
                                      bias: Tensor(random.floats(units, in: -1...1)), activation: activation)
                let graph = try Graph.sequential(name: "d", inputShape: [inputs], layers: [("d", .dense(dense))])
                var x = random.floats(inputs * batch, in: 0...1)
                for i in x.indices where Double(random.floats(1, in: 0...1)[0]) >= density { x[i] = 0 }
                let y = try Executor(graph: graph).run(x)
                for b in 0..<batch {
                    let linear = reference(dense: dense, x[(b * inputs)..<((b + 1) * inputs)].map(Double.init))
                    for o in 0..<units {
                        let v = linear[o]
                        let expected: Double = switch activation {
                        case .relu: max(v, 0)
                        case .relu6: min(max(v, 0), 6)
                        case .sigmoid: 1 / (1 + exp(-v))
                        default: v
                        }
                        XCTAssertEqual(Double(y[b * units + o]), expected, accuracy: 1e-5 * Double(inputs), "\(inputs)x\(units) \(activation) b\(b) o\(o)")
                    }
                }
            }
        }
    }

    func testActivationsAgainstFormulas() throws {
        let x: [Float] = [-100, -3, -0.5, 0, 0.25, 2, 100, 1]
        let formulas: [(Activation, (Double) -> Double)] = [
            (.linear, { $0 }), (.relu, { max($0, 0) }), (.sigmoid, { 1 / (1 + Foundation.exp(-$0)) }), (.tanh, { Foundation.tanh($0) }),
        ]
        for (activation, formula) in formulas {
            let graph = try Graph.sequential(name: "a", inputShape: [8], layers: [("a", .activation(activation))])
            let y = try Executor(graph: graph).run(x)
            for (value, input) in zip(y, x) {
                XCTAssertEqual(Double(value), formula(Double(input)), accuracy: 1e-6, "\(activation)(\(input))")
            }
        }
        let softmax = try Executor(graph: try Graph.sequential(name: "s", inputShape: [4], layers: [("s", .activation(.softmax))]))
        let y = try softmax.run(x)
        for row in 0..<2 {
            let logits = x[(row * 4)..<(row * 4 + 4)].map(Double.init)
            let m = logits.max()!, sum = logits.map { Foundation.exp($0 - m) }.reduce(0, +)
            for k in 0..<4 { XCTAssertEqual(Double(y[row * 4 + k]), Foundation.exp(logits[k] - m) / sum, accuracy: 1e-6) }
        }
        XCTAssertEqual(softmax.classes(of: y), [3, 2])
    }

    /// Softmax rows of any width (the vector lanes' tails, one value, an ImageNet head) against
    /// Double: relative error within a few float32 roundings (and that of x - max); logits 100 apart give 0 or a value
    /// under 1.2e-38; a NaN or an infinity makes its row NaN and leaves the others alone.
    func testSoftmaxRowsOfAnyWidthAgainstDouble() throws {
        var random = SeededGenerator(seed: 11)
        for width in [1, 2, 7, 8, 10, 15, 16, 17, 33, 1000] {
            let rows = 3
            var x = random.floats(rows * width, in: -30...30)
            if width > 1 { x[width + 1] = x[width] - 100 }    // row 1: one far below another
            let graph = try Graph.sequential(name: "s", inputShape: [width], layers: [("s", .activation(.softmax))])
            let y = try Executor(graph: graph).run(x)
            for row in 0..<rows {
                let logits = x[(row * width)..<((row + 1) * width)].map(Double.init)
                let m = logits.max()!, sum = logits.map { Foundation.exp($0 - m) }.reduce(0, +)
                for k in 0..<width {
                    let expected = Foundation.exp(logits[k] - m) / sum, value = Double(y[row * width + k])
                    if expected < 1e-37 {
                        XCTAssert(value >= 0 && value < 1.2e-38, "width \(width) row \(row) k \(k): \(value)")
                    } else {
                        // The float32 difference x - max carries up to half an ulp of itself into exp.
                        let rounding = 1e-6 + abs(logits[k] - m) * 6e-8
                        XCTAssertEqual(value, expected, accuracy: rounding * expected, "width \(width) row \(row) k \(k)")
                    }
                }
            }
        }
        let graph = try Graph.sequential(name: "s", inputShape: [10], layers: [("s", .activation(.softmax))])
        for bad in [Float.nan, .infinity] {
            var x = (0..<30).map { Float($0 % 10) }
            x[13] = bad
            let y = try Executor(graph: graph).run(x)
            XCTAssert(y[10..<20].allSatisfy(\.isNaN), "\(bad): \(y[10..<20])")
            XCTAssertEqual(Array(y[0..<10]), Array(y[20..<30]))
            XCTAssertFalse(y[0..<10].contains { $0.isNaN })
        }
    }

    func testReshapeFlattenAndBadInput() throws {
        let graph = try Graph.sequential(name: "r", inputShape: [2, 3], layers: [("f", .flatten), ("r", .reshape([3, -1])), ("i", .identity)])
        let executor = try Executor(graph: graph)
        XCTAssertEqual(executor.outputShape, [3, 2])
        XCTAssertEqual(try executor.run([1, 2, 3, 4, 5, 6]), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(try executor.run([]), [])
        XCTAssertThrowsError(try executor.run([1, 2, 3])) { XCTAssertEqual($0 as? RuntimeError, .badInputSize(expected: 6, found: 3)) }
    }

    func testShapeMismatchIsRefusedWhenTheGraphIsBuilt() throws {
        let dense = try Dense(kernel: Tensor(shape: [4, 2], values: [Float](repeating: 0, count: 8)), bias: nil, activation: .linear)
        XCTAssertThrowsError(try Graph.sequential(name: "m", inputShape: [5], layers: [("d", .dense(dense))])) {
            XCTAssertTrue("\($0)".contains("'d'"), "\($0)")
        }
    }

    func testConcurrentCallsAndThreadCountsGiveTheSameOutputs() throws {
        var random = SeededGenerator(seed: 8)
        let conv = try Conv2D(kernel: Tensor(shape: [3, 3, 2, 6], values: random.floats(108, in: -1...1)), bias: Tensor(random.floats(6, in: -1...1)),
                              padding: .same, activation: .relu)
        let dense = try Dense(kernel: Tensor(shape: [6 * 6 * 6, 5], values: random.floats(216 * 5, in: -1...1)), bias: nil, activation: .softmax)
        let graph = try Graph.sequential(name: "c", inputShape: [6, 6, 2], layers: [("conv", .conv2d(conv)), ("f", .flatten), ("d", .dense(dense))])
        let executor = try Executor(graph: graph)
        let input = random.floats(300 * 72, in: -1...1)
        let expected = try executor.run(input, threads: 1)
        XCTAssertEqual(try executor.run(input, threads: 2), expected)
        XCTAssertEqual(try executor.run(input, threads: 7), expected)
        let results = UnsafeMutableBufferPointer<[Float]>.allocate(capacity: 4)
        results.initialize(repeating: [])
        defer { results.deallocate() }
        let address = Int(bitPattern: results.baseAddress!)
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            let slots = UnsafeMutablePointer<[Float]>(bitPattern: address)!
            slots[i] = (try? executor.run(input, threads: 1 + i % 2)) ?? []
        }
        for i in 0..<4 { XCTAssertEqual(results[i], expected, "call \(i)") }
    }

    /// With `profiling` on, one image on two threads gives each step the time worker 0 waited at
    /// its joins and the time the other worker worked on it: a conv split by rows gives the other
    /// worker work, within the step's own time; the small Dense head, run whole on worker 0,
    /// none. On one thread there is no pool to time.
    func testStepProfileTimesTheOtherWorkersOfSplitSteps() throws {
        var random = SeededGenerator(seed: 11)
        let conv = try Conv2D(kernel: Tensor(shape: [3, 3, 16, 32], values: random.floats(3 * 3 * 16 * 32, in: -0.3...0.3)),
                              bias: Tensor(random.floats(32, in: -0.1...0.1)), padding: .same, activation: .relu)
        let head = try Dense(kernel: Tensor(shape: [32, 3], values: random.floats(32 * 3, in: -1...1)), bias: nil, activation: .linear)
        let graph = try Graph.sequential(name: "p", inputShape: [48, 48, 16],
                                         layers: [("conv", .conv2d(conv)), ("pool", .globalPool(kind: .average, keepDims: false)),
                                                  ("head", .dense(head))])
        let image = random.floats(48 * 48 * 16, in: -1...1)
        let executor = try Executor(graph: graph)
        executor.profiling = true
        for _ in 0..<3 { _ = try executor.run(image, threads: 2) }
        let profile = executor.stepProfile
        XCTAssertEqual(profile.map(\.operation).suffix(2), ["globalPool", "dense"])
        let split = profile[0]
        let waited = try XCTUnwrap(split.waited), busy = try XCTUnwrap(split.othersBusy)
        // (How much of the step the other worker works depends on the machine's load: under other
        // processes it may start late and take a small share, so only that it worked is checked.)
        XCTAssertGreaterThan(busy, 0, "\(split)")
        XCTAssertLessThanOrEqual(busy, split.seconds, "\(split)")
        XCTAssertLessThanOrEqual(waited, split.seconds, "\(split)")
        XCTAssertEqual(profile[2].othersBusy, 0, "\(profile[2])")
        XCTAssertEqual(profile[2].waited, 0, "\(profile[2])")
        // Profiling again starts from nothing; one thread leaves the split times out.
        executor.profiling = true
        for _ in 0..<2 { _ = try executor.run(image, threads: 1) }
        XCTAssertTrue(executor.stepProfile.allSatisfy { $0.waited == nil && $0.othersBusy == nil && $0.seconds > 0 }, "\(executor.stepProfile)")
    }
}
