#!/usr/bin/env bash
# Peer comparison for disk conversion, in one run on the same inputs:
#   isotool convert  vs  qemu-img convert  vs  a plain copy of the input's allocated data.
# Prints a table of median wall times, the ratios, and peak RSS.
#
#   benches/compare.sh            full: raw 4 GiB with 1 GiB of data
#   benches/compare.sh --short    CI:   raw 1 GiB with 256 MiB of data
# Env: RUNS (default 3), WORK (scratch dir, default a temp dir under target/), ISOTOOL_BIN,
#      ONLY=formats (only the formats part: qcow2, qcow2 -c, streamOptimized VMDK, GCP).
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
runs=$((DATA_MIB / 64)); stride=$((SIZE_MIB / runs))
if [ "${ONLY:-}" != formats ]; then
truncate -s "${SIZE_MIB}M" "$IN"
for i in $(seq 0 $((runs - 1))); do
  head -c $((64 << 20)) /dev/urandom | dd of="$IN" bs=1M seek=$((i * stride)) conv=notrunc status=none
done
sync "$IN"
fi

. benches/lib.sh  # measure()
# Median wall time (ms), max RSS (KiB) and median CPU time (ms) over RUNS runs.
bench() { # out cmd...
  local times=() cpus=() rss=0 r t m c
  for _ in $(seq "$RUNS"); do
    r=$(measure "$@")
    read -r t m c <<< "$r"
    times+=("$t"); cpus+=("$c")
    [ "$m" -gt "$rss" ] && rss=$m
  done
  local k=$(( (RUNS + 1) / 2 ))
  echo "$(printf '%s\n' "${times[@]}" | sort -n | sed -n "${k}p") $rss $(printf '%s\n' "${cpus[@]}" | sort -n | sed -n "${k}p")"
}
# Field N (1: wall ms, 2: RSS KiB, 3: CPU ms) of a bench result.
f() { echo "$1" | cut -d' ' -f"$2"; }

OUT=$WORK/out
# The physical limit: copy the allocated data (cp uses SEEK_DATA/copy_file_range) and make it
# durable, as isotool and qemu-img both flush their output before exiting.
copy_ms() { f "$(bench "$OUT" sh -c "cp --sparse=always '$1' '$OUT' && sync '$OUT'")" 1; }
row() { # name out iso_cmd -- qemu_cmd
  local name=$1 out=$2; shift 2
  local iso=() q=()
  while [ "$1" != "--" ]; do iso+=("$1"); shift; done; shift; q=("$@")
  local a b c d
  a=$(bench "$out" "${iso[@]}" --no-sync)
  b=$(bench "$out" "${q[@]}")
  c=$(bench "$out" "${iso[@]}")
  d=$(bench "$out" "${q[0]}" "${q[1]}" -t writeback "${q[@]:2}")
  awk -v n="$name" -v a="$(f "$a" 1)" -v b="$(f "$b" 1)" -v c="$(f "$c" 1)" -v d="$(f "$d" 1)" -v ar="$(f "$c" 2)" -v br="$(f "$d" 2)" -v cp="$copy_ms" 'BEGIN {
    printf "%-22s | %6d ms %5d ms %7.2f | %5d ms %5d ms %7.2f %7.2f | %4.1f MiB %4.1f MiB\n", n, a, b, a/b, c, d, c/d, c/cp, ar/1024, br/1024 }'
}
if [ "${ONLY:-}" != formats ]; then
copy_ms=$(copy_ms "$IN")

printf '\nDisk conversion, raw %d MiB with %d MiB of data (median of %d runs)\n' "$SIZE_MIB" "$DATA_MIB" "$RUNS"
printf 'copy of the allocated data (cp --sparse=always + sync): %d ms\n\n' "$copy_ms"
# Durability must match for a fair ratio. qemu-img convert's default cache mode does not flush the
# output before exiting (strace: no fdatasync after the writes); with `-t writeback` it flushes
# at the end. isotool syncs before renaming into place unless told `--no-sync`. So each case is
# timed in both modes: not flushed (isotool --no-sync vs qemu-img default) and flushed (isotool
# vs qemu-img -t writeback, the same durability as the copy baseline).
printf '%-22s | %8s %8s %7s | %8s %8s %7s %7s | %8s %8s\n' "" "no flush" "" "" "flushed" "" "" "" "peak RSS" ""
printf '%-22s | %8s %8s %7s | %8s %8s %7s %7s | %8s %8s\n' case isotool qemu ratio isotool qemu ratio vs_copy isotool qemu
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
fi

