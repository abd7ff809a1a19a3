#!/usr/bin/env python3
"""PyTorch models exported to ONNX with their BatchNormalization nodes kept, and PyTorch's
eval-mode outputs, made by real torch and torchvision; optionally checked against bnkit.

Usage: tools/make_torch_fixtures.sh [--out DIR] [--models NAME ...] [--size 96] [--check --bnconv PATH --bnrun PATH]

Models: small_cnn (MNIST-sized: Conv → BN → ReLU → MaxPool twice, Flatten, Linear → BN1d → ReLU →
Linear), se_mobile (depthwise-separable blocks with squeeze-and-excitation, hard-swish, SiLU,
upsampling and a residual Add), shuffle_pool (a channel split and shuffle, ceil-mode max pooling,
a grouped conv, an average pooling counting its pads), convnext_blocks (torchvision's own ConvNeXt
block and LayerNorm2d after a Conv → BN stem: permutes to channels-last, LayerNorm, Linear, the
exact GELU, a layer scale), decoder (ConvTranspose2d's common forms, each → BN → ReLU, a skip
concatenated, a per-pixel class map), and torchvision's resnet18, mobilenet_v2 and efficientnet_b0
(weights=None) by default; any torchvision.models classifier by name (densenet121,
shufflenet_v2_x1_0, googlenet, inception_v3, regnet_y_400mf, ...) and segmentation models as
segmentation.NAME (fcn_resnet50, deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large: the
"out" map), at --size. Every BatchNorm gets non-trivial statistics: a training-mode pass over random
images with momentum 1 sets the running mean and variance to those of each layer's input (as a
trained network has them), then they are perturbed (mean + U(-0.1, 0.1)·std, variance ·
U(0.8, 1.25)) and gamma ~ U(0.5, 1.5), beta ~ U(-0.5, 0.5). The export keeps BN as nodes
(eval mode, do_constant_folding=False, opset 17, dynamic batch). For each NAME it writes
NAME.onnx, NAME.x.npy (4 NCHW float32 inputs) and NAME.y.npy (the model's outputs for them).
With --check, `bnconv fold` + `bnrun` run each and are compared with PyTorch: max abs error
<= 1e-4 of the largest output and the same class for every input; when that fails, the same
model in float64 says whether PyTorch's own float32 answer is off too (random networks amplify
rounding): when two float32 evaluations by PyTorch itself (oneDNN; plain kernels on one thread)
differ by more than the tolerance, or PyTorch on the folded network (BN folded into the convs in
float64 by torch.fx, weights rounded to float32) is further than the tolerance from float64,
bnkit passes if it is within twice PyTorch's largest distance from float64, or if its arithmetic
alone is within four times PyTorch's: bnkit's distance from the folded network run in float64 (the
network bnkit runs, exactly) against PyTorch float32's distance from its own network and from the
folded one, each in float64. Four: on 18 random EfficientNet-B0s (seeds 0-9 at 96, 0-7 at 224)
bnkit's arithmetic error was 0.27-3.7 times PyTorch's larger one (geometric mean about 1; one
network's error differed 65-fold between bnkit's own AVX-512 and portable builds), so a network
this sensitive gives one sample of a wide spread (docs/PERFORMANCE.md, forty-seventh session).
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.features(x))


class SEMobile(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.se_pool = nn.AdaptiveAvgPool2d(1)
        self.se = nn.Sequential(nn.Conv2d(16, 4, 1), nn.SiLU(), nn.Conv2d(4, 16, 1), nn.Hardsigmoid())
        self.pw = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.down = nn.Sequential(nn.Conv2d(16, 24, 5, stride=2, padding=2, groups=8, bias=False), nn.BatchNorm2d(24), nn.SiLU())
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.mix = nn.Sequential(nn.Conv2d(40, 12, 1), nn.BatchNorm2d(12), nn.LeakyReLU(0.1), nn.AvgPool2d(2))
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x)
        y = y * self.se(self.se_pool(y))
        x = x + self.pw(y)
        z = self.up(self.down(x))
        x = self.mix(torch.cat([x, z], dim=1))
        return torch.softmax(self.fc(torch.flatten(torch.mean(x, dim=(2, 3), keepdim=True), 1)), dim=1)


class ShufflePool(nn.Module):
    """What torchvision's ShuffleNet, GoogLeNet, Inception and ResNeXt export beyond plain convs,
    small: SiLU, MaxPool with ceil_mode (the last window overhanging), a channel split (chunk), a
    one-input torch.cat, the channel shuffle (view / transpose / view on the runtime batch size),
    a grouped conv (4 groups of 4 inputs) and an AvgPool counting its padding."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.SiLU())
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                    nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8),
                                    nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.grouped = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.avg = nn.AvgPool2d(3, stride=1, padding=1)
        self.fc = nn.Linear(32, 6)

    def forward(self, x):
        x = self.pool(self.stem(x))
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, self.branch(b)], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        x = torch.cat([x], 1)
        x = self.avg(self.grouped(x))
        return self.fc(torch.flatten(torch.mean(x, dim=(2, 3)), 1))


