#!/usr/bin/env bash
# Fuzzes fleetup's input parsers with cargo-fuzz (libFuzzer + AddressSanitizer). See README.md.
#
#   run.sh --check            build every target with plain cargo: no sanitizer, no
#                             cargo-fuzz, sharing the main build (for CI: a target that no
#                             longer compiles fails at once)
#   run.sh --build            build every target for fuzzing (cargo-fuzz, ASan), run nothing
#   run.sh --repro [T...]     run the seed corpus and the saved findings once (no fuzzing)
#   run.sh [T...]             fuzz each target (default: all) for FUZZ_SECONDS, one at a time
#
# Environment:
#   FUZZ_SECONDS=180          time per target
#   FUZZ_KEEP_GOING=1         fork mode: keep fuzzing past crashes, OOMs and timeouts
#   FUZZ_ARGS="..."           more libFuzzer flags (e.g. -max_len=8192 -seed=1)
#   FUZZ_MERGE=1              after fuzzing, minimise the new corpus into corpus/<target>
#
# Only stable Rust is needed: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags. Fuzzing
# builds go to tests/fuzz/target and fuzzing works on a scratch copy of the corpus under
# tests/fuzz/corpus-work/, so neither the main build nor the repository is touched (--check
# alone builds in the main target dir, on purpose).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
all_targets=(inventory ini playbook pattern serial template vault)
seconds="${FUZZ_SECONDS:-180}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin="$here/target/$triple/release"
# One process, bounded memory and time per input.
flags=(-rss_limit_mb=2048 -timeout=10)

ensure_cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
  fi
}

build() {
  ensure_cargo_fuzz
  # Only here: some build scripts watch RUSTC_BOOTSTRAP, so --check must build without it
  # to share the main build.
  export RUSTC_BOOTSTRAP=1
  # --debug-assertions: integer overflow and debug_assert! panic, as in the tests.
  (cd "$root" && cargo fuzz build --fuzz-dir tests/fuzz --target-dir "$here/target" \
    -O --debug-assertions "$@")
}

# The targets as ordinary binaries of the workspace (libFuzzer linked, no instrumentation):
# everything but the small target crates and libFuzzer itself is what the test command
# (`cargo nextest run --no-default-features`) builds anyway, in the same target dir.
check() {
  (cd "$root" && cargo build --package fleetup-fuzz --bins)
}

check_target() {
  local t
  for t in "$@"; do
    if [[ ! " ${all_targets[*]} " =~ " $t " ]]; then
      echo "unknown target '$t' (known: ${all_targets[*]})" >&2
      exit 2
    fi
  done
}

# Runs every seed and every saved finding of a target once; findings are expected to fail
# until their bug is fixed.
repro() {
  local t="$1" f status fails=0
  for f in "$here/corpus/$t"/* "$here/artifacts-found/$t"/*; do
    [ -f "$f" ] || continue
    status=0
    "$bin/$t" "${flags[@]}" "$f" >"$here/corpus-work/repro.log" 2>&1 || status=$?
    if [ "$status" -eq 0 ]; then
      echo "ok    $t ${f#"$here"/}"
    else
      echo "FAIL  $t ${f#"$here"/} (exit $status: $(grep -m1 -E 'ERROR: |panicked at|SUMMARY' \
        "$here/corpus-work/repro.log" || true))"
      fails=$((fails + 1))
    fi
  done
  return "$fails"
}

fuzz() {
  local t="$1" work="$here/corpus-work/$1" status=0
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp "$here/corpus/$t"/* "$work/corpus/"
  local mode=(-jobs=1)
  if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
    mode=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
  fi
  echo "== $t: fuzzing for ${seconds}s (${mode[*]} ${flags[*]} ${FUZZ_ARGS:-})"
  # -jobs=1 runs one fuzzing process and logs it to fuzz-0.log in the current folder.
  (cd "$work" && "$bin/$t" "${mode[@]}" "${flags[@]}" -max_total_time="$seconds" \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" ${FUZZ_ARGS:-} "$work/corpus") \
    || status=$?
  if [ -f "$work/fuzz-0.log" ]; then
    grep -E '^(#[0-9]+ +(INITED|DONE)|Done|stat::|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)' \
      "$work/fuzz-0.log" || true
  fi
  if compgen -G "$work/artifacts/*" >/dev/null; then
    echo "== $t: findings in $work/artifacts/:"
    ls -l "$work/artifacts/"
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    local merged="$work/merged"
    mkdir -p "$merged"
    "$bin/$t" "${flags[@]}" -merge=1 "$merged" "$here/corpus/$t" "$work/corpus" \
      >"$work/merge.log" 2>&1
    rm -f "$here/corpus/$t"/*
    cp "$merged"/* "$here/corpus/$t/"
    echo "== $t: corpus minimised to $(ls "$here/corpus/$t" | wc -l) files"
  fi
  return "$status"
}

case "${1:-}" in
  --check)
    check
    ;;
  --build)
    build
    exit 0
    ;;
  --repro)
    shift
    targets=("$@")
    [ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
    check_target "${targets[@]}"
    build
    mkdir -p "$here/corpus-work"
    failed=0
    for t in "${targets[@]}"; do repro "$t" || failed=$((failed + $?)); done
    echo "$failed input(s) failed"
    [ "$failed" -eq 0 ]
    ;;
  -h | --help)
    sed -n '2,19p' "$0"
    ;;
  *)
    targets=("$@")
    [ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
    check_target "${targets[@]}"
    build
    failed=()
    for t in "${targets[@]}"; do fuzz "$t" || failed+=("$t"); done
    if [ ${#failed[@]} -gt 0 ]; then
      echo "findings in: ${failed[*]} (see corpus-work/<target>/artifacts/)"
      exit 1
    fi
    ;;
esac
