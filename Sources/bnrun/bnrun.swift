import ArgumentParser
import AtomicFile
import BNKit
import BNKitCLI
import Images
import Foundation
import Runtime
import ScratchFiles

@main
struct BNRun: ParsableCommand {
    static func main() {
        isolateHDF5Parsing()
        // Interrupted (SIGINT, SIGTERM, SIGHUP), the tool leaves no scratch file behind: no
        // half-written output's temporary, no extracted archive member, no HDF5 reader.
        ScratchFiles.removeOnInterruption()
        main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "bnrun",
        abstract: "Run a (folded) model over images (IDX, NumPy, PNG or JPEG) and report its predictions.",
        discussion: """
        MODEL is a bnkit .bin (from `bnconv fold`) or an unfolded Keras .h5 (same answers, slower). \
        IMAGES is an IDX file (plain or gzipped), a NumPy .npy or .npz (--array NAME), PNG/JPEG files, a \
        folder of them, or a text file listing image paths (recognised by content). An N x ... array is \
        reshaped to the model's input when the element counts match; integer data is scaled by 1/255 by \
        default (pixels / 255 as float32), float data is used as stored. Images are converted to the \
        model's channels (RGB or grayscale), resized to its input (--resize) and preprocessed \
        (--preprocess) as keras.utils.load_img + img_to_array + preprocess_input do; rows are keyed by \
        the image path. Every format streams as batches finish: memory stays flat for any input size.

        Examples:
          bnrun model.bin t10k-images.idx3-ubyte.gz --labels t10k-labels.idx1-ubyte.gz --format summary
          bnrun model.bin images.idx --format csv --output predictions.csv
          bnrun resnet50.bin photos/ --preprocess caffe --top 5 --class-names imagenet.txt
          bnrun model.bin samples.npz --array x_test --format npy --output outputs.npy
          bnrun model.h5 images.idx --scale 1 --format json
          bnrun model.bin images.idx --bench 5 --batch 64 --threads 1
          bnrun model.h5 shifted.idx --bn-statistics batch --batch 256

        --bn-statistics batch (an unfolded model) normalizes every BatchNormalization layer with the mean and \
        population variance of the current batch of --batch images, as Keras's model(x, training=True) does; \
        results then depend on the batch size and on which images share a batch. The default, running, uses \
        the stored moving statistics.

        Exit status: 0 success, 64 usage error, 65 bad or unsupported input, 74 cannot write output, \
        70 internal error.
        """)

    @Argument(help: "The model: a bnkit .bin or a Keras .h5.")
    var model: String

    @Argument(help: "The inputs: an IDX file (plain or gzipped), a .npy, an .npz, PNG/JPEG files, a folder of images, or a text file listing image paths.")
    var images: [String]

    @Option(help: "An IDX file of labels, one per image; the accuracy is reported.")
    var labels: String?

    @Option(help: "Output format: text (one line per image, then the accuracy), csv (index,prediction,p0,...,p{K-1}), json (JSON Lines), npy (a float32 array of all outputs), or summary.")
    var format: String = "text"

    @Option(help: "Write the report to this file (atomically) instead of standard output.")
    var output: String?

    @Option(help: "Input scale, as a number or a fraction such as 1/255. Default: 1/255 for integer IDX/NumPy data, 1 for float data and for images (0..255, as img_to_array gives them).")
    var scale: String?

    @Option(help: "The array of an .npz archive to run on (default: its only array).")
    var array: String?

    @Option(help: "How images are resized to the model's input: nearest (keras.utils.load_img's default) or bilinear.")
    var resize: String = "nearest"

    @Option(help: "Image preprocessing, as keras.applications preprocess_input: none (0..255), tf ([-1, 1]), torch (ImageNet mean/std), caffe (BGR minus the ImageNet means). Default: what the .bin records (bnconv fold --preprocess), else none.")
    var preprocess: String?

    @Flag(help: "Skip images that cannot be read and list them at the end, instead of stopping at the first.")
    var skipBad = false

    @Option(help: "Also report the K best classes with their scores (and names, with --class-names).")
    var top: Int?

    @Option(help: "A text file of class names, one per line (line k names class k).")
    var classNames: String?

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Images per batch (a tile run through the model at once; default 1024, fewer when 1024 would be over 64 MiB of inputs).")
    var batch: Int?

    @Option(name: .customLong("bn-statistics"),
            help: "What BatchNormalization layers normalize with: running (the stored moving statistics; default) or batch (the statistics of each batch of --batch images; unfolded models only).")
    var bnStatistics: String = "running"

    @Option(help: "Measure throughput instead: after one untimed pass, run all images this many times and print the median images/s (and the kernels' instruction set: avx512, avx2 or generic).")
    var bench: Int?

