#!/bin/bash -eu
# Build the fuzz harnesses in fuzz/ for OSS-Fuzz / ClusterFuzzLite.
#
# The C record framer is built by the package's own build (setup.py, cffi)
# with the compiler and flags the infrastructure sets: $CC is clang and
# $CFLAGS carries -fsanitize=<sanitizer> and -fsanitize=fuzzer-no-link, which
# is the recipe atheris documents for native extensions (the infrastructure
# preloads the matching sanitizer runtime when it runs the fuzzers).
# SECUREPAIR_BUILD_EXT=yes makes a failed C build fail this script rather
# than fall back to the pure-Python framer.

cd "$SRC/securepair"

# Seed corpora from real handshakes, made here and now (no committed keys),
# with an ordinary build first: the instrumented module only loads where
# the sanitizer runtime is preloaded, which is at fuzzing time.
SECUREPAIR_BUILD_EXT=yes CFLAGS="" LDFLAGS="" CC=cc pip3 install .
python3 fuzz/make_seeds.py --out "$WORK/seeds"

# Then the instrumented build the fuzzers run.
SECUREPAIR_BUILD_EXT=yes LDSHARED="$CC -shared $CFLAGS" \
  pip3 install --force-reinstall --no-deps .

for harness in fuzz/fuzz_*.py; do
  name=$(basename -s .py "$harness")
  target=${name#fuzz_}
  # pyinstaller follows the harness's imports: harness_support (next to
  # it) and the installed securepair, C framer included.
  compile_python_fuzzer "$harness" --paths fuzz
  (cd "$WORK/seeds/$target" && zip -q -r "$OUT/${name}_seed_corpus.zip" .)
  if [ -d "fuzz/corpus/$target" ]; then
    (cd "fuzz/corpus/$target" && zip -q -r "$OUT/${name}_seed_corpus.zip" .)
  fi
  case "$target" in
    sniff) dict=sniff.dict; max_len=256 ;;
    starttls) dict=starttls.dict; max_len=2048 ;;
    proxy) dict=proxy.dict; max_len=512 ;;
    *) dict=tls.dict; max_len=4096 ;;
  esac
  if [ -f "fuzz/dicts/$dict" ]; then
    cp "fuzz/dicts/$dict" "$OUT/${name}.dict"
  fi
  printf '[libfuzzer]\nmax_len = %s\ntimeout = 30\n' "$max_len" > "$OUT/${name}.options"
done
