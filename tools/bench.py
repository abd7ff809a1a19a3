#!/usr/bin/env python3
"""bnrun versus onnxruntime and OpenVINO on the same folded weights, side by side, in one run.

Usage: tools/bench.py --bin .build/release [--repeats N] [--models ...] [--quick] [--isa avx2]
(tools/bench.sh runs this, then tools/bench_applications.py for the keras.applications models.)

For each benchmark model (Fixtures/seed_mlp_keras3.h5, small_cnn_keras3.h5,
big_cnn_keras3.h5) this folds the Keras file with `bnconv fold`, reads the
folded .bin (weights exactly as bnrun uses them), builds the same network as
an ONNX model with numpy + onnx, and then, for threads 1 and 2 and batch 1,
64 and 10000, alternates onnxruntime, OpenVINO (CPU plugin, f32 inference
precision, the model reshaped to the batch; a last partial batch is left out of
its count) and `bnrun --bench` runs over the 10,000 MNIST test images and prints
the median images/s of each and bnrun's ratio to the faster peer. It checks
that all three predict the same classes, and times whole processes:
`bnrun` classifying the 10,000 images with labels versus a Python script
doing the same with onnxruntime. Results are printed as Markdown.
"""
import argparse
import atexit
import gzip
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
from onnx import TensorProto, helper, numpy_helper
import cpu_cap  # tools/cpu_cap.py: the CPUID cap for --isa
from peer_engines import ort_session, ov_request  # tools/peer_engines.py: how the peers are set up

# BNKIT_MAX_ISA -> oneDNN's ONEDNN_MAX_CPU_ISA, so OpenVINO runs at the same instruction-set level.
ONEDNN_ISA = {"avx512": "AVX512_CORE", "avx2": "AVX2", "generic": "SSE41"}

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "Fixtures")
IMAGES = os.path.join(FIXTURES, "mnist", "t10k-images.idx3-ubyte.gz")
LABELS = os.path.join(FIXTURES, "mnist", "t10k-labels.idx1-ubyte.gz")


# ---------------------------------------------------------------- the .bin reader (docs/FORMAT.md)

def read_bin(path):
    raw = open(path, "rb").read()
    assert raw[:8] == b"\x89BNK\r\n\x1a\n", path
    header_length, data_offset = struct.unpack("<QQ", raw[24:40])
    header = json.loads(raw[64:64 + header_length])
    data = raw[data_offset:]
    tensors = []
    for t in header["tensors"]:
        dtype = "<f4" if t["dtype"] == "float32" else "<i8"
        tensors.append(np.frombuffer(data, dtype=dtype, count=int(np.prod(t["shape"])) if t["shape"] else 1,
                                     offset=t["offset"]).reshape(t["shape"]).astype(np.float32 if dtype == "<f4" else np.int64))
    return header["graph"], tensors


# ---------------------------------------------------------------- the same network in ONNX

