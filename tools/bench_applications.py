#!/usr/bin/env python3
"""bnrun versus onnxruntime and OpenVINO on keras.applications architectures (and the segmentation and 1-D
networks of tools/deployed_architectures.py: UNet, XceptionUNet, FCN1D, ResNet1D; for a 1-D network --sizes
are sequence lengths), side by side in one run.

Each model is built by tf_keras 2.21 with random weights and randomized BN statistics
(tools/make_applications_model.py), saved as .h5 and folded by `bnconv fold`; the same in-memory
model is exported to ONNX by tf2onnx 1.17 (opset 17; its optimizer folds the BN layers into the
convolutions, so the peers run the same folded network; where a peer cannot load that export, the
peers run `bnconv convert`'s ONNX export of the folded .bin instead, marked †). For every input size, batch and thread
count, `bnrun --bench`, onnxruntime (CPU provider, all graph optimizations, intra-op threads =
threads) and OpenVINO (CPU, the ONNX reshaped to the batch, INFERENCE_NUM_THREADS = threads,
LATENCY hint, f32 inference precision: on CPUs with AMX or AVX512-BF16 its default is bfloat16) run the same float32 images in turn, `--repeats` rounds alternating (each engine's share of a round the
median of as many passes over the images as take onnxruntime a quarter second, 1 to 10, the same for all three), and the median
images/s of each and bnrun's ratio to the faster peer are printed as Markdown. The three must
predict the same class for every image (for a segmentation map, at every pixel). `--isa avx2` runs bnrun with BNKIT_MAX_ISA=avx2 (its AVX2
kernels on an AVX-512 machine), OpenVINO with ONEDNN_MAX_CPU_ISA=AVX2, and the whole process under
tools/cpu_cap.py's CPUID cap, so onnxruntime, OpenVINO and bnrun all see a CPU without AVX-512 (where the
CPU cannot fault on CPUID, onnxruntime stays uncapped and a column adds bnrun's ratio to OpenVINO alone). Peak memory (max RSS) of one process per engine and case is reported (the peers' in Python, with
the part that loads no model given below the table).
A second table gives, for bnrun and each peer, the most threads over the fewest at batch 1 with the two
counts alternating in every round (the first table's cells for them are minutes apart).

Usage: tools/bench_applications.sh [--models ResNet50 MobileNetV2 EfficientNetB0] [--sizes 224 96]
       [--batches 1 16] [--threads 1 2] [--repeats 5] [--isa avx2] [--onnx FILE.onnx ...]

`--onnx` adds ONNX files run as they are (PyTorch's exports from tools/make_torch_fixtures.sh,
NCHW with the BN nodes kept: bnrun runs `bnconv fold`'s output, each peer folds them its own way;
inputs standard normal; `--models` with no names runs only these).
"""
import argparse
import math
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cpu_cap  # noqa: E402
import make_applications_model as maker  # noqa: E402
from peer_engines import ort_session, ov_request  # noqa: E402  (how the peers are set up)


