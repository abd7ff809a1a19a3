import ModelIR

/// Plain, obviously-correct Double implementations of the spatial ops, for
/// checking the runtime's kernels. NHWC, one image at a time.
public enum ReferenceOps {
    /// TensorFlow's output length and padding-before for one axis.
    public static func tfPadding(input: Int, kernel: Int, stride: Int, dilation: Int, same: Bool) -> (out: Int, before: Int) {
        let effective = (kernel - 1) * dilation + 1
        if !same { return ((input - effective) / stride + 1, 0) }
        let out = (input + stride - 1) / stride
        let total = max((out - 1) * stride + effective - input, 0)
        return (out, total / 2)
    }

    public static func conv2d(_ x: [Double], h: Int, w: Int, c: Int, kernel: [Float], kh: Int, kw: Int, out: Int,
                              bias: [Float]?, stride: [Int], dilation: [Int], same: Bool, groups: Int) -> (values: [Double], h: Int, w: Int) {
        let (oh, pt) = tfPadding(input: h, kernel: kh, stride: stride[0], dilation: dilation[0], same: same)
        let (ow, pl) = tfPadding(input: w, kernel: kw, stride: stride[1], dilation: dilation[1], same: same)
        let cpg = c / groups, opg = out / groups
        var y = [Double](repeating: 0, count: oh * ow * out)
        for oy in 0..<oh { for ox in 0..<ow { for o in 0..<out {
            var sum = Double(bias?[o] ?? 0)
            let g = o / opg
            for ky in 0..<kh { for kx in 0..<kw {
                let iy = oy * stride[0] - pt + ky * dilation[0], ix = ox * stride[1] - pl + kx * dilation[1]
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                for j in 0..<cpg {
                    sum += x[(iy * w + ix) * c + g * cpg + j] * Double(kernel[((ky * kw + kx) * cpg + j) * out + o])
                }
            } }
            y[(oy * ow + ox) * out + o] = sum
        } } }
        return (y, oh, ow)
    }

    public static func depthwise(_ x: [Double], h: Int, w: Int, c: Int, kernel: [Float], kh: Int, kw: Int, multiplier: Int,
                                 bias: [Float]?, stride: [Int], dilation: [Int], same: Bool) -> (values: [Double], h: Int, w: Int) {
        let (oh, pt) = tfPadding(input: h, kernel: kh, stride: stride[0], dilation: dilation[0], same: same)
        let (ow, pl) = tfPadding(input: w, kernel: kw, stride: stride[1], dilation: dilation[1], same: same)
        let out = c * multiplier
        var y = [Double](repeating: 0, count: oh * ow * out)
        for oy in 0..<oh { for ox in 0..<ow { for ch in 0..<c { for m in 0..<multiplier {
            var sum = Double(bias?[ch * multiplier + m] ?? 0)
            for ky in 0..<kh { for kx in 0..<kw {
                let iy = oy * stride[0] - pt + ky * dilation[0], ix = ox * stride[1] - pl + kx * dilation[1]
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                sum += x[(iy * w + ix) * c + ch] * Double(kernel[((ky * kw + kx) * c + ch) * multiplier + m])
            } }
            y[(oy * ow + ox) * out + ch * multiplier + m] = sum
        } } } }
        return (y, oh, ow)
    }

    public static func pool(_ x: [Double], h: Int, w: Int, c: Int, size: [Int], stride: [Int], same: Bool, isMax: Bool) -> (values: [Double], h: Int, w: Int) {
        let (oh, pt) = tfPadding(input: h, kernel: size[0], stride: stride[0], dilation: 1, same: same)
        let (ow, pl) = tfPadding(input: w, kernel: size[1], stride: stride[1], dilation: 1, same: same)
        var y = [Double](repeating: 0, count: oh * ow * c)
        for oy in 0..<oh { for ox in 0..<ow { for ch in 0..<c {
            var values: [Double] = []
            for ky in 0..<size[0] { for kx in 0..<size[1] {
                let iy = oy * stride[0] - pt + ky, ix = ox * stride[1] - pl + kx
                if iy >= 0, iy < h, ix >= 0, ix < w { values.append(x[(iy * w + ix) * c + ch]) }
            } }
            y[(oy * ow + ox) * c + ch] = isMax ? values.max()! : values.reduce(0, +) / Double(values.count)
        } } }
        return (y, oh, ow)
    }
}