    @Flag(help: "With --bench: also print, to stderr, the time of each step of the run (the slowest first).")
    var profile = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        if let batch, batch < 1 { throw ValidationError("--batch must be at least 1") }
        if let bench, bench < 1 { throw ValidationError("--bench must be at least 1") }
        guard ReportFormat(rawValue: format) != nil else {
            throw ValidationError("unknown format '\(format)' (text, csv, json, npy, summary)")
        }
        guard BatchNormStatistics(rawValue: bnStatistics) != nil else {
            throw ValidationError("unknown --bn-statistics '\(bnStatistics)' (running, batch)")
        }
        if bench != nil && bnStatistics != "running" { throw ValidationError("--bench measures the running statistics only") }
        if let scale, InputScale(scale) == nil {
            throw ValidationError("invalid --scale '\(scale)' (a number or a fraction such as 1/255)")
        }
        guard ResizeMethod(rawValue: resize) != nil else { throw ValidationError("unknown --resize '\(resize)' (nearest, bilinear)") }
        if let preprocess, Preprocessing(rawValue: preprocess) == nil {
            throw ValidationError("unknown --preprocess '\(preprocess)' (none, tf, torch, caffe)")
        }
        if let top, top < 1 { throw ValidationError("--top must be at least 1") }
        if bench != nil && images.count != 1 { throw ValidationError("--bench takes one IDX file") }
        if profile && bench == nil { throw ValidationError("--profile goes with --bench") }
    }

    /// The steps' times, slowest first, with their share and a running total; for steps split across
    /// threads, the share of the step worker 0 waited at the joins and the share the others worked.
    static func printProfile(_ steps: [Executor.StepTime]) {
        let total = max(steps.reduce(0) { $0 + $1.seconds }, 1e-12)
        var lines = ["step profile (worker 0, timed passes): \(steps.count) steps, \(String(format: "%.3f", total)) s"]
        let split = steps.filter { $0.waited != nil }
        if case let time = split.reduce(0, { $0 + $1.seconds }), time > 0 {
            let waited = split.reduce(0) { $0 + $1.waited! }, busy = split.reduce(0) { $0 + $1.othersBusy! }
            lines.append(String(format: "with the other threads (%d steps, %.3f s): worker 0 waited at the joins %.1f%%, ", split.count, time, 100 * waited / time)
                         + String(format: "the others worked %.1f%% of it", 100 * busy / time))
        }
        var running = 0.0
        for step in steps.sorted(by: { $0.seconds > $1.seconds }) {
            running += step.seconds
            var line = String(format: "%9.3f ms %5.1f%% %5.1f%%  ", step.seconds * 1e3, 100 * step.seconds / total, 100 * running / total)
                + "\(step.operation)  \(step.layer)"
            if let waited = step.waited, let busy = step.othersBusy, step.seconds > 0 {
                line += String(format: "  (waited %.1f%%, others worked %.1f%%)", 100 * waited / step.seconds, 100 * busy / step.seconds)
            }
            lines.append(line)
        }
        FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }

    func run() throws {
        runReportingFailures(tool: "bnrun") {
            let loaded = try Model.load(path: model)
            let graph = loaded.graph
            if let bench {
                let batch = batch ?? 1024
                let (median, all) = try benchmark(graph: graph, imagesPath: images[0], scale: scale.flatMap(InputScale.init),
                                                  batch: batch, threads: threads, repeats: bench,
                                                  profile: profile ? { Self.printProfile($0) } : nil)
                // Slow models (a few images/s) keep a decimal.
                let rate = { (value: Double) in value < 1000 ? String(format: "%.1f", value) : String(Int(value.rounded())) }
                // The kernels' instruction set, as this CPU (and BNKIT_MAX_ISA) left it.
                print("images/s: \(rate(median)) (median of \(all.count); batch \(batch), threads \(threads), "
                      + "kernels \(Kernels.gemmImplementation); runs: "
                      + all.map(rate).joined(separator: " ") + ")")
                return
            }
            var options = RunOptions()
            options.scale = scale.flatMap(InputScale.init)
            options.tileSize = batch
            options.threads = threads
            // A progress bar on a terminal's stderr, unless the report itself goes to that terminal.
            options.showProgress = isatty(STDERR_FILENO) == 1 && (output != nil || isatty(STDOUT_FILENO) == 0)
            options.batchNormStatistics = BatchNormStatistics(rawValue: bnStatistics)!
            options.modelPath = model
            options.array = array
            let recorded = loaded.metadata["preprocess"].flatMap(Preprocessing.init(rawValue:))
            options.images = ImageOptions(resize: ResizeMethod(rawValue: resize)!,
                                          preprocessing: preprocess.flatMap(Preprocessing.init(rawValue:)) ?? recorded ?? .none, skipBad: skipBad,
                                          threads: threads)
            let names: [String]? = try classNames.map { path in
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw CLIFailure.badInput("\(path): cannot read the class names") }
                return text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
            }
            let sink = try ReportSink(output: output)
            var writer: ReportWriter?
            do {
                let (_, rows, skipped) = try streamInference(graph: graph, inputs: images, labelsPath: labels, options: options,
                                                             prepare: { shape, source, count in
                    writer = try ReportWriter(format: ReportFormat(rawValue: format)!, sink: sink, outputShape: shape, keyed: source.keyed,
                                              top: top, classNames: names, hasLabels: labels != nil,
                                              expectedRows: source.keyed && skipBad ? nil : count)
                }) { outputs, predictions, keys, tileLabels in
                    try writer!.write(outputs: outputs, predictions: predictions, keys: keys, labels: tileLabels)
                }
                try writer!.finish(skipped: skipped)
                if options.batchNormStatistics == .batch, case let batch = batch ?? 1024, rows % batch != 0, rows > batch {
                    FileHandle.standardError.write(Data("bnrun: note: the last batch has \(rows % batch) images, not \(batch)\n".utf8))
                }
            } catch {
                sink.abandon()
                throw error
            }
        }
    }
}
