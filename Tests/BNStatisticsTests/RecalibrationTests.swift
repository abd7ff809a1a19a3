import BNStatistics
import ModelIR
import Runtime
import TestSupport
import XCTest

/// Recalibration and batch-statistics BN against plain Double references.
final class RecalibrationTests: XCTestCase {
    override func tearDown() {
        Kernels.limitInstructionSet(2)
        super.tearDown()
    }

    // MARK: The moments kernel at every instruction-set level

    func testChannelMomentsAtEveryInstructionSetLevel() throws {
        var random = SeededGenerator(seed: 11)
        var levels: [(Int, String)] = [(0, "generic")]
        Kernels.limitInstructionSet(1)
        if Kernels.momentsImplementation == "avx2" { levels.append((1, "avx2")) }
        Kernels.limitInstructionSet(2)
        if Kernels.momentsImplementation == "avx512" { levels.append((2, "avx512")) }
        for (level, name) in levels {
            Kernels.limitInstructionSet(level)
            XCTAssertEqual(Kernels.momentsImplementation, name)
            for (rows, channels, offset) in [(1, 1, 0.0), (3, 5, 0.0), (17, 37, 1000.0), (64, 16, -3.0), (129, 50, 0.5), (2, 1000, 1e4)] {
                let x = random.floats(rows * channels, in: -2...2).map { $0 + Float(offset) }
                var mean = [Double](repeating: .nan, count: channels), m2 = [Double](repeating: .nan, count: channels)
                x.withUnsafeBufferPointer { p in
                    Kernels.channelMoments(p.baseAddress!, rows: rows, channels: channels, mean: &mean, m2: &m2)
                }
                for c in 0..<channels {
                    let column = (0..<rows).map { Double(x[$0 * channels + c]) }
                    let m = column.reduce(0, +) / Double(rows)
                    let q = column.reduce(0) { $0 + ($1 - m) * ($1 - m) }
                    XCTAssertEqual(mean[c], m, accuracy: 1e-12 * max(1, abs(m)), "\(name) \(rows)x\(channels) c\(c)")
                    XCTAssertEqual(m2[c], q, accuracy: 1e-9 * max(1, q), "\(name) \(rows)x\(channels) c\(c)")
                }
            }
        }
    }

    /// Merging statistics tile by tile gives the statistics of all the values, even
    /// when the mean is large against the spread (no E[x²] − E[x]² cancellation).
    func testMergedStatisticsEqualTheWholeData() {
        var random = SeededGenerator(seed: 12)
        let channels = 3
        let values = random.floats(1000 * channels, in: -1...1).map { Double($0) + 1e5 }
        var merged = ChannelStatistics(channels: channels)
        var start = 0
        for size in [1, 7, 300, 2, 690] {
            var part = ChannelStatistics(channels: channels)
            for row in start..<(start + size) {
                var one = ChannelStatistics(channels: channels)
                let mean = (0..<channels).map { values[row * channels + $0] }, zero = [Double](repeating: 0, count: channels)
                one.merge(count: 1, mean: mean, m2: zero)
                part.merge(one)
            }
            merged.merge(part)
            start += size
        }
        XCTAssertEqual(merged.count, 1000)
        for c in 0..<channels {
            let column = (0..<1000).map { values[$0 * channels + c] }
            let mean = column.reduce(0, +) / 1000
            let variance = column.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / 1000
            XCTAssertEqual(merged.mean[c], mean, accuracy: 1e-9)
            XCTAssertEqual(merged.variance[c], variance, accuracy: 1e-9 * variance)
        }
    }

    // MARK: Passes

    private func bn(_ channels: Int, _ random: inout SeededGenerator) throws -> Op {
        .batchNorm(try BatchNorm(gamma: Tensor(random.floats(channels, in: 0.5...1.5)), beta: Tensor(random.floats(channels, in: -0.5...0.5)),
                                 movingMean: Tensor(random.floats(channels, in: -1...1)),
                                 movingVariance: Tensor(random.floats(channels, in: 0.5...2)), epsilon: 1e-3))
    }

    private func dense(_ inputs: Int, _ units: Int, _ random: inout SeededGenerator, activation: Activation = .linear) throws -> Op {
        .dense(try Dense(kernel: Tensor(shape: [inputs, units], values: random.floats(inputs * units, in: -0.5...0.5)),
                         bias: Tensor(random.floats(units, in: -0.2...0.2)), activation: activation))
    }

