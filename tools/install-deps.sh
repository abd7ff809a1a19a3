#!/usr/bin/env bash
# Install the system packages bnkit builds against (Debian/Ubuntu): libhdf5-dev, zlib1g-dev, libdeflate-dev, libpng-dev,
# libjpeg-dev (libjpeg-turbo), pkg-config; and for the arm64 checks, libc6-dev-arm64-cross, gcc-aarch64-linux-gnu and
# qemu-user-static.
# Does nothing when they are already present. Uses sudo when not root.
set -euo pipefail
missing=()
pkg-config --exists hdf5-serial 2>/dev/null || missing+=(libhdf5-dev)
pkg-config --exists zlib 2>/dev/null || missing+=(zlib1g-dev)
pkg-config --exists libdeflate 2>/dev/null || missing+=(libdeflate-dev)
pkg-config --exists libpng 2>/dev/null || missing+=(libpng-dev)
[ -f /usr/include/jpeglib.h ] || missing+=(libjpeg-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# Headers for compiling the C kernels for arm64 (tools/arm64_compile_check.sh), and a cross compiler
# and an emulator to run them (tools/arm64_kernel_check.sh).
[ -d /usr/aarch64-linux-gnu/include ] || missing+=(libc6-dev-arm64-cross)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} (and pkg-config)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libhdf5-dev zlib1g-dev libdeflate-dev libpng-dev libjpeg-dev pkg-config libc6-dev-arm64-cross \
    gcc-aarch64-linux-gnu qemu-user-static >/dev/null
fi
