import CKernels
import TestSupport
import XCTest

/// The indirect convolution reads the input through a table of pointers but adds
/// the same products in the same order as im2col + GEMM: equal results, bit for bit.
final class IndirectConvTests: XCTestCase {
    func testIndirectConvEqualsIm2colGEMMBitForBit() throws {
        try XCTSkipUnless(bnk_conv2d_indirect_scratch(1, 1, 1, 1, 1, 1, 1, 1, 1) > 0)
        var random = SeededGenerator(seed: 12)
        // (h, w, c, n, kh, kw, stride, dilationY, padTop, padLeft, oh, ow, batch)
        let cases: [(Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int)] = [
            (14, 14, 16, 32, 3, 3, 2, 1, 0, 0, 7, 7, 5),     // the small CNN's second conv (TensorFlow's uneven same)
            (9, 7, 5, 20, 3, 3, 1, 1, 1, 1, 9, 7, 3),        // same padding, 20 outputs (a masked column block)
            (8, 8, 3, 40, 2, 4, 1, 2, 1, 1, 7, 7, 2),        // vertical dilation, 40 outputs (two column blocks)
            (6, 5, 7, 9, 3, 3, 1, 1, 0, 0, 4, 3, 13),        // valid padding, a ragged last row block
            (12, 12, 32, 70, 3, 3, 1, 1, 1, 1, 12, 12, 2),   // packed B panels (288 rows), a 6-column tail
            (9, 9, 24, 40, 1, 1, 2, 1, 0, 0, 5, 5, 3),       // a strided 1x1 (ResNet's projection): rows read in place, no border
            // 9 rows, 4608-long K (ResNet50 96's last 3x3 convs at batch 1): at AVX-512, 32-column blocks
            // in one 12-row tile (im2col + GEMM: 64-column blocks in two 6-row tiles), 80 outputs.
            (3, 3, 512, 80, 3, 3, 1, 1, 1, 1, 3, 3, 1),
        ]
        for (h, w, c, n, kh, kw, stride, dy, padTop, padLeft, oh, ow, batch) in cases {
            let input = random.floats(batch * h * w * c, in: -1...1)
            let kernel = random.floats(kh * kw * c * n, in: -1...1), bias = random.floats(n, in: -1...1)
            let depth = kh * kw * c, pixels = oh * ow
            var expected = [Float](repeating: 0, count: batch * pixels * n)
            var patches = [Float](repeating: 0, count: pixels * depth)
            for b in 0..<batch {
                input.withUnsafeBufferPointer { x in
                    bnk_im2col(x.baseAddress! + b * h * w * c, Int32(h), Int32(w), Int32(c), Int32(kh), Int32(kw), Int32(stride), Int32(stride),
                               Int32(dy), 1, Int32(padTop), Int32(padLeft), Int32(oh), Int32(ow), &patches)
                }
                expected.withUnsafeMutableBufferPointer { y in
                    bnk_gemm(Int32(pixels), Int32(n), Int32(depth), patches, Int32(depth), kernel, bias,
                             y.baseAddress! + b * pixels * n, Int32(n), Int32(BNK_ACT_RELU))
                }
            }
            var found = [Float](repeating: .nan, count: batch * pixels * n)
            var scratch = [Float](repeating: 0, count: bnk_conv2d_indirect_scratch(Int32(batch), Int32(c), Int32(kh), Int32(kw), Int32(stride),
                                                                                  Int32(stride), Int32(dy), Int32(oh), Int32(ow)))
            let done = bnk_conv2d_indirect(input, Int32(batch), Int32(h), Int32(w), Int32(c), Int32(kh), Int32(kw), Int32(stride), Int32(stride),
                                           Int32(dy), Int32(padTop), Int32(padLeft), Int32(oh), Int32(ow), kernel, bias, Int32(n),
                                           Int32(BNK_ACT_RELU), &found, &scratch)
            try XCTSkipIf(done == 0, "no indirect fast path on this CPU")
            XCTAssertEqual(found.map(\.bitPattern), expected.map(\.bitPattern), "\(h)x\(w)x\(c) -> \(n), kernel \(kh)x\(kw)")
            // The kernel prepacked into panels (the kernel itself not passed): the same, whole or
            // by column ranges starting at panels.
            var panels = [Float](repeating: .nan, count: bnk_panels_floats(Int32(depth), Int32(n)))
            bnk_pack_panels(Int32(depth), Int32(n), kernel, Int32(n), &panels)
            var packed = [Float](repeating: .nan, count: found.count)
            var n0 = 0
            for width in [16, 32, 1000] where n0 < n {
                let cols = min(width, n - n0)
                _ = bnk_conv2d_indirect_columns(input, Int32(batch), Int32(h), Int32(w), Int32(c), Int32(kh), Int32(kw), Int32(stride),
                                                Int32(stride), Int32(dy), Int32(padTop), Int32(padLeft), Int32(oh), Int32(ow), nil, panels,
                                                bias, nil, Int32(n), Int32(n0), Int32(cols), Int32(BNK_ACT_RELU), &packed, &scratch, nil)
                n0 += cols
            }
            XCTAssertEqual(packed.map(\.bitPattern), expected.map(\.bitPattern), "\(h)x\(w)x\(c) -> \(n), kernel \(kh)x\(kw), panels")
        }
    }
}
