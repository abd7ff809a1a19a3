import CKernels
import TestSupport
import XCTest

/// The sparse Dense path adds the same products in the same order as the GEMM of
/// its instruction set, leaving out exact zeros: its results are the GEMM's, bit for
/// bit (run at the AVX2 level too by InstructionSetTests).
final class SparseDenseTests: XCTestCase {
    func testSparsePathEqualsTheGEMMBitForBit() throws {
        try XCTSkipUnless(bnk_dense_sparse_available() != 0, "no sparse fast path on this CPU")
        var random = SeededGenerator(seed: 11)
        for (m, n, k) in [(37, 50, 784), (8, 10, 64), (9, 70, 300), (5, 130, 130), (70, 200, 200), (3, 17, 1500)] {
            var a = random.floats(m * k, in: 0...1)
            // Four rows in five 20% nonzero; every fifth row all nonzero (whole groups of inputs).
            for i in a.indices where random.floats(1, in: 0...1)[0] > 0.2 && (i / k) % 5 != 2 { a[i] = 0 }
            let b = random.floats(k * n, in: -1...1), bias = random.floats(n, in: -1...1)
            for act in [BNK_ACT_LINEAR, BNK_ACT_RELU, BNK_ACT_SIGMOID] {
                var dense = [Float](repeating: 0, count: m * n), sparse = dense
                bnk_gemm(Int32(m), Int32(n), Int32(k), a, Int32(k), b, bias, &dense, Int32(n), Int32(act))
                bnk_dense_sparse(Int32(m), Int32(n), Int32(k), a, Int32(k), b, bias, &sparse, Int32(n), Int32(act))
                // +0 and -0 may differ (a skipped 0 × w); compare values, then bits of the nonzero ones.
                XCTAssertEqual(sparse, dense, "\(m)x\(n)x\(k) act \(act)")
                XCTAssertEqual(sparse.map { $0 == 0 ? 0 : $0.bitPattern }, dense.map { $0 == 0 ? 0 : $0.bitPattern })
            }
        }
    }
}