class ConvNeXtBlocks(nn.Module):
    """torchvision's ConvNeXt parts (CNBlock: a 7×7 depthwise conv, then channels-last LayerNorm,
    Linear, GELU, Linear and a per-channel layer scale; LayerNorm2d; a 2×2 stride-2 downsampling
    conv), after a Conv → BN stem so that there is a BN to fold; layer scales and LayerNorm
    parameters random, as trained ones are."""

    def __init__(self):
        super().__init__()
        from torchvision.models.convnext import CNBlock, LayerNorm2d
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 2, stride=2, bias=False), nn.BatchNorm2d(16))
        self.stage1 = CNBlock(16, layer_scale=1.0, stochastic_depth_prob=0.0)
        self.down = nn.Sequential(LayerNorm2d(16, eps=1e-6), nn.Conv2d(16, 32, 2, stride=2))
        self.stage2 = CNBlock(32, layer_scale=1.0, stochastic_depth_prob=0.0)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), LayerNorm2d(32, eps=1e-6), nn.Flatten(1), nn.Linear(32, 7))
        generator = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("layer_scale"):
                    p.copy_(torch.rand(p.shape, generator=generator) + 0.5)
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                    m.bias.copy_(torch.rand(m.bias.shape, generator=generator) - 0.5)

    def forward(self, x):
        return self.head(self.stage2(self.down(self.stage1(self.stem(x)))))