def tf_pads(size, kernel, stride, dilation, padding):
    if padding == "valid":
        return 0, 0
    effective = (kernel - 1) * dilation + 1
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def build_onnx(graph, tensors):
    """NHWC input like bnrun; convolutions run in NCHW inside the ONNX graph."""
    nodes, inits = [], []
    shapes, layout = {}, {}   # node name -> sample shape in NHWC terms; 'nchw' when the onnx tensor is NCHW
    counter = [0]

    def fresh(base):
        counter[0] += 1
        return f"{base}_{counter[0]}"

    def init(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def weight(node, role):
        return tensors[node["tensors"][role]]

    def as_nhwc(name):
        if layout.get(name) == "nchw":
            out = fresh(name + "_nhwc")
            nodes.append(helper.make_node("Transpose", [name], [out], perm=[0, 2, 3, 1]))
            return out
        return name

    def as_nchw(name):
        if layout.get(name) != "nchw" and len(shapes[name]) == 3:
            out = fresh(name + "_nchw")
            nodes.append(helper.make_node("Transpose", [name], [out], perm=[0, 3, 1, 2]))
            return out
        return name

    def activation(name, act, out):
        act = act or {"name": "linear"}
        kind = act["name"]
        op = {"linear": "Identity", "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}.get(kind)
        if kind == "softmax":
            nodes.append(helper.make_node("Softmax", [name], [out], axis=-1))
        elif op:
            nodes.append(helper.make_node(op, [name], [out]))
        else:
            raise SystemExit(f"bench: activation {kind} not mapped to ONNX")

    graph_input = None
    for node in graph["nodes"]:
        name, op, inputs = node["name"], node["op"], node["inputs"]
        if op == "input":
            graph_input = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"] + node["shape"])
            nodes.append(helper.make_node("Identity", ["x"], [name]))
            shapes[name], layout[name] = node["shape"], "nhwc"
            continue
        src = inputs[0]
        shape = shapes[src]
        if op == "dense":
            x = as_nhwc(src)
            linear = fresh(name + "_gemm")
            kernel = weight(node, "kernel")
            bias = weight(node, "bias") if "bias" in node.get("tensors", {}) else np.zeros(kernel.shape[1], np.float32)
            nodes.append(helper.make_node("Gemm", [x, init(fresh("W"), kernel), init(fresh("b"), bias)], [linear]))
            activation(linear, node.get("activation"), name)
            shapes[name], layout[name] = [kernel.shape[1]], "flat"
        elif op == "conv2d":
            x = as_nchw(src)
            kernel = weight(node, "kernel")                       # (kh, kw, in/groups, out)
            kh, kw, _, out_c = kernel.shape
            bias = weight(node, "bias") if "bias" in node.get("tensors", {}) else np.zeros(out_c, np.float32)
            (sy, sx), (dy, dx) = node["strides"], node["dilation"]
            top, bottom = tf_pads(shape[0], kh, sy, dy, node["padding"])
            left, right = tf_pads(shape[1], kw, sx, dx, node["padding"])
            conv = fresh(name + "_conv")
            nodes.append(helper.make_node("Conv", [x, init(fresh("W"), kernel.transpose(3, 2, 0, 1)), init(fresh("b"), bias)], [conv],
                                          strides=[sy, sx], dilations=[dy, dx], pads=[top, left, bottom, right],
                                          group=node.get("groups", 1)))
            activation(conv, node.get("activation"), name)
            oh = (shape[0] + top + bottom - ((kh - 1) * dy + 1)) // sy + 1
            ow = (shape[1] + left + right - ((kw - 1) * dx + 1)) // sx + 1
            shapes[name], layout[name] = [oh, ow, out_c], "nchw"
        elif op in ("max_pool2d", "average_pool2d"):
            x = as_nchw(src)
            (kh, kw), (sy, sx) = node["size"], node["strides"]
            top, bottom = tf_pads(shape[0], kh, sy, 1, node["padding"])
            left, right = tf_pads(shape[1], kw, sx, 1, node["padding"])
            kind = "MaxPool" if op == "max_pool2d" else "AveragePool"
            extra = {} if kind == "MaxPool" else {"count_include_pad": 0}
            nodes.append(helper.make_node(kind, [x], [name], kernel_shape=[kh, kw], strides=[sy, sx],
                                          pads=[top, left, bottom, right], **extra))
            oh = (shape[0] + top + bottom - kh) // sy + 1
            ow = (shape[1] + left + right - kw) // sx + 1
            shapes[name], layout[name] = [oh, ow, shape[2]], "nchw"
        elif op in ("global_average_pool", "global_max_pool"):
            x = as_nchw(src)
            pooled = fresh(name + "_pool")
            nodes.append(helper.make_node("GlobalAveragePool" if op == "global_average_pool" else "GlobalMaxPool", [x], [pooled]))
            nodes.append(helper.make_node("Flatten", [pooled], [name], axis=1))
            shapes[name], layout[name] = [shape[2]], "flat"
        elif op == "flatten":
            x = as_nhwc(src)                                        # Keras flattens in NHWC order
            nodes.append(helper.make_node("Flatten", [x], [name], axis=1))
            shapes[name], layout[name] = [int(np.prod(shape))], "flat"
        elif op == "activation":
            activation(src, node.get("activation"), name)
            shapes[name], layout[name] = shape, layout[src]
        elif op == "affine":
            scale, shift = weight(node, "scale"), weight(node, "shift")
            if layout[src] == "nchw":
                scale, shift = scale.reshape(1, -1, 1, 1), shift.reshape(1, -1, 1, 1)
            scaled = fresh(name + "_mul")
            nodes.append(helper.make_node("Mul", [src, init(fresh("s"), scale)], [scaled]))
            nodes.append(helper.make_node("Add", [scaled, init(fresh("t"), shift)], [name]))
            shapes[name], layout[name] = shape, layout[src]
        elif op == "identity":
            nodes.append(helper.make_node("Identity", [src], [name]))
            shapes[name], layout[name] = shape, layout[src]
        else:
            raise SystemExit(f"bench: op {op} not mapped to ONNX")
    output = as_nhwc(graph["outputs"][0])
    nodes.append(helper.make_node("Identity", [output], ["y"]))
    out_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"] + shapes[graph["outputs"][0]])
    model = helper.make_model(helper.make_graph(nodes, graph["name"], [graph_input], [out_info], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------- measurements

def test_images(shape):
    raw = gzip.open(IMAGES).read()
    return (np.frombuffer(raw, np.uint8, offset=16).astype(np.float32) / np.float32(255.0)).reshape((-1,) + tuple(shape))


def ort_rate(session, x, batch):
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        session.run(None, {"x": x[i:i + batch]})
    return len(x) / (time.perf_counter() - start)


def ov_rate(request, x, batch):
    """Images/s over the whole batches of x (OpenVINO runs the static batch it was compiled for)."""
    whole = len(x) // batch * batch
    start = time.perf_counter()
    for i in range(0, whole, batch):
        request.infer({0: x[i:i + batch]})
    return whole / (time.perf_counter() - start)


BNRUN_ENV = dict(os.environ)


def bnrun_rate(bnrun, model, batch, threads):
    run = subprocess.run([bnrun, model, IMAGES, "--bench", "1", "--batch", str(batch), "--threads", str(threads)],
                         capture_output=True, text=True, check=True, env=BNRUN_ENV)
    return float(run.stdout.split()[1])


ORT_SCRIPT = """
import gzip, sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
shape = [d for d in s.get_inputs()[0].shape[1:]]
x = (np.frombuffer(gzip.open(sys.argv[2]).read(), np.uint8, offset=16).astype(np.float32) / np.float32(255.0)).reshape([-1] + shape)
y = np.frombuffer(gzip.open(sys.argv[3]).read(), np.uint8, offset=8)
p = s.run(None, {"x": x})[0].argmax(1)
print("accuracy", (p == y).mean())
"""


def whole_process(commands, repeats):
    """Median wall time of each command, run in alternation (so both see the same machine)."""
    times = [[] for _ in commands]
    for _ in range(repeats):
        for command, samples in zip(commands, times):
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build", "release"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=["seed_mlp_keras3", "small_cnn_keras3", "big_cnn_keras3"])
    parser.add_argument("--quick", action="store_true", help="batch 64 and 10000 only, threads 1 and 2, 3 repeats")
    parser.add_argument("--isa", choices=["avx512", "avx2", "generic"], default=None,
                        help="cap bnrun's kernels (BNKIT_MAX_ISA): its AVX2 paths measured on an AVX-512 machine")
    args = parser.parse_args()
    # The whole process under the CPUID cap (tools/cpu_cap.py), so onnxruntime runs at the level too.
    ort_capped, cap_line = cpu_cap.cap_process(args.isa)
    ov_column = bool(args.isa) and not ort_capped
    if args.isa:
        BNRUN_ENV["BNKIT_MAX_ISA"] = args.isa
        # OpenVINO's CPU plugin (oneDNN) takes the same cap, read when its plugin first loads.
        os.environ["ONEDNN_MAX_CPU_ISA"] = ONEDNN_ISA[args.isa]
    bnconv, bnrun = os.path.join(args.bin, "bnconv"), os.path.join(args.bin, "bnrun")
    work = tempfile.mkdtemp(prefix="bnkit-bench-")
    atexit.register(shutil.rmtree, work, True)   # removed however the script ends
    repeats = 3 if args.quick else args.repeats
    batches = [64, 10000] if args.quick else [1, 64, 10000]

    # Whole process first, while this process has no onnxruntime session whose threads could
    # still be spinning: classify the 10,000 images with labels, bnrun versus a Python script.
    first = args.models[0]
    folded, onnx_path = os.path.join(work, first + ".bin"), os.path.join(work, first + ".onnx")
    subprocess.run([bnconv, "fold", os.path.join(FIXTURES, first + ".h5"), "-o", folded], capture_output=True, check=True)
    onnx.save(build_onnx(*read_bin(folded)), onnx_path)
    script = os.path.join(work, "ort_classify.py")
    open(script, "w").write(ORT_SCRIPT)
    whole_repeats = max(11, 2 * repeats + 1)
    whole_ours, whole_theirs = whole_process([[bnrun, folded, IMAGES, "--labels", LABELS, "--format", "summary"],
                                  [sys.executable, script, onnx_path, IMAGES, LABELS]], whole_repeats)

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} logical cores; bnrun ISA cap: {args.isa or 'none (best available)'}; "
          f"onnxruntime {ort.__version__}, OpenVINO {ov.__version__}, numpy {np.__version__}")
    print()
    if cap_line:
        print(f"Instruction sets: {cap_line}.\n")
    capped = f" (capped {args.isa})" if args.isa else ""
    print(f"| model | threads | batch | bnrun img/s{capped} | onnxruntime img/s{capped if ort_capped else ''} "
          f"| OpenVINO img/s{capped} | ratio to the faster |" + (" ratio to OpenVINO, same ISA |" if ov_column else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if ov_column else ""))
    core = ov.Core()
    for name in args.models:
        folded = os.path.join(work, name + ".bin")
        subprocess.run([bnconv, "fold", os.path.join(FIXTURES, name + ".h5"), "-o", folded], capture_output=True, check=True)
        graph, tensors = read_bin(folded)
        onnx_path = os.path.join(work, name + ".onnx")
        onnx.save(build_onnx(graph, tensors), onnx_path)
        x = test_images(graph["nodes"][0]["shape"])

        # Same classes from both.
        session = ort_session(onnx_path, 2)
        ort_classes = session.run(None, {"x": x})[0].argmax(1)
        csv = subprocess.run([bnrun, folded, IMAGES, "--format", "csv"], capture_output=True, text=True, check=True).stdout
        bn_classes = np.array([int(line.split(",")[1]) for line in csv.splitlines()[1:]])
        ov_classes = np.concatenate([ov_request(core, onnx_path, x.shape[1:], 1000, 2).infer({0: x[i:i + 1000]})[0].argmax(1)
                                     for i in range(0, len(x), 1000)])
        agree = int(((ort_classes == bn_classes) & (ov_classes == bn_classes)).sum())
        if agree != len(x):
            print(f"| {name} | classes differ: {agree}/{len(x)} agree |")

        for threads in (1, 2):
            session = ort_session(onnx_path, threads)
            for batch in batches:
                if batch == 1 and name.startswith("big"):
                    subset = x[:1000]   # batch 1 over 1000 images keeps the run short
                else:
                    subset = x
                request = ov_request(core, onnx_path, x.shape[1:], batch, threads)
                ort_rate(session, subset[:min(len(subset), 2 * batch)], batch)  # warm up
                ov_rate(request, subset[:min(len(subset), 2 * batch)], batch)
                ours, theirs, openvino = [], [], []
                for _ in range(repeats):   # alternate, so all see the same machine state
                    theirs.append(ort_rate(session, subset, batch))
                    openvino.append(ov_rate(request, subset, batch))
                    time.sleep(0.5)   # the peers' worker threads spin for a while after a run: let them park
                    ours.append(bnrun_rate(bnrun, folded, batch, threads))
                a, b, c = statistics.median(ours), statistics.median(theirs), statistics.median(openvino)
                print(f"| {name} | {threads} | {batch} | {a:,.0f} | {b:,.0f} | {c:,.0f} | {a / max(b, c):.2f}× |"
                      + (f" {a / c:.2f}× |" if ov_column else ""), flush=True)
        print(f"| {name} | | | classes equal (all three): {agree}/{len(x)} | | | |")

    print()
    print(f"whole process, {first}, 10,000 images with labels (median of {whole_repeats}, alternating): bnrun {whole_ours * 1000:.0f} ms, "
          f"Python + onnxruntime {whole_theirs * 1000:.0f} ms, ratio {whole_theirs / whole_ours:.1f}×")


if __name__ == "__main__":
    main()
