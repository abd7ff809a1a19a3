import BNFolding
import ModelIR
import Runtime
import TestSupport
import XCTest

final class FoldingTests: XCTestCase {
    /// Dense(6→4) → BN → sigmoid → Dense(4→3, softmax) with BN parameters
    /// all distinct and far from (1, 0, 0, 1).
    private func model(gamma: [Float]? = [1.7, -0.6, 2.4, 0.35], beta: [Float]? = [0.9, -1.3, 0.4, 2.1],
                       mean: [Float] = [1.5, -2.2, 0.8, 3.1], variance: [Float] = [2.5, 0.3, 4.2, 0.07],
                       epsilon: Double = 0.001, denseActivation: Activation = .linear) throws -> Graph {
        var random = SeededGenerator(seed: 7)
        let first = try Dense(kernel: Tensor(shape: [6, 4], values: random.floats(24, in: -1...1)),
                              bias: Tensor(random.floats(4, in: -0.5...0.5)), activation: denseActivation)
        let bn = try BatchNorm(gamma: gamma.map(Tensor.init), beta: beta.map(Tensor.init), movingMean: Tensor(mean),
                               movingVariance: Tensor(variance), epsilon: epsilon)
        let last = try Dense(kernel: Tensor(shape: [4, 3], values: random.floats(12, in: -2...2)), bias: nil, activation: .softmax)
        return try Graph.sequential(name: "m", inputShape: [6], layers: [
            ("dense", .dense(first)), ("bn", .batchNorm(bn)), ("act", .activation(.sigmoid)), ("out", .dense(last)),
        ])
    }

    private let inputs: [Float] = {
        var random = SeededGenerator(seed: 11)
        return random.floats(6 * 64, in: -3...3)
    }()

    private func run(_ graph: Graph) throws -> [Float] { try Executor(graph: graph).run(inputs) }

    /// Double-precision reference of the same model, straight from the formulas.
    private func reference(_ graph: Graph) -> [Double] {
        var out: [Double] = []
        for b in 0..<64 {
            var x = (0..<6).map { Double(inputs[b * 6 + $0]) }
            for node in graph.nodes {
                switch node.operation {
                case .dense(let d):
                    var y = (0..<d.units).map { o in Double(d.bias?.values[o] ?? 0) }
                    for i in 0..<d.inputs { for o in 0..<d.units { y[o] += x[i] * Double(d.kernel.values[i * d.units + o]) } }
                    if d.activation == .softmax {
                        let m = y.max()!; let e = y.map { Foundation.exp($0 - m) }; let s = e.reduce(0, +)
                        y = e.map { $0 / s }
                    } else if d.activation == .relu { y = y.map { max($0, 0) } }
                    x = y
                case .batchNorm(let bn):
                    x = x.indices.map { c in
                        let g = Double(bn.gamma?.values[c] ?? 1), be = Double(bn.beta?.values[c] ?? 0)
                        return g * (x[c] - Double(bn.movingMean.values[c])) / (Double(bn.movingVariance.values[c]) + bn.epsilon).squareRoot() + be
                    }
                case .activation(.sigmoid): x = x.map { 1 / (1 + Foundation.exp(-$0)) }
                default: break
                }
            }
            out += x
        }
        return out
    }

    func testRuntimeFollowsTheBatchNormFormula() throws {
        let graph = try model()
        let difference = zip(try run(graph), reference(graph)).map { abs(Double($0) - $1) }.max()!
        XCTAssertLessThan(difference, 1e-6)
    }

    /// Ignoring any one of gamma, beta, mean or variance (using 1, 0, 0 or 1
    /// instead) changes the outputs far beyond the tolerance: the running
    /// statistics and the affine parameters are all used, by the unfolded
    /// runtime and by the fold.
    func testEveryBatchNormParameterMatters() throws {
        let full = try model()
        let fullOutputs = try run(full)
        let foldedOutputs = try run(try BNFolder.fold(full).graph)
        XCTAssertLessThanOrEqual(maxAbsDifference(fullOutputs, foldedOutputs), 1e-6)
        let variants: [(String, Graph)] = [
            ("gamma", try model(gamma: [1, 1, 1, 1])),
            ("beta", try model(beta: [0, 0, 0, 0])),
            ("moving mean", try model(mean: [0, 0, 0, 0])),
            ("moving variance", try model(variance: [1, 1, 1, 1])),
            ("epsilon", try model(epsilon: 0.5)),
        ]
        for (name, variant) in variants {
            for graph in [variant, try BNFolder.fold(variant).graph] {
                let difference = maxAbsDifference(fullOutputs, try run(graph))
                XCTAssertGreaterThan(difference, 1e-3, "ignoring \(name) changes the outputs")
            }
        }
    }