class Decoder(nn.Module):
    """A segmentation decoder's upsampling as PyTorch users write it: ConvTranspose2d in its common
    forms (3×3 stride 2 with padding 1 and output_padding 1, 4×4 stride 2 with padding 1, 2×2
    stride 2, 3×3 stride 1 with padding 1), each followed by BN and ReLU, a skip concatenated, a
    per-pixel map of 4 classes as the output."""

    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 24, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.up1 = nn.Sequential(nn.ConvTranspose2d(24, 16, 3, stride=2, padding=1, output_padding=1, bias=False),
                                 nn.BatchNorm2d(16), nn.ReLU())
        self.up2 = nn.Sequential(nn.ConvTranspose2d(32, 12, 4, stride=2, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.up3 = nn.Sequential(nn.ConvTranspose2d(12, 8, 2, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.ConvTranspose2d(8, 8, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        skip = self.down[:3](x)
        x = self.up1(self.down[3:](skip))
        x = self.up2(torch.cat([x, skip], 1))
        return self.head(self.up3(x))


def build(name, size):
    import torchvision
    if name == "small_cnn":
        return SmallCNN(), (1, 28, 28)
    if name == "se_mobile":
        return SEMobile(), (3, 32, 32)
    if name == "shuffle_pool":
        return ShufflePool(), (3, 30, 30)
    if name == "convnext_blocks":
        return ConvNeXtBlocks(), (3, 24, 24)
    if name == "decoder":
        return Decoder(), (3, 20, 28)
    if name.startswith("segmentation."):
        # torchvision.models.segmentation: the dict's "out" map (per-pixel classes at input size).
        inner = getattr(torchvision.models.segmentation, name.split(".", 1)[1])(weights=None, weights_backbone=None, aux_loss=False)

        class Out(nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return self.inner(x)["out"]
        return Out(), (3, size, size)
    return getattr(torchvision.models, name)(weights=None), (3, size, size)


def randomize_statistics(model, shape, seed):
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = 1.0
    # Only the BN layers in training mode: dropout and stochastic depth stay as at inference.
    model.eval()
    for m in norms:
        m.train()
    with torch.no_grad():
        model(torch.rand((8,) + shape, generator=generator) * 2 - 1)
    model.eval()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for m in norms:
            n = m.num_features
            std = m.running_var.sqrt()
            m.running_mean += torch.tensor(rng.uniform(-0.1, 0.1, n), dtype=torch.float32) * std
            m.running_var *= torch.tensor(rng.uniform(0.8, 1.25, n), dtype=torch.float32)
            m.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, n), dtype=torch.float32))
            m.bias.copy_(torch.tensor(rng.uniform(-0.5, 0.5, n), dtype=torch.float32))
    return len(norms)


def export(model, shape, path):
    x = torch.zeros((1,) + shape)
    kwargs = dict(opset_version=17, do_constant_folding=False, input_names=["input"], output_names=["output"],
                  dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, training=torch.onnx.TrainingMode.EVAL)
    try:
        torch.onnx.export(model, (x,), path, dynamo=False, **kwargs)
    except TypeError:
        torch.onnx.export(model, (x,), path, **kwargs)


def plain(model, x):
    """`model`'s output for `x` from PyTorch's plain kernels on one thread (oneDNN off): another
    summation order than its default."""
    mkldnn, threads = torch.backends.mkldnn.enabled, torch.get_num_threads()
    torch.backends.mkldnn.enabled = False
    torch.set_num_threads(1)
    try:
        return model(x).numpy()
    finally:
        torch.backends.mkldnn.enabled = mkldnn
        torch.set_num_threads(threads)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fixtures", "onnx"))
    parser.add_argument("--models", nargs="+", default=["small_cnn", "se_mobile", "resnet18", "mobilenet_v2", "efficientnet_b0"])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--bnconv")
    parser.add_argument("--bnrun")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=96, help="input height and width of the torchvision models")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    failed = 0
    for index, name in enumerate(args.models):
        model, shape = build(name, args.size)
        count = randomize_statistics(model, shape, args.seed + index)
        base = os.path.join(args.out, name)
        x = (torch.rand((4,) + shape, generator=torch.Generator().manual_seed(args.seed + 100 + index)) * 2 - 1)
        with torch.no_grad():
            y = model(x).numpy().astype(np.float32)
        export(model, shape, base + ".onnx")
        np.save(base + ".x.npy", x.numpy().astype(np.float32))
        np.save(base + ".y.npy", y)
        print(f"wrote {base}.onnx: {name}, input {shape}, {count} BatchNorm layers, {os.path.getsize(base + '.onnx')} bytes", flush=True)
        if args.check:
            binary, out = base + ".bin", base + ".out.npy"
            fold = subprocess.run([args.bnconv, "fold", base + ".onnx", "-o", binary], capture_output=True, text=True)
            if fold.returncode != 0:
                failed += 1
                print(f"FAIL {name}: {fold.stderr.strip()[:300]}")
                continue
            folded = sum("folded into" in line for line in fold.stdout.splitlines())
            kept = sum("kept as" in line for line in fold.stdout.splitlines())
            run = subprocess.run([args.bnrun, binary, base + ".x.npy", "--format", "npy", "--output", out], capture_output=True, text=True)
            if run.returncode != 0:
                failed += 1
                print(f"FAIL {name}: {run.stderr.strip()[:300]}")
                continue
            got = np.load(out).reshape(y.shape)
            error, scale = float(np.abs(got - y).max()), float(np.abs(y).max())
            same = bool((got.reshape(4, -1).argmax(1) == y.reshape(4, -1).argmax(1)).all())
            ok = error <= 1e-4 * scale and same
            verdict, exact = "PASS" if ok else "FAIL", ""
            if not ok:
                # Random networks can amplify float32 rounding: does PyTorch's own float32 answer depend on its
                # summation order (oneDNN, or plain kernels on one thread), and how far is each from float64?
                with torch.no_grad():
                    y_plain = plain(model, x)
                    y64 = model.double()(x.double()).numpy()
                    # PyTorch on the folded network: each BN folded into its conv in float64 (torch.fx's
                    # fuse), the weights rounded to float32 once, as bnkit's are.
                    # And the folded network exactly (its float32 weights, float64 arithmetic): what
                    # bnkit computes, without rounding. Folding rounds each weight once, and a random
                    # network can amplify that as much as the arithmetic's rounding.
                    try:
                        from torch.fx.experimental.optimization import fuse
                        fused = fuse(model.double().eval()).float()
                        y_folded = fused(x).numpy()
                        y_folded_plain = plain(fused, x)
                        y_folded64 = fused.double()(x.double()).numpy()
                    except Exception:  # noqa: BLE001 (a model fx cannot trace)
                        y_folded = y_folded_plain = y_folded64 = None
                    model.float()
                scale64 = float(np.abs(y64).max())
                off = lambda a: float(np.abs(a - y64).max()) / scale64  # noqa: E731
                spread = float(np.abs(y - y_plain).max()) / scale64
                folded_off = off(y_folded) if y_folded is not None else 0.0
                torch_off, bnkit_off = max(off(y), off(y_plain), folded_off), off(got)
                exact = (f"; float64 reference: PyTorch float32 is {off(y):.1e} (oneDNN), {off(y_plain):.1e} (plain, 1 thread) and "
                         + (f"{folded_off:.1e} (BN folded)" if y_folded is not None else "(BN folded: not traceable)")
                         + f" from it, {spread:.1e} between the first two; bnkit {bnkit_off:.1e}")
                # The arithmetic alone: PyTorch float32 against its own network in float64 and on the folded
                # network against that in float64; bnkit against the folded network (the one it runs) in float64.
                arithmetic_torch = max(off(y), off(y_plain))
                arithmetic_bnkit = None
                if y_folded64 is not None:
                    folded_exact = lambda a: float(np.abs(a.reshape(y_folded64.shape) - y_folded64).max()) / scale64  # noqa: E731
                    arithmetic_torch = max(arithmetic_torch, folded_exact(y_folded), folded_exact(y_folded_plain))
                    arithmetic_bnkit = folded_exact(got)
                    exact += (f"; the folded network's arithmetic alone: PyTorch {folded_exact(y_folded):.1e} (oneDNN), "
                              f"{folded_exact(y_folded_plain):.1e} (plain), bnkit {arithmetic_bnkit:.1e}")
                indeterminate = max(spread, folded_off) > 1e-4
                if indeterminate and (bnkit_off <= 2 * torch_off
                                      or (arithmetic_bnkit is not None and arithmetic_bnkit <= 4 * arithmetic_torch)):
                    verdict, ok = "PASS (float32-indeterminate)", True
            failed += not ok
            print(f"{verdict} {name}: max abs error {error:.2e} (relative {error / max(scale, 1e-30):.1e}), "
                  f"classes {'equal' if same else 'DIFFER'}{exact}; BN {count}: folded {folded}, kept {kept}", flush=True)
            for extra in (binary, out):
                os.remove(extra)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