    func testPassesFollowChainsOfBatchNormalization() throws {
        var random = SeededGenerator(seed: 13)
        // input → d1 → bn1 → d2 → bn2;  input → d3 → bn3 (a parallel branch);  bn2 + bn3 → bn4
        let nodes = [
            Node(name: "x", operation: .input(shape: [4]), inputs: []),
            Node(name: "d1", operation: try dense(4, 3, &random), inputs: ["x"]),
            Node(name: "bn1", operation: try bn(3, &random), inputs: ["d1"]),
            Node(name: "d2", operation: try dense(3, 3, &random, activation: .sigmoid), inputs: ["bn1"]),
            Node(name: "bn2", operation: try bn(3, &random), inputs: ["d2"]),
            Node(name: "d3", operation: try dense(4, 3, &random), inputs: ["x"]),
            Node(name: "bn3", operation: try bn(3, &random), inputs: ["d3"]),
            Node(name: "sum", operation: .add, inputs: ["bn2", "bn3"]),
            Node(name: "bn4", operation: try bn(3, &random), inputs: ["sum"]),
        ]
        let graph = try Graph(name: "g", nodes: nodes, outputs: ["bn4"])
        XCTAssertEqual(try BatchNormRecalibration.passes(of: graph), [["bn1", "bn3"], ["bn2"], ["bn4"]])
    }

    func testRefusals() throws {
        var random = SeededGenerator(seed: 14)
        let plain = try Graph.sequential(name: "p", inputShape: [4], layers: [("d", try dense(4, 2, &random))])
        XCTAssertThrowsError(try BatchNormRecalibration.passes(of: plain)) { XCTAssertEqual($0 as? RecalibrationError, .noBatchNorm) }
        // A shared BN whose second call reads the first call's output.
        let shared = try Graph(name: "s", nodes: [
            Node(name: "x", operation: .input(shape: [3]), inputs: []),
            Node(name: "bn", operation: try bn(3, &random), inputs: ["x"]),
            Node(name: "bn_again", operation: try graphNode(named: "bn", in: [("bn", try bn(3, &random))]), inputs: ["bn"], sharesWeightsWith: "bn"),
        ], outputs: ["bn_again"])
        XCTAssertThrowsError(try BatchNormRecalibration.passes(of: shared)) {
            XCTAssertEqual($0 as? RecalibrationError, .sharedLayerFeedsItself(layer: "bn"))
        }
        // No samples.
        let withBN = try Graph.sequential(name: "b", inputShape: [3], layers: [("bn", try bn(3, &random))])
        XCTAssertThrowsError(try BatchNormRecalibration.recalibrate(withBN, data: [[Float]]())) {
            XCTAssertEqual($0 as? RecalibrationError, .noSamples)
        }
        // Batches that are not whole samples.
        XCTAssertThrowsError(try BatchNormRecalibration.recalibrate(withBN, data: [[1, 2, 3, 4]])) {
            XCTAssertEqual($0 as? RuntimeError, .badInputSize(expected: 3, found: 4))
        }
    }

    private func graphNode(named name: String, in ops: [(String, Op)]) throws -> Op { ops.first { $0.0 == name }!.1 }

    // MARK: Recalibration against a Double reference

    /// A CNN with BN after a conv (per channel over N·H·W), a BN that feeds another
    /// layer's BN, a BN on a Dense output (per neuron), run on several batches of odd
    /// sizes and with 1 and 2 threads: the new statistics equal a plain Double forward
    /// pass that recalibrates layer by layer.
    func testRecalibrationMatchesSequentialDoubleReference() throws {
        var random = SeededGenerator(seed: 15)
        let h = 6, w = 5, c = 2, f = 3
        let convKernel = random.floats(3 * 3 * c * f, in: -0.5...0.5)
        let conv = try Conv2D(kernel: Tensor(shape: [3, 3, c, f], values: convKernel), bias: nil, padding: .same)
        guard case .batchNorm(let bn1) = try bn(f, &random), case .batchNorm(let bn2) = try bn(4, &random),
              case .dense(let d) = try dense(h * w * f, 4, &random) else { return XCTFail() }
        let graph = try Graph.sequential(name: "cnn", inputShape: [h, w, c], layers: [
            ("conv", .conv2d(conv)), ("bn1", .batchNorm(bn1)), ("relu", .activation(.relu)),
            ("flat", .flatten), ("dense", .dense(d)), ("bn2", .batchNorm(bn2)),
        ])
        let batches = [5, 1, 12, 3].map { random.floats($0 * h * w * c, in: 0...1) }
        let samples = batches.flatMap { $0 }.map(Double.init)
        let count = samples.count / (h * w * c)

        // Reference: layer 1 over N·H·W, then layer 2 with layer 1 already updated.
        var convOut: [Double] = []
        for s in 0..<count {
            convOut += ReferenceOps.conv2d(Array(samples[(s * h * w * c)..<((s + 1) * h * w * c)]), h: h, w: w, c: c, kernel: convKernel,
                                           kh: 3, kw: 3, out: f, bias: nil, stride: [1, 1], dilation: [1, 1], same: true, groups: 1).values
        }
        let (mean1, var1) = Self.moments(convOut, channels: f)
        let normalized = convOut.enumerated().map { i, x -> Double in
            let ch = i % f
            let y = Double(bn1.gamma!.values[ch]) * (x - Double(Float(mean1[ch]))) / (Double(Float(var1[ch])) + bn1.epsilon).squareRoot()
                + Double(bn1.beta!.values[ch])
            return max(y, 0)
        }
        var denseOut: [Double] = []
        let per = h * w * f
        for s in 0..<count {
            for o in 0..<4 {
                var sum = Double(d.bias!.values[o])
                for i in 0..<per { sum += normalized[s * per + i] * Double(d.kernel.values[i * 4 + o]) }
                denseOut.append(sum)
            }
        }
        let (mean2, var2) = Self.moments(denseOut, channels: 4)

        for threads in [1, 2] {
            let (recalibrated, changes) = try BatchNormRecalibration.recalibrate(graph, data: batches, threads: threads)
            XCTAssertEqual(changes.map(\.layer), ["bn1", "bn2"])
            XCTAssertEqual(changes.map(\.pass), [0, 1])
            XCTAssertEqual(changes.map(\.count), [count * h * w, count])
            for (name, mean, variance) in [("bn1", mean1, var1), ("bn2", mean2, var2)] {
                guard case .batchNorm(let new) = recalibrated.node(named: name)!.operation else { return XCTFail() }
                for ch in mean.indices {
                    let spread = variance[ch].squareRoot()
                    XCTAssertEqual(Double(new.movingMean.values[ch]), mean[ch], accuracy: 1e-5 * max(abs(mean[ch]), spread), "\(name) mean \(ch)")
                    XCTAssertEqual(Double(new.movingVariance.values[ch]), variance[ch], accuracy: 1e-5 * variance[ch], "\(name) var \(ch)")
                }
                // Gamma, beta and epsilon stay.
                guard case .batchNorm(let old) = graph.node(named: name)!.operation else { return XCTFail() }
                XCTAssertEqual(new.gamma, old.gamma)
                XCTAssertEqual(new.beta, old.beta)
                XCTAssertEqual(new.epsilon, old.epsilon)
            }
            // The rest of the model is untouched.
            XCTAssertEqual(recalibrated.node(named: "conv"), graph.node(named: "conv"))
            XCTAssertEqual(recalibrated.node(named: "dense"), graph.node(named: "dense"))
        }
    }

