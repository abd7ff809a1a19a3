import ModelIR

/// Entry point for the config fuzz target: parses a model config and builds
/// its graph with weights synthesized from each layer's configuration (zeros
/// of the shape the layer needs), so every path of the parser and the graph
/// builder is reachable without an HDF5 file.
@_spi(Fuzzing)
public enum KerasConfigFuzzing {
    public static func buildGraph(configJSON: String) throws -> Graph {
        let config = try ModelConfigParser(path: "fuzz").parse(json: configJSON)
        return try GraphBuilder(path: "fuzz", kerasVersion: nil).build(config, weights: SynthesizedWeights())
    }
}

/// Weights of the shapes a layer's config and input imply (zeros, capped in size).
struct SynthesizedWeights: WeightSource {
    func weights(of layer: LayerConfig, inputShapes: [[Int]]) throws -> [Tensor] {
        func zeros(_ shape: [Int]) throws -> Tensor {
            guard let count = Tensor.elementCount(shape), count <= 1 << 20 else { throw ModelError.badAttribute(name: "size", value: "\(shape)") }
            return try Tensor(shape: shape, values: [Float](repeating: 0, count: count))
        }
        let channels = inputShapes.first?.last ?? 1
        let bias = layer.bool("use_bias", default: true)
        switch layer.className {
        case "BatchNormalization":
            let count = (layer.bool("scale", default: true) ? 1 : 0) + (layer.bool("center", default: true) ? 1 : 0) + 2
            return try (0..<count).map { index in
                // moving variance (the last) of ones, so variance + epsilon > 0
                let tensor = try zeros([channels])
                return index == count - 1 ? Tensor(tensor.values.map { _ in 1 }) : tensor
            }
        case "Dense":
            let units = layer.int("units") ?? 1
            return try [zeros([channels, units])] + (bias ? [zeros([units])] : [])
        case "Conv2D":
            let filters = layer.int("filters") ?? 1, groups = max(layer.int("groups") ?? 1, 1)
            return try [zeros((layer.pair("kernel_size") ?? [1, 1]) + [channels / groups, filters])] + (bias ? [zeros([filters])] : [])
        case "DepthwiseConv2D":
            let multiplier = layer.int("depth_multiplier") ?? 1
            return try [zeros((layer.pair("kernel_size") ?? [1, 1]) + [channels, multiplier])] + (bias ? [zeros([channels * multiplier])] : [])
        case "Conv1D":
            let filters = layer.int("filters") ?? 1, groups = max(layer.int("groups") ?? 1, 1)
            return try [zeros([layer.single("kernel_size") ?? 1, channels / groups, filters])] + (bias ? [zeros([filters])] : [])
        case "DepthwiseConv1D":
            let multiplier = layer.int("depth_multiplier") ?? 1
            return try [zeros([layer.single("kernel_size") ?? 1, channels, multiplier])] + (bias ? [zeros([channels * multiplier])] : [])
        case "SeparableConv2D", "SeparableConv1D":
            let multiplier = layer.int("depth_multiplier") ?? 1, filters = layer.int("filters") ?? 1
            let oneD = layer.className.hasSuffix("1D")
            let size = oneD ? [layer.single("kernel_size") ?? 1] : (layer.pair("kernel_size") ?? [1, 1])
            return try [zeros(size + [channels, multiplier]), zeros((oneD ? [1] : [1, 1]) + [channels * multiplier, filters])]
                + (bias ? [zeros([filters])] : [])
        case "Conv2DTranspose":
            let filters = layer.int("filters") ?? 1
            return try [zeros((layer.pair("kernel_size") ?? [1, 1]) + [filters, channels])] + (bias ? [zeros([filters])] : [])
        case "LayerNormalization":
            let count = (layer.bool("scale", default: true) ? 1 : 0) + (layer.bool("center", default: true) ? 1 : 0)
            return try (0..<count).map { _ in try zeros([channels]) }
        case "LayerScale":
            return [try zeros([channels])]
        default:
            return []
        }
    }

    func nested(_ layer: LayerConfig) throws -> WeightSource { self }
}
