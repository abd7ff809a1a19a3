import ArgumentParser
import AtomicFile
import BNKitCLI
import Foundation
import Runtime

@main
struct BNRun: ParsableCommand {
    static func main() {
        isolateHDF5Parsing()
        main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "bnrun",
        abstract: "Run a (folded) model over the images of an IDX file and report its predictions.",
        discussion: """
        MODEL is a bnkit .bin (from `bnconv fold`) or an unfolded Keras .h5 (same answers, slower).
        IMAGES is an IDX file, plain or gzipped (detected by content). Each image is reshaped to the
        model's input when the element counts match. Integer pixels are scaled by 1/255 by default
        (pixels / 255 as float32, as Keras training scripts do); float data is used as stored.

        Examples:
          bnrun model.bin t10k-images.idx3-ubyte.gz --labels t10k-labels.idx1-ubyte.gz --format summary
          bnrun model.bin images.idx --format csv --output predictions.csv
          bnrun model.h5 images.idx --scale 1 --format json
          bnrun model.bin images.idx --bench 5 --batch 64 --threads 1
          bnrun model.h5 shifted.idx --bn-statistics batch --batch 256

        --bn-statistics batch (an unfolded model) normalizes every BatchNormalization layer with the mean and
        population variance of the current batch of --batch images, as Keras's model(x, training=True) does;
        results then depend on the batch size and on which images share a batch. The default, running, uses
        the stored moving statistics.

        Exit status: 0 success, 64 usage error, 65 bad or unsupported input, 74 cannot write output,
        70 internal error.
        """)

    @Argument(help: "The model: a bnkit .bin or a Keras .h5.")
    var model: String

    @Argument(help: "The images: an IDX file (plain or gzipped).")
    var images: String

    @Option(help: "An IDX file of labels, one per image; the accuracy is reported.")
    var labels: String?

    @Option(help: "Output format: text (one line per image, then the accuracy), csv (index,prediction,p0,...,p{K-1}), json, or summary.")
    var format: String = "text"

    @Option(help: "Write the report to this file (atomically) instead of standard output.")
    var output: String?

    @Option(help: "Input scale, as a number or a fraction such as 1/255. Default: 1/255 for integer IDX data, 1 for float data.")
    var scale: String?

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Images per batch (a tile run through the model at once).")
    var batch: Int = 1024

    @Option(name: .customLong("bn-statistics"),
            help: "What BatchNormalization layers normalize with: running (the stored moving statistics; default) or batch (the statistics of each batch of --batch images; unfolded models only).")
    var bnStatistics: String = "running"

    @Option(help: "Measure throughput instead of reporting: after one untimed pass, run all images this many times and print the median images/s.")
    var bench: Int?

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        if let bench, bench < 1 { throw ValidationError("--bench must be at least 1") }
        guard ReportFormat(rawValue: format) != nil else {
            throw ValidationError("unknown format '\(format)' (text, csv, json, summary)")
        }
        guard BatchNormStatistics(rawValue: bnStatistics) != nil else {
            throw ValidationError("unknown --bn-statistics '\(bnStatistics)' (running, batch)")
        }
        if bench != nil && bnStatistics != "running" { throw ValidationError("--bench measures the running statistics only") }
        if let scale, InputScale(scale) == nil {
            throw ValidationError("invalid --scale '\(scale)' (a number or a fraction such as 1/255)")
        }
    }

    func run() throws {
        runReportingFailures(tool: "bnrun") {
            let (graph, _) = try loadModel(path: model)
            if let bench {
                let (median, all) = try benchmark(graph: graph, imagesPath: images, scale: scale.flatMap(InputScale.init),
                                                  batch: batch, threads: threads, repeats: bench)
                print("images/s: \(Int(median.rounded())) (median of \(all.count); batch \(batch), threads \(threads); runs: "
                      + all.map { String(Int($0.rounded())) }.joined(separator: " ") + ")")
                return
            }
            let result = try runInference(graph: graph, imagesPath: images, labelsPath: labels, scale: scale.flatMap(InputScale.init),
                                          tileSize: batch, threads: threads, showProgress: isatty(STDERR_FILENO) == 1,
                                          batchNormStatistics: BatchNormStatistics(rawValue: bnStatistics)!, modelPath: model)
            if result.batchNormStatistics == .batch, result.imageCount % batch != 0, result.imageCount > batch {
                FileHandle.standardError.write(Data("bnrun: note: the last batch has \(result.imageCount % batch) images, not \(batch)\n".utf8))
            }
            let report = ReportFormat(rawValue: format)!.render(result)
            if let output {
                try AtomicFile.write(Data(report.utf8), to: output)
            } else {
                FileHandle.standardOutput.write(Data(report.utf8))
            }
        }
    }
}
