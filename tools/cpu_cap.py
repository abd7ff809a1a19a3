"""Runs a benchmark script as if on an older x86-64 CPU, so the peers are capped with bnrun.

`--isa avx2` on an AVX-512 machine caps bnrun (BNKIT_MAX_ISA) and OpenVINO (ONEDNN_MAX_CPU_ISA), but
onnxruntime has no switch: MLAS picks its kernels from CPUID. `cap_process("avx2")`, called first in a
benchmark's main, re-executes the script once under tools/cpuid_cap.c (built here with cc into the venv),
which answers every CPUID of the process, its threads and its children with the AVX-512 bits cleared
("generic": AVX, AVX2 and FMA cleared too), and glibc's string functions capped by GLIBC_TUNABLES. Then
onnxruntime, OpenVINO, numpy and bnrun each choose their kernels as on that CPU.

It returns whether onnxruntime is capped and a line for the report saying how, checked in the
re-executed process by asking CPUID through the preloaded library. Where the cap cannot be had (no
CPUID faulting: `cpuid_fault` missing from /proc/cpuinfo; no C compiler) the line says onnxruntime
runs uncapped.
"""
import ctypes
import hashlib
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "cpuid_cap.c")
# bench --isa -> the shim's level, and what glibc's own CPU reading (before any preload) is told to hide.
LEVEL = {"avx2": "avx2", "generic": "sse4"}
AVX512 = ["AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL", "AVX512ER", "AVX512PF",
          "AVX512_VBMI", "AVX512_VBMI2", "AVX512_VNNI", "AVX512_BF16", "AVX512_FP16", "AVX512_BITALG",
          "AVX512_IFMA", "AVX512_VPOPCNTDQ", "AVX_VNNI", "AMX_BF16", "AMX_INT8", "AMX_TILE"]
GLIBC_HIDE = {"avx2": AVX512, "sse4": AVX512 + ["AVX2", "AVX", "FMA", "F16C"]}


def cpu_flags():
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def build():
    """The shim, compiled once per source version into this Python's prefix (the ignored venv)."""
    digest = hashlib.sha256(open(SOURCE, "rb").read()).hexdigest()[:12]
    path = os.path.join(sys.prefix, f"cpuid_cap-{digest}.so")
    if not os.path.exists(path):
        partial = path + f".{os.getpid()}"
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", partial, SOURCE], check=True)
        os.replace(partial, path)
    return path


def cap_process(isa, needs_avx=False):
    """Re-executes this script under the CPUID cap for `isa` if it needs one. Returns whether onnxruntime
    runs at `isa` (capped, or on a CPU with nothing above it) and the report's line saying how.
    `needs_avx`: the script imports TensorFlow, whose wheels stop on a CPU without AVX, so `generic`
    leaves onnxruntime uncapped."""
    if isa not in LEVEL:
        return False, None
    level = LEVEL[isa]
    if level == "sse4" and needs_avx:
        return False, "onnxruntime NOT capped: TensorFlow, which builds the models here, needs AVX"
    if platform.machine() != "x86_64":
        return False, f"nothing capped: {isa} is an x86-64 level and this is {platform.machine()}"
    flags = cpu_flags()
    higher = "avx512f" in flags if level == "avx2" else bool({"avx", "avx2", "avx512f"} & flags)
    if not higher:
        return True, f"nothing to cap: this CPU has no instruction set above {isa}"
    if os.environ.get("BNKIT_CPUID_CAP") != level or "BNKIT_CPUID_CAP_LIBRARY" not in os.environ:
        if "cpuid_fault" not in flags:
            return False, "onnxruntime NOT capped: this CPU or kernel has no CPUID faulting (`cpuid_fault`)"
        try:
            library = build()
        except (OSError, subprocess.CalledProcessError) as error:
            return False, f"onnxruntime NOT capped: building tools/cpuid_cap.c failed ({error})"
        env = dict(os.environ, BNKIT_CPUID_CAP=level, BNKIT_CPUID_CAP_LIBRARY=library,
                   LD_PRELOAD=" ".join(filter(None, [library, os.environ.get("LD_PRELOAD")])),
                   GLIBC_TUNABLES=":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"),
                                                         "glibc.cpu.hwcaps=" + ",".join("-" + f for f in GLIBC_HIDE[level])])))
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    shim = ctypes.CDLL(os.environ["BNKIT_CPUID_CAP_LIBRARY"])
    shim.cpuid_cap_trapped.restype = ctypes.c_long
    if shim.cpuid_cap_status() != 1:
        return False, "onnxruntime NOT capped: the kernel refused CPUID faulting (arch_prctl ARCH_SET_CPUID)"
    regs = (ctypes.c_uint * 4)()
    shim.cpuid_cap_query(7, 0, regs)
    leaf7_ebx = regs[1]
    shim.cpuid_cap_query(1, 0, regs)
    leaf1_ecx = regs[2]
    if leaf7_ebx & (1 << 16) or (level == "sse4" and (leaf1_ecx & (1 << 28) or leaf7_ebx & (1 << 5))):
        sys.exit("tools/cpu_cap.py: CPUID still reports the instruction sets it should hide; not benchmarking")
    hidden = "AVX-512" if level == "avx2" else "AVX, AVX2, FMA and AVX-512"
    return True, (f"onnxruntime, OpenVINO and bnrun all see a CPU without {hidden} "
            f"(CPUID answered by tools/cpuid_cap.c, {shim.cpuid_cap_trapped()} queries so far)")
