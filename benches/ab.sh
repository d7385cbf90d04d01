#!/usr/bin/env bash
# Before/after comparison of two isotool builds on the same inputs, in one run: each case runs
# the OLD and the NEW binary alternately (so a change in the machine's load hits both alike), and
# prints median wall and CPU times and NEW/OLD ratios. For checking that a refactor did not slow
# the copy paths down (issue 10: "the benches show no regression, before and after").
#
#   benches/ab.sh OLD_BIN NEW_BIN            raw 1 GiB with 256 MiB of data, 5 runs each
# Env: RUNS (default 5), SIZE_MIB (1024), DATA_MIB (256), WORK (scratch dir under target/).
# Every case writes to disk and syncs (isotool's default), the durability users get.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: benches/ab.sh OLD_BIN NEW_BIN" >&2; exit 2; }
OLD=$(realpath "$1") NEW=$(realpath "$2")
RUNS=${RUNS:-5} SIZE_MIB=${SIZE_MIB:-1024} DATA_MIB=${DATA_MIB:-256}
command -v /usr/bin/time >/dev/null || { echo "ab.sh: apt-get install time" >&2; exit 1; }
WORK=${WORK:-$(mktemp -d "$PWD/target/ab.XXXXXX")}
trap 'rm -rf "$WORK"' EXIT

# Input: sparse raw, random data in 64 MiB runs spread over the disk.
IN=$WORK/in.raw
truncate -s "${SIZE_MIB}M" "$IN"
runs=$((DATA_MIB / 64)); stride=$((SIZE_MIB / runs))
for i in $(seq 0 $((runs - 1))); do
  head -c $((64 << 20)) /dev/urandom | dd of="$IN" bs=1M seek=$((i * stride)) conv=notrunc status=none
done
"$NEW" -q convert "$IN" "$WORK/in.vhdx" --to vhdx --block-size 32M
sync

. benches/lib.sh  # measure()
# Prints "wall_ms cpu_ms" of one run.
once() { measure "$@" | awk '{ print $1, $3 }' || exit 1; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf '%-24s | %9s %9s %6s | %9s %9s %6s\n' case "old wall" "new wall" new/old "old cpu" "new cpu" new/old
case_() { # name out_name args... (run as: BIN -q ARGS OUT)
  local name=$1 out=$WORK/$2; shift 2
  local ow=() nw=() oc=() nc=() r
  for _ in $(seq "$RUNS"); do
    r=$(once "$out" "$OLD" -q "$@" "$out"); ow+=("${r% *}"); oc+=("${r#* }")
    r=$(once "$out" "$NEW" -q "$@" "$out"); nw+=("${r% *}"); nc+=("${r#* }")
  done
  local a b c d
  a=$(printf '%s\n' "${ow[@]}" | median); b=$(printf '%s\n' "${nw[@]}" | median)
  c=$(printf '%s\n' "${oc[@]}" | median); d=$(printf '%s\n' "${nc[@]}" | median)
  awk -v n="$name" -v a="$a" -v b="$b" -v c="$c" -v d="$d" 'BEGIN {
    printf "%-24s | %6d ms %6d ms %6.2f | %6d ms %6d ms %6.2f\n", n, a, b, b / a, c, d, (c ? d / c : 0) }'
}
case_ "raw -> vhd (fixed)" out.vhd convert "$IN" --to vhd
case_ "raw -> vhd-dynamic" out.vhd convert "$IN" --to vhd-dynamic
case_ "raw -> vhdx" out.vhdx convert "$IN" --to vhdx --block-size 32M
case_ "vhdx -> vhd (--azure)" out.vhd convert "$WORK/in.vhdx" --azure
case_ "vhdx -> raw" out.raw convert "$WORK/in.vhdx" --to raw
printf 'raw %d MiB with %d MiB of data, median of %d runs each, alternating; old: %s, new: %s\n' \
  "$SIZE_MIB" "$DATA_MIB" "$RUNS" "$OLD" "$NEW"
