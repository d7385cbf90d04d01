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
if [ "${ONLY:-}" != formats ]; then
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
fi
echo
echo "targets: ratio < 1.00 in both modes, vs_copy (flushed) <= 1.15, peak RSS < 64 MiB"

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
printf '\nFormats, raw %d MiB with %d MiB of mixed data (median of %d runs, %s cores)\n' "$SIZE_MIB" "$DATA_MIB" "$RUNS" "$(nproc)"
printf '%-22s | %8s %8s %7s | %8s %8s %7s %7s | %8s %8s\n' case isotool qemu ratio isotool qemu ratio vs_copy isotool qemu
row "raw -> qcow2" "$OUT" "$ISOTOOL" -q convert "$CIN" "$OUT" --to qcow2 -- \
  qemu-img convert -f raw -O qcow2 "$CIN" "$OUT"
row "raw -> qcow2 -c" "$OUT" "$ISOTOOL" -q convert "$CIN" "$OUT" --to qcow2 --compress -- \
  qemu-img convert -c -f raw -O qcow2 "$CIN" "$OUT"
row "raw -> vmdk stream" "$OUT" "$ISOTOOL" -q convert "$CIN" "$OUT" --to vmdk -- \
  qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$CIN" "$OUT"
# Output sizes of the compressed formats (target: isotool within 2 % of qemu-img).
size_row() { # name iso_cmd -- qemu_cmd (both write $OUT)
  local name=$1; shift
  local iso=() q=()
  while [ "$1" != "--" ]; do iso+=("$1"); shift; done; shift; q=("$@")
  rm -f "$OUT"; "${iso[@]}" --no-sync >/dev/null; local a; a=$(stat -c %s "$OUT")
  rm -f "$OUT"; "${q[@]}" >/dev/null; local b; b=$(stat -c %s "$OUT")
  awk -v n="$name" -v a="$a" -v b="$b" 'BEGIN { printf "size %-17s | isotool %d bytes, qemu-img %d bytes, ratio %.4f\n", n, a, b, a/b }'
}
size_row "qcow2 -c" "$ISOTOOL" -q convert "$CIN" "$OUT" --to qcow2 --compress -- qemu-img convert -c -f raw -O qcow2 "$CIN" "$OUT"
size_row "vmdk stream" "$ISOTOOL" -q convert "$CIN" "$OUT" --to vmdk -- qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$CIN" "$OUT"

# GCP package: isotool pack vs GNU tar (sparse, gzip) and tar | pigz, at equal durability.
GDIR=$WORK/gcp; mkdir -p "$GDIR"; ln -f "$CIN" "$GDIR/disk.raw"
gcp_row() { # name peer_cmd_string
  local name=$1 peer=$2 a b c d
  a=$(bench "$OUT" "$ISOTOOL" -q pack "$CIN" --for gcp -o "$OUT" --no-sync)
  b=$(bench "$OUT" sh -c "$peer")
  c=$(bench "$OUT" "$ISOTOOL" -q pack "$CIN" --for gcp -o "$OUT")
  d=$(bench "$OUT" sh -c "$peer && sync '$OUT'")
  awk -v n="$name" -v a="${a% *}" -v b="${b% *}" -v c="${c% *}" -v d="${d% *}" -v ar="${c#* }" -v br="${d#* }" -v cp="$copy_ms" 'BEGIN {
    printf "%-22s | %6d ms %5d ms %7.2f | %5d ms %5d ms %7.2f %7.2f | %4.1f MiB %4.1f MiB\n", n, a, b, a/b, c, d, c/d, c/cp, ar/1024, br/1024 }'
}
gcp_row "gcp vs tar -Sczf" "tar --format=oldgnu -Sczf '$OUT' -C '$GDIR' disk.raw"
if command -v pigz >/dev/null; then
  gcp_row "gcp vs tar -S | pigz" "tar --format=oldgnu -S -cf - -C '$GDIR' disk.raw | pigz > '$OUT'"
fi
rm -f "$OUT"; "$ISOTOOL" -q pack "$CIN" --for gcp -o "$OUT" --no-sync; a=$(stat -c %s "$OUT")
rm -f "$OUT"; tar --format=oldgnu -Sczf "$OUT" -C "$GDIR" disk.raw; b=$(stat -c %s "$OUT")
awk -v a="$a" -v b="$b" 'BEGIN { printf "size gcp tar.gz        | isotool %d bytes, tar -Sczf %d bytes, ratio %.4f\n", a, b, a/b }'
echo "targets: qcow2/vmdk/gcp uncompressed ratio < 1.00; compressed ratio <= 0.625 (1.6x) with size ratio <= 1.02"
