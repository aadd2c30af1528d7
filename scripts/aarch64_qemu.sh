#!/usr/bin/env bash
# Cross-build pynn._C for aarch64 (the portable kernels: no x86 intrinsics, FPCR instead of
# MXCSR) and run the test suite under qemu user-mode emulation, on a Debian x86-64 machine.
# It checks that the code builds and passes on an ARM CPU without ARM hardware; it says nothing
# about speed (emulated). Needs root for apt-get and, for the tests that start a subprocess
# (fork, PYNN_ISA switching), for registering qemu with binfmt_misc.
#   bash scripts/aarch64_qemu.sh [pytest args]      (about 20 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${PYNN_AARCH64_WORK:-/tmp/pynn-aarch64}
root=$work/root      # an aarch64 Debian userland (Python 3.11) unpacked from .deb files
site=$work/site      # aarch64 wheels: numpy, tqdm and the test extra but onnxruntime, whose
                     # aarch64 build crashes on import under qemu (test_onnx.py then skips)
pkg=$work/pkg        # pynn's Python sources + the cross-built extension
mkdir -p "$work/debs" "$work/wheels" "$root" "$site" "$pkg"

dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
apt-get update -qq
apt-get install -y -qq g++-aarch64-linux-gnu qemu-user qemu-user-binfmt >/dev/null
if [ ! -x "$root/usr/bin/python3.11" ]; then
  (cd "$work/debs" && apt-get download -qq python3.11-minimal:arm64 libpython3.11-minimal:arm64 \
    libpython3.11-stdlib:arm64 libpython3.11-dev:arm64 libc6:arm64 libstdc++6:arm64 \
    libgcc-s1:arm64 zlib1g:arm64 libexpat1:arm64 libffi8:arm64 libssl3:arm64 libbz2-1.0:arm64 \
    liblzma5:arm64 libsqlite3-0:arm64 libuuid1:arm64 libncursesw6:arm64 libtinfo6:arm64 \
    libreadline8:arm64 libcrypt1:arm64 libgdbm6:arm64 libnsl2:arm64 libtirpc3:arm64 \
    libdb5.3:arm64)
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$root"; done
fi
if [ ! -d "$site/numpy" ]; then
  python3 -m pip download -q -d "$work/wheels" --only-binary=:all: --implementation cp \
    --python-version 3.11 --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
    numpy tqdm pytest hypothesis scikit-learn matplotlib h5py onnx
  for whl in "$work"/wheels/*.whl; do python3 -m zipfile -e "$whl" "$site"; done
fi

cat >"$work/toolchain.cmake" <<EOF
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH $root)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
EOF
# The host interpreter only satisfies find_package(Python); headers come from the aarch64 root.
cmake -S . -B "$work/build" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$work/toolchain.cmake" \
  -DPYNN_CUDA=OFF -DSKBUILD_PROJECT_VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)" \
  -DPython_EXECUTABLE="$(command -v python3)" -DPython_INCLUDE_DIR="$root/usr/include/python3.11" \
  -DCMAKE_CXX_FLAGS="-I$root/usr/include" -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >/dev/null
cmake --build "$work/build" -j 2
rm -rf "$pkg/pynn" && cp -r src/pynn "$pkg/pynn"
# _C.<soabi>.so, or plain _C.so where the host's FindPython gives no SOABI for the target
cp "$(ls -t "$work"/build/_C*.so | head -1)" "$pkg/pynn/_C.cpython-311-aarch64-linux-gnu.so"

# binfmt_misc lets the tests' subprocesses (sys.executable is the aarch64 python) run too.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] ||
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  cat /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register
fi
export QEMU_LD_PREFIX=$root PYTHONPATH=$pkg:$site
"$root/usr/bin/python3.11" -c "import pynn, platform; print(platform.machine(), pynn.info()['cpu'])"
"$root/usr/bin/python3.11" -m pytest -q -p no:cacheprovider "${@:-tests}"