    func testDenseThenBatchNormFoldsIntoOneDense() throws {
        let graph = try model()
        let result = try BNFolder.fold(graph)
        XCTAssertEqual(result.graph.nodes.map(\.operation.kind), ["input", "dense", "activation", "dense"])
        XCTAssertEqual(result.events, [FoldEvent(batchNorm: "bn", outcome: .foldedIntoPrevious(layer: "dense"))])
        XCTAssertEqual(result.graph.nodes[2].inputs, ["dense"])
        // Coefficients computed in Double, rounded once to Float.
        guard case .dense(let original) = graph.nodes[1].operation, case .batchNorm(let bn) = graph.nodes[2].operation,
              case .dense(let folded) = result.graph.nodes[1].operation else { return XCTFail() }
        for o in 0..<4 {
            let s = Double(bn.gamma!.values[o]) / (Double(bn.movingVariance.values[o]) + bn.epsilon).squareRoot()
            XCTAssertEqual(folded.kernel.values[2 * 4 + o], Float(Double(original.kernel.values[2 * 4 + o]) * s))
            let b = (Double(original.bias!.values[o]) - Double(bn.movingMean.values[o])) * s + Double(bn.beta!.values[o])
            XCTAssertEqual(Double(folded.bias!.values[o]), b, accuracy: 1e-6)
        }
    }

    func testCenterAndScaleOff() throws {
        let graph = try model(gamma: nil, beta: nil)
        let difference = maxAbsDifference(try run(graph), try run(try BNFolder.fold(graph).graph))
        XCTAssertLessThanOrEqual(difference, 1e-6)
        XCTAssertEqual(zip(try run(graph), reference(graph)).map { abs(Double($0) - $1) }.max()!, 0, accuracy: 1e-6)
    }

    func testNoFoldAcrossANonlinearity() throws {
        let graph = try model(denseActivation: .relu)
        let result = try BNFolder.fold(graph)
        XCTAssertEqual(result.graph.nodes.map(\.operation.kind), ["input", "dense", "affine", "activation", "dense"])
        guard case .keptAsAffine(let reason) = result.events[0].outcome else { return XCTFail() }
        XCTAssertTrue(reason.contains("relu"), reason)
        XCTAssertLessThanOrEqual(maxAbsDifference(try run(graph), try run(result.graph)), 1e-6)
    }

    func testBatchNormWithNothingBeforeItBecomesAffine() throws {
        let bn = try BatchNorm(gamma: Tensor([2, 3]), beta: Tensor([1, -1]), movingMean: Tensor([0.5, 4]),
                               movingVariance: Tensor([9, 0.25]), epsilon: 0)
        let graph = try Graph.sequential(name: "m", inputShape: [2], layers: [("bn", .batchNorm(bn))])
        let result = try BNFolder.fold(graph)
        guard case .affine(let affine) = result.graph.nodes[1].operation else { return XCTFail() }
        XCTAssertEqual(affine.scale.values, [Float(2.0 / 3.0), 6])
        XCTAssertEqual(affine.shift.values, [Float(1 - 0.5 * 2.0 / 3.0), -25])
        let outputs = try Executor(graph: result.graph).run([3.5, 5])
        XCTAssertEqual(outputs[0], 3, accuracy: 1e-6)
        XCTAssertEqual(outputs[1], 5, accuracy: 1e-6)
    }

    func testNoFoldWhenTheLayerOutputIsReadTwice() throws {
        let dense = try Dense(kernel: Tensor(shape: [2, 2], values: [1, 2, 3, 4]), bias: nil, activation: .linear)
        let bn = try BatchNorm(gamma: nil, beta: nil, movingMean: Tensor([0, 0]), movingVariance: Tensor([4, 4]), epsilon: 0)
        let graph = try Graph(name: "m", nodes: [
            Node(name: "in", operation: .input(shape: [2]), inputs: []),
            Node(name: "dense", operation: .dense(dense), inputs: ["in"]),
            Node(name: "bn", operation: .batchNorm(bn), inputs: ["dense"]),
            Node(name: "other", operation: .activation(.relu), inputs: ["dense"]),
        ], outputs: ["bn", "other"])
        let result = try BNFolder.fold(graph)
        guard case .keptAsAffine(let reason) = result.events[0].outcome else { return XCTFail() }
        XCTAssertTrue(reason.contains("used elsewhere"), reason)
        XCTAssertEqual(result.graph.nodes[1].operation, .dense(dense), "the shared layer keeps its weights")
    }

    func testNonPositiveVarianceIsRefused() throws {
        let graph = try model(variance: [1, -2, 1, 1], epsilon: 0.001)
        XCTAssertThrowsError(try BNFolder.fold(graph)) { XCTAssertTrue("\($0)".contains("moving_variance[1]"), "\($0)") }
    }
}
