@_exported import BNStatistics

extension Model {
    /// Re-estimates every BatchNormalization layer's moving mean and variance from
    /// `data` (unlabeled samples of the model's input, float32, in batches): per channel,
    /// the mean and population variance of the layer's input over all the samples, in
    /// inference order (see `BatchNormRecalibration`). Gamma, beta, epsilon and every other
    /// weight are unchanged; save the model to keep the result, or fold it.
    ///
    /// ```swift
    /// var model = try Model.load(path: "model.h5")
    /// let batches: [[Float]] = myImages            // each a whole number of samples
    /// for change in try model.recalibrateBatchNorm(using: batches) { print(change) }
    /// try model.save(to: "adapted.h5")
    /// ```
    @discardableResult
    public mutating func recalibrateBatchNorm(using data: some CalibrationBatches, threads: Int = 1) throws -> [BatchNormChange] {
        let result = try BatchNormRecalibration.recalibrate(graph, data: data, threads: threads)
        graph = result.graph
        return result.changes
    }
}
