import CKernels

/// A kernel repacked once, when a model is planned, into the GEMM's panel layout
/// (`bnk_pack_panels`: 16 columns per panel, rows contiguous), in memory aligned to
/// 64 bytes so every vector load of a panel row stays within one cache line.
final class Panels: @unchecked Sendable {
    private let base: UnsafeMutablePointer<Float>
    let count: Int

    /// `matrices` (rows × columns, row-major, one after another in `kernel`) packed one after another.
    init(_ kernel: UnsafePointer<Float>, rows: Int, columns: Int, matrices: Int = 1) {
        let each = Int(bnk_panels_floats(Int32(rows), Int32(columns)))
        count = each * matrices
        base = Self.allocate(count)
        for m in 0..<matrices {
            bnk_pack_panels(Int32(rows), Int32(columns), kernel + m * rows * columns, Int32(columns), base + m * each)
        }
    }

    /// `matrices` rows × columns matrices, each written by `build(index, matrix)` into one
    /// reused buffer and packed in turn (no copy of all of them at once).
    init(rows: Int, columns: Int, matrices: Int, build: (Int, UnsafeMutablePointer<Float>) -> Void) {
        let each = Int(bnk_panels_floats(Int32(rows), Int32(columns)))
        count = each * matrices
        base = Self.allocate(count)
        let matrix = UnsafeMutablePointer<Float>.allocate(capacity: max(rows * columns, 1))
        defer { matrix.deallocate() }
        for m in 0..<matrices {
            build(m, matrix)
            bnk_pack_panels(Int32(rows), Int32(columns), matrix, Int32(columns), base + m * each)
        }
    }

    /// In huge pages where large (`FloatMemory`): at batch 1, one thread, ResNet50 96 (100 MB of
    /// weights streamed for every image) 66.7 -> 69.2 img/s, MobileNetV2 96 563 -> 591,
    /// MobileNetV2 224 120 -> 124; two threads, bound by memory, 115.3 -> 115.6 and 1,031 -> 1,057
    /// (AMD Zen 3 under KVM, THP on madvise; medians of 6-8 alternating runs).
    private static func allocate(_ count: Int) -> UnsafeMutablePointer<Float> { FloatMemory.allocate(count) }

    deinit { FloatMemory.release(base) }

    /// The packed floats (immutable once packed).
    var pointer: UnsafePointer<Float> { UnsafePointer(base) }
}