    static func moments(_ values: [Double], channels: Int) -> (mean: [Double], variance: [Double]) {
        let rows = values.count / channels
        let mean = (0..<channels).map { c in (0..<rows).reduce(0) { $0 + values[$1 * channels + c] } / Double(rows) }
        let variance = (0..<channels).map { c in
            (0..<rows).reduce(0) { $0 + (values[$1 * channels + c] - mean[c]) * (values[$1 * channels + c] - mean[c]) } / Double(rows)
        }
        return (mean, variance)
    }

    // MARK: Batch statistics at run time

    /// `BatchNormStatistics.batch` normalizes each BN input with the statistics of the
    /// batch run (per channel over N·H·W), at every instruction-set level, whatever the
    /// thread count; and it differs from the running statistics.
    func testBatchStatisticsModeNormalizesWithTheBatch() throws {
        var random = SeededGenerator(seed: 16)
        let h = 4, w = 3, c = 5
        guard case .batchNorm(let norm) = try bn(c, &random) else { return XCTFail() }
        let graph = try Graph.sequential(name: "b", inputShape: [h, w, c], layers: [("bn", .batchNorm(norm))])
        for level in [0, 1, 2] {
            Kernels.limitInstructionSet(level)
            for batch in [1, 3, 300] {
                let x = random.floats(batch * h * w * c, in: -3...5)
                let (mean, variance) = Self.moments(x.map(Double.init), channels: c)
                let expected = x.enumerated().map { i, v -> Double in
                    let ch = i % c
                    return Double(norm.gamma!.values[ch]) * (Double(v) - mean[ch]) / (variance[ch] + norm.epsilon).squareRoot() + Double(norm.beta!.values[ch])
                }
                for threads in [1, 2] {
                    let y = try Executor(graph: graph, batchNormStatistics: .batch).run(x, threads: threads)
                    for i in y.indices { XCTAssertEqual(Double(y[i]), expected[i], accuracy: 2e-6 * max(1, abs(expected[i])), "level \(level) batch \(batch) i\(i)") }
                }
                let running = try Executor(graph: graph).run(x)
                XCTAssertGreaterThan(maxAbsDifference(running, try Executor(graph: graph, batchNormStatistics: .batch).run(x)), 1e-3)
            }
        }
    }

    /// Observed nodes are handed over even when the planner would fuse them away.
    func testObservedNodesAreWrittenEvenWhereTheyWouldBeFused() throws {
        var random = SeededGenerator(seed: 17)
        let graph = try Graph.sequential(name: "f", inputShape: [6], layers: [("d", try dense(6, 4, &random)), ("r", .activation(.relu))])
        let x = random.floats(6 * 9, in: -1...1)
        final class Box: @unchecked Sendable { var values: [Float] = [] }
        let box = Box()
        let y = try Executor(graph: graph, observing: ["d"]).run(x, threads: 1) { observation, values, _ in
            XCTAssertEqual(observation, 0)
            box.values += Array(values)
        }
        let plain = try Executor(graph: try Graph.sequential(name: "f", inputShape: [6], layers: [("d", graph.node(named: "d")!.operation)])).run(x)
        XCTAssertEqual(box.values, plain)
        XCTAssertEqual(y, plain.map { max($0, 0) })
    }
}