def write_idx_float32(path, array):
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x0D, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.astype(">f4").tobytes())


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bnconv", required=True)
    parser.add_argument("--bnrun", required=True)
    parser.add_argument("--models", nargs="*", default=["ResNet50", "MobileNetV2", "EfficientNetB0"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 96])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--isa", choices=["avx512", "avx2", "generic"], default=None)
    parser.add_argument("--onnx", nargs="+", default=[], help="ONNX files to run as they are (PyTorch exports, BN kept), after --models")
    args = parser.parse_args()
    ort_capped, cap_line = cpu_cap.cap_process(args.isa, needs_avx=True)
    import onnx
    import onnxruntime as ort
    import openvino as ov
    import tf2onnx
    import tensorflow as tf

    env = dict(os.environ)
    if args.isa:
        env["BNKIT_MAX_ISA"] = args.isa
        # OpenVINO's CPU plugin (oneDNN) takes the same cap, read when the plugin first loads (under
        # the CPUID cap it sees the lower level anyway).
        os.environ["ONEDNN_MAX_CPU_ISA"] = {"avx512": "AVX512_CORE", "avx2": "AVX2", "generic": "SSE41"}[args.isa]
    # Without the CPUID cap onnxruntime stays at the CPU's best: then a column compares with OpenVINO alone.
    args.ov_column = bool(args.isa) and not ort_capped
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; bnrun ISA cap: {args.isa or 'none (best available)'}; "
          f"onnxruntime {ort.__version__}, OpenVINO {ov.__version__}, tf2onnx {tf2onnx.__version__}\n")
    if cap_line:
        print(f"Instruction sets: {cap_line}.\n")
    capped = f" (capped {args.isa})" if args.isa else ""
    print(f"| model | size | threads | batch | bnrun img/s{capped} | onnxruntime img/s{capped if ort_capped else ''} "
          f"| OpenVINO img/s{capped} | ratio to the faster |"
          + (" ratio to OpenVINO, same ISA |" if args.ov_column else "") + " max RSS: bnrun / onnxruntime / OpenVINO |")
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if args.ov_column else ""))
    core = ov.Core()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for size in args.sizes:
                model, _ = maker.build(name, "keras2", size, 0)
                h5, binary, onnx_path = (os.path.join(tmp, f"{name}{size}.{e}") for e in ("h5", "bin", "onnx"))
                model.save(h5)
                subprocess.run([args.bnconv, "fold", h5, "-o", binary], check=True, capture_output=True)
                sample = tuple(model.input_shape[1:])  # size × size × 3, or a 1-D network's size × channels
                spec = (tf.TensorSpec((None,) + sample, tf.float32, name="input"),)
                tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=onnx_path)
                del model
                maker.keras_module("keras2").backend.clear_session()
                count = max(args.batches) * 2
                x = np.random.default_rng(1).uniform(0, 255, (count,) + sample).astype(np.float32)
                label = name
                reason = peers_refuse(core, onnx_path, x.shape[1:])
                if reason:
                    # The peers run bnkit's own ONNX export of the same folded weights instead
                    # (standard ONNX ops: NHWC input, one Transpose, then NCHW convs).
                    onnx_path = os.path.join(tmp, f"{name}{size}.bnkit.onnx")
                    subprocess.run([args.bnconv, "convert", binary, onnx_path], check=True, capture_output=True)
                    again = peers_refuse(core, onnx_path, x.shape[1:])
                    if again:
                        print(f"| {name} | {size} | – | – | not compared: {reason}; and {again.replace('tf2onnx', 'bnconv')} | | | | |",
                              flush=True)
                        continue
                    label = f"{name}†"
                    FOOTNOTES.add("† The peers run `bnconv convert`'s ONNX export of the folded .bin: tf2onnx's export does not load "
                                  "(its RegNet and ConvNeXt grouped convs stay PartitionedCall nodes).")
                    print(f"{name} {size}: {reason}", file=sys.stderr, flush=True)
                compare(args, env, core, tmp, label, size, binary, onnx_path, x)
                scaling(args, env, core, label, size, binary, onnx_path, x)
        for onnx_path in args.onnx:
            # An ONNX file as it is (PyTorch's NCHW, BN nodes kept: each peer folds them its own way).
            name = os.path.splitext(os.path.basename(onnx_path))[0]
            binary = os.path.join(tmp, name + ".bin")
            subprocess.run([args.bnconv, "fold", onnx_path, "-o", binary], check=True, capture_output=True)
            graph_input = onnx.load(onnx_path, load_external_data=False).graph.input[0]
            dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim[1:]]
            count = max(args.batches) * 2
            x = np.random.default_rng(1).standard_normal((count, *dims)).astype(np.float32)
            compare(args, env, core, tmp, name, dims[-1], binary, onnx_path, x, class_axis=1)
            scaling(args, env, core, name, dims[-1], binary, onnx_path, x)
    measured = {key: [r for r in BASELINES[key] if r is not None] for key in BASELINES}
    if measured["ort"] and measured["ov"]:
        span = {key: f"{min(v)}–{max(v)}" if min(v) != max(v) else f"{v[0]}" for key, v in measured.items()}
        FOOTNOTES.add("Max RSS: one process per engine running the case's batches over the same images (bnrun; the peers in "
                      "Python, tools/peer_engines.py). Of the peers', the interpreter, numpy, the engine's libraries and the "
                      f"images alone (the same process loading no model) are {span['ort']} MB for onnxruntime and "
                      f"{span['ov']} MB for OpenVINO.")
    for note in sorted(FOOTNOTES):
        print(f"\n{note}")
    if SCALING:
        low, high = min(args.threads), max(args.threads)
        print(f"\n{high} threads over {low} at batch 1, the thread counts alternating in each round "
              f"(median images/s of {args.repeats} rounds; both counts measured in the same minutes):\n")
        print(f"| model | size | bnrun {low} thread | bnrun {high} threads | bnrun {high} over {low} | onnxruntime {high} over {low} "
              f"| OpenVINO {high} over {low} |")
        print("|---|---|---|---|---|---|---|")
        for row in SCALING:
            print(row)