# --- Formats (issue 9): qcow2, qcow2 compressed, streamOptimized VMDK, GCP package ----------
# Same input layout, but the data compresses like a system disk does: runs alternate random
# bytes, base64 text and number text. (ONLY=formats runs this block alone.)
CIN=$WORK/cin.raw
truncate -s "${SIZE_MIB}M" "$CIN"
set +o pipefail # head closing the pipe early is expected here
for i in $(seq 0 $((runs - 1))); do
  case $((i % 3)) in
    0) head -c $((64 << 20)) /dev/urandom ;;
    1) head -c $((48 << 20)) /dev/urandom | base64 -w 76 | head -c $((64 << 20)) ;;
    2) seq 1 100000000 | head -c $((64 << 20)) ;;
  esac | dd of="$CIN" bs=1M seek=$((i * stride)) conv=notrunc status=none
done
set -o pipefail
sync "$CIN"
copy_ms=$(copy_ms "$CIN")
printf '\nFormats, raw %d MiB with %d MiB of mixed data (median of %d runs, %s cores, load %s)\n' "$SIZE_MIB" "$DATA_MIB" "$RUNS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'copy of the allocated data (cp --sparse=always + sync): %d ms\n' "$copy_ms"
printf '%-22s | %8s %8s %7s | %8s %8s %7s %7s | %8s %8s\n' "" "no flush" "" "" "flushed" "" "" "" "peak RSS" ""
printf '%-22s | %8s %8s %7s | %8s %8s %7s %7s | %8s %8s\n' case isotool qemu ratio isotool qemu ratio vs_copy isotool qemu
row "raw -> qcow2" "$OUT" "$ISOTOOL" -q convert "$CIN" "$OUT" --to qcow2 -- \
  qemu-img convert -f raw -O qcow2 "$CIN" "$OUT"
# The compressed outputs: wall time (flushed, equal durability), CPU time (user + system), size.
# Wall time is the target; CPU time says how much work each does when the machine is shared.
printf '\n%-22s | %8s %8s %7s | %8s %8s %7s | %12s %12s %7s\n' case "wall iso" qemu ratio "cpu iso" qemu ratio "size iso" qemu ratio
crow() { # name iso_cmd -- peer_cmd (both write $OUT; the peer is made durable by `sync`)
  local name=$1; shift
  local iso=() q=()
  while [ "$1" != "--" ]; do iso+=("$1"); shift; done; shift; q=("$@")
  local a b sa sb
  a=$(bench "$OUT" "${iso[@]}"); sa=$(stat -c %s "$OUT")
  b=$(bench "$OUT" sh -c "$(printf '%q ' "${q[@]}") && sync '$OUT'"); sb=$(stat -c %s "$OUT")
  awk -v n="$name" -v a="$(f "$a" 1)" -v b="$(f "$b" 1)" -v ca="$(f "$a" 3)" -v cb="$(f "$b" 3)" -v sa="$sa" -v sb="$sb" 'BEGIN {
    printf "%-22s | %5d ms %5d ms %7.2f | %5d ms %5d ms %7.2f | %12d %12d %7.4f\n", n, a, b, a/b, ca, cb, ca/cb, sa, sb, sa/sb }'
}
crow "raw -> qcow2 -c" "$ISOTOOL" -q convert "$CIN" "$OUT" --to qcow2 --compress -- \
  qemu-img convert -c -f raw -O qcow2 "$CIN" "$OUT"
crow "raw -> vmdk stream" "$ISOTOOL" -q convert "$CIN" "$OUT" --to vmdk -- \
  qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$CIN" "$OUT"

# GCP package: isotool pack vs GNU tar (sparse, gzip) and tar | pigz, flushed both.
GDIR=$WORK/gcp; mkdir -p "$GDIR"; ln -f "$CIN" "$GDIR/disk.raw"
crow "gcp vs tar -Sczf" "$ISOTOOL" -q pack "$CIN" --for gcp -o "$OUT" -- \
  tar --format=oldgnu -Sczf "$OUT" -C "$GDIR" disk.raw
if command -v pigz >/dev/null; then
  crow "gcp vs tar -S | pigz" "$ISOTOOL" -q pack "$CIN" --for gcp -o "$OUT" -- \
    sh -c "tar --format=oldgnu -S -cf - -C '$GDIR' disk.raw | pigz > '$OUT'"
else
  echo "gcp vs tar -S | pigz   | pigz is not installed (apt-get install pigz)"
fi
echo "targets: qcow2 ratio < 1.00; compressed wall ratio <= 0.625 (1.6x) with size ratio <= 1.02"
