#!/usr/bin/env bash
# Peer comparison for disk conversion, in one run on the same inputs:
#   isotool convert  vs  qemu-img convert  vs  a plain copy of the input's allocated data.
# Prints a table of median wall times, the ratios, and peak RSS.
#
#   benches/compare.sh            full: raw 4 GiB with 1 GiB of data
#   benches/compare.sh --short    CI:   raw 1 GiB with 256 MiB of data
# Env: RUNS (default 3), WORK (scratch dir, default a temp dir under target/), ISOTOOL_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=4096 DATA_MIB=1024
if [ "${1:-}" = "--short" ]; then SIZE_MIB=1024 DATA_MIB=256; fi
RUNS=${RUNS:-3}
for tool in qemu-img /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "compare.sh: $tool is required (apt-get install qemu-utils time)" >&2; exit 1; }
done

# ISOTOOL_BIN: measure another build (e.g. the binary of an earlier commit, to compare
# before/after a change in the same session); default: build this checkout.
if [ -n "${ISOTOOL_BIN:-}" ]; then ISOTOOL=$(realpath "$ISOTOOL_BIN"); else
  cargo build --release --quiet
  ISOTOOL=$PWD/target/release/isotool
fi
WORK=${WORK:-$(mktemp -d "$PWD/target/bench.XXXXXX")}
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT

# Input: a sparse raw disk, data in 64 MiB runs spread over the whole disk (incl. past 4 GiB
# when the disk is that large), random bytes so nothing is detected as zero.
IN=$WORK/in.raw
truncate -s "${SIZE_MIB}M" "$IN"
runs=$((DATA_MIB / 64)); stride=$((SIZE_MIB / runs))
for i in $(seq 0 $((runs - 1))); do
  head -c $((64 << 20)) /dev/urandom | dd of="$IN" bs=1M seek=$((i * stride)) conv=notrunc status=none
done
sync "$IN"

# One measurement: wall milliseconds and peak RSS (KiB) of a command; output removed first.
measure() { # out cmd...
  local out=$1; shift
  rm -f "$out"
  local t0 t1
  t0=$(date +%s%N)
  /usr/bin/time -f '%M' -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; return 1; }
  t1=$(date +%s%N)
  echo "$(( (t1 - t0) / 1000000 )) $(cat "$WORK/rss")"
}
# Median wall time (ms) and max RSS (KiB) over RUNS runs.
bench() { # out cmd...
  local times=() rss=0 r
  for _ in $(seq "$RUNS"); do
    r=$(measure "$@")
    times+=("${r% *}")
    [ "${r#* }" -gt "$rss" ] && rss=${r#* }
  done
  local med
  med=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
  echo "$med $rss"
}

OUT=$WORK/out
# The physical limit: copy the allocated data (cp uses SEEK_DATA/copy_file_range) and make it
# durable, as isotool and qemu-img both flush their output before exiting.
copy_ms=$(bench "$OUT" sh -c "cp --sparse=always '$IN' '$OUT' && sync '$OUT'")
copy_ms=${copy_ms% *}

printf '\nDisk conversion, raw %d MiB with %d MiB of data (median of %d runs)\n' "$SIZE_MIB" "$DATA_MIB" "$RUNS"
printf 'copy of the allocated data (cp --sparse=always + sync): %d ms\n\n' "$copy_ms"
# Durability must match for a fair ratio. qemu-img convert's default cache mode does not flush the
# output before exiting (strace: no fdatasync after the writes); with `-t writeback` it flushes
# at the end. isotool syncs before renaming into place unless told `--no-sync`. So each case is
# timed in both modes: not flushed (isotool --no-sync vs qemu-img default) and flushed (isotool
# vs qemu-img -t writeback, the same durability as the copy baseline).
printf '%-22s | %8s %8s %7s | %8s %8s %7s %7s | %8s %8s\n' "" "no flush" "" "" "flushed" "" "" "" "peak RSS" ""
printf '%-22s | %8s %8s %7s | %8s %8s %7s %7s | %8s %8s\n' case isotool qemu ratio isotool qemu ratio vs_copy isotool qemu
row() { # name out iso_cmd -- qemu_cmd
  local name=$1 out=$2; shift 2
  local iso=() q=()
  while [ "$1" != "--" ]; do iso+=("$1"); shift; done; shift; q=("$@")
  local a b c d
  a=$(bench "$out" "${iso[@]}" --no-sync)
  b=$(bench "$out" "${q[@]}")
  c=$(bench "$out" "${iso[@]}")
  d=$(bench "$out" "${q[0]}" "${q[1]}" -t writeback "${q[@]:2}")
  awk -v n="$name" -v a="${a% *}" -v b="${b% *}" -v c="${c% *}" -v d="${d% *}" -v ar="${c#* }" -v br="${d#* }" -v cp="$copy_ms" 'BEGIN {
    printf "%-22s | %6d ms %5d ms %7.2f | %5d ms %5d ms %7.2f %7.2f | %4.1f MiB %4.1f MiB\n", n, a, b, a/b, c, d, c/d, c/cp, ar/1024, br/1024 }'
}
row "raw -> vhd (fixed)" "$OUT" "$ISOTOOL" -q convert "$IN" "$OUT" --to vhd -- \
  qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on "$IN" "$OUT"
row "raw -> vhd-dynamic" "$OUT" "$ISOTOOL" -q convert "$IN" "$OUT" --to vhd-dynamic -- \
  qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on "$IN" "$OUT"
row "raw -> vhdx" "$OUT" "$ISOTOOL" -q convert "$IN" "$OUT" --to vhdx --block-size 32M -- \
  qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=32M "$IN" "$OUT"
VHDX=$WORK/in.vhdx
"$ISOTOOL" -q convert "$IN" "$VHDX" --to vhdx --block-size 32M >/dev/null
row "vhdx -> vhd (--azure)" "$OUT" "$ISOTOOL" -q convert "$VHDX" "$OUT" --azure -- \
  qemu-img convert -f vhdx -O vpc -o subformat=fixed,force_size=on "$VHDX" "$OUT"
echo
echo "targets: ratio < 1.00 in both modes, vs_copy (flushed) <= 1.15, peak RSS < 64 MiB"