SCALING = []
FOOTNOTES = set()
PEER_ENGINES = os.path.join(HERE, "peer_engines.py")
BASELINES = {"ort": [], "ov": []}  # max RSS of a peer's process that loads no model (MB)


def max_rss(command, env):
    """Peak resident memory (MB) of `command` run to its end under /usr/bin/time; None if it fails."""
    timed = subprocess.run(["/usr/bin/time", "-f", "%M"] + command, capture_output=True, text=True, env=env)
    if timed.returncode != 0:
        print(f"max RSS not measured: {' '.join(command[:3])} … exited {timed.returncode}: "
              f"{timed.stderr.strip().splitlines()[-2:] if timed.stderr.strip() else ''}", file=sys.stderr, flush=True)
        return None
    return int(timed.stderr.strip().splitlines()[-1]) // 1024


def bnrun_rate(args, env, binary, images, batch, threads, passes):
    """Images/s of one `bnrun --bench PASSES` process (a warm pass, then the median of the timed passes)."""
    bench = subprocess.run([args.bnrun, binary, images, "--scale", "1", "--bench", str(passes), "--batch", str(batch),
                            "--threads", str(threads)], check=True, capture_output=True, text=True, env=env)
    return float(bench.stdout.split("images/s:")[1].split()[0])


SCALING_IMAGES = 32  # images a pass in the thread-scaling rounds, whatever the batches asked for
ROUND_SECONDS = 0.25  # each engine's share of a round: enough timed passes over the images to take this long


def passes_for(run):
    """How many timed passes over the images make each engine's share of a round: enough for ROUND_SECONDS
    at the speed of `run` (a peer), 1 to 10, the same for all three engines. A pass of a small network
    over the images takes 20-40 ms, in which one hiccup of a shared VM decides the round."""
    run()  # warm
    start = time.perf_counter()
    run()
    return max(1, min(10, math.ceil(ROUND_SECONDS / (time.perf_counter() - start))))


def peer_rate(run, count, passes):
    """Images/s of a peer over `count` images: a warm pass, then the median of `passes` timed passes."""
    run()
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return count / statistics.median(times)


def peers_refuse(core, onnx_path, sample_shape):
    """None when both peers take the ONNX file; else which peer refuses it and why (tf2onnx 1.17
    leaves RegNet's and ConvNeXt's grouped convs as PartitionedCall nodes, which neither runs)."""
    for peer, load in (("onnxruntime", lambda: ort_session(onnx_path, 1)),
                       ("OpenVINO", lambda: ov_request(core, onnx_path, sample_shape, 1, 1))):
        try:
            load()
        except Exception as error:  # each peer raises its own types
            reason = " ".join(str(error).split())[:160].replace("|", "/")
            return f"{peer} cannot load the tf2onnx export ({reason})"
    return None


def scaling(args, env, core, name, size, binary, onnx_path, x):
    """The fewest and most threads at batch 1, alternating within each round for bnrun and each peer.

    The table's cells for one and two threads are minutes apart, and a shared VM's speed drifts by
    a third in minutes: their quotient measures the drift as much as the threads. Here each round
    runs both counts back to back, so the ratio compares like with like.
    """
    low, high = min(args.threads), max(args.threads)
    if 1 not in args.batches or low == high:
        return
    # At least SCALING_IMAGES a pass (the same images again): with `--batches 1` alone the case has
    # 2, and a pass of 2 images (4 ms of MobileNetV2 at 96) measures one scheduler hiccup or none.
    x = np.concatenate([x] * math.ceil(SCALING_IMAGES / len(x)))[:max(SCALING_IMAGES, len(x))]
    images = os.path.join(os.path.dirname(binary), "scaling.idx")
    write_idx_float32(images, x)
    runners = {}
    for threads in (low, high):
        session = ort_session(onnx_path, threads)
        input_name = session.get_inputs()[0].name
        request = ov_request(core, onnx_path, x.shape[1:], 1, threads)
        runners[("ort", threads)] = lambda s=session, n=input_name: [s.run(None, {n: x[i:i + 1]}) for i in range(len(x))]
        runners[("ov", threads)] = lambda r=request: [r.infer({0: x[i:i + 1]}) for i in range(len(x))]
    rates = {(key, threads): [] for key in ("bnrun", "ort", "ov") for threads in (low, high)}
    passes = passes_for(runners[("ort", high)])
    for _ in range(args.repeats):
        for threads in (low, high):
            time.sleep(0.5)
            rates[("bnrun", threads)].append(bnrun_rate(args, env, binary, images, 1, threads, passes))
        for key in ("ort", "ov"):
            for threads in (low, high):
                rates[(key, threads)].append(peer_rate(runners[(key, threads)], len(x), passes))
    median = {k: statistics.median(v) for k, v in rates.items()}
    SCALING.append(f"| {name} | {size} | {median[('bnrun', low)]:,.1f} | {median[('bnrun', high)]:,.1f} | "
                   f"{median[('bnrun', high)] / median[('bnrun', low)]:.2f} | {median[('ort', high)] / median[('ort', low)]:.2f} | "
                   f"{median[('ov', high)] / median[('ov', low)]:.2f} |")


def classes(y, axis):
    """Each sample's class (the argmax over `axis`), or for a map (a segmentation's output) each position's."""
    return np.asarray(y).argmax(axis)


def compare(args, env, core, tmp, name, size, binary, onnx_path, x, class_axis=-1):
    """bnrun on `binary` against onnxruntime and OpenVINO on `onnx_path`, for each thread count and batch.
    class_axis: the outputs' class axis (Keras's maps are channels-last; an ONNX file's are NCHW: 1)."""
    count = len(x)
    images, arrays = os.path.join(tmp, f"x{name}.idx"), os.path.join(tmp, f"x{name}.npy")
    write_idx_float32(images, x)
    np.save(arrays, x)
    for key in ("ort", "ov"):
        BASELINES[key].append(max_rss([sys.executable, PEER_ENGINES, key, "--baseline", arrays], os.environ))
    for threads in args.threads:
        session = ort_session(onnx_path, threads)
        input_name = session.get_inputs()[0].name
        for batch in args.batches:
            request = ov_request(core, onnx_path, x.shape[1:], batch, threads)
            tiles = [x[i:i + batch] for i in range(0, count, batch)]

            def run_ort():
                return np.concatenate([session.run(None, {input_name: t})[0] for t in tiles])

            def run_ov():
                return np.concatenate([request.infer({0: t})[0].copy() for t in tiles])

            # Classes must agree (bnrun's from its npy output).
            out = os.path.join(tmp, "out.npy")
            subprocess.run([args.bnrun, binary, images, "--scale", "1", "--format", "npy", "--output", out], check=True, env=env)
            mine = classes(np.load(out), class_axis)
            theirs = classes(run_ort(), class_axis), classes(run_ov(), class_axis)
            same = (mine == theirs[0]).all() and (mine == theirs[1]).all()
            # Where they differ, how many each pair (a random network's near-ties split the peers too).
            differ = (f" (classes differ of {mine.size}: bnrun/onnxruntime {(mine != theirs[0]).sum()}, bnrun/OpenVINO "
                      f"{(mine != theirs[1]).sum()}, onnxruntime/OpenVINO {(theirs[0] != theirs[1]).sum()})")
            rates = {"bnrun": [], "ort": [], "ov": []}
            passes = passes_for(run_ort)
            for _ in range(args.repeats):
                # The peers' worker threads spin for a while after a run: let them park, so
                # bnrun's threads do not share the cores with them.
                time.sleep(0.5)
                rates["bnrun"].append(bnrun_rate(args, env, binary, images, batch, threads, passes))
                for key, run in (("ort", run_ort), ("ov", run_ov)):
                    rates[key].append(peer_rate(run, count, passes))
            # Peak memory of a process of each engine running the batch over the same images.
            rss = [max_rss([args.bnrun, binary, images, "--scale", "1", "--batch", str(batch), "--threads", str(threads),
                            "--format", "summary"], env)]
            rss += [max_rss([sys.executable, PEER_ENGINES, key, onnx_path, arrays, str(batch), str(threads)], os.environ)
                    for key in ("ort", "ov")]
            median = {k: statistics.median(v) for k, v in rates.items()}
            best = max(median["ort"], median["ov"])
            print(f"| {name} | {size} | {threads} | {batch} | {median['bnrun']:,.1f} | {median['ort']:,.1f} | {median['ov']:,.1f} | "
                  f"{median['bnrun'] / best:.2f}×{'' if same else differ} |"
                  + (f" {median['bnrun'] / median['ov']:.2f}× |" if args.ov_column else "") + f" {' / '.join('–' if r is None else str(r) for r in rss)} MB |", flush=True)

if __name__ == "__main__":
    main()
