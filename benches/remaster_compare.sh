#!/bin/sh
# Remaster benchmark: isotool remaster vs xorriso's `-boot_image any replay` vs `cp` (the
# physical limit), on a ~900 MB Ubuntu-shaped ISO whose pool/ is padded with incompressible
# files. Prints wall times, ratios and peak RSS. A benchmark, not a test: nothing is asserted.
# A second pair of cases adds a big incompressible file (--add, ADD_MB, default 300) whose MD5
# goes into md5sum.txt: isotool remaster vs `md5sum` of the new files + xorriso mapping them
# and the new md5sum.txt, and prints isotool's md5sum.txt phase rate beside md5sum's.
# Usage: benches/remaster_compare.sh [POOL_MB] [WORKDIR]   (env ADD_MB)
# Needs: xorriso, isolinux, syslinux-common, dosfstools, time (/usr/bin/time), cargo.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
pool_mb=${1:-880}
add_mb=${ADD_MB:-300}
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/remaster-bench.XXXXXX")}
mkdir -p "$work"
[ -x /usr/bin/time ] || { echo "remaster_compare.sh: /usr/bin/time is missing (install time)" >&2; exit 2; }
command -v xorriso >/dev/null || { echo "remaster_compare.sh: xorriso is missing" >&2; exit 2; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
(cd "$here" && cargo build --release --bin isotool >&2)
bin=$CARGO_TARGET_DIR/release/isotool
in=$work/in.iso
if [ ! -s "$in" ]; then
  echo "building a ${pool_mb} MB-pool Ubuntu-shaped ISO in $work ..." >&2
  sh "$here/fixtures/iso/make-ubuntu-mini.sh" "$in" "$pool_mb"
fi
printf 'd-i debian-installer/locale string en_US\n' > "$work/auto.seed"
cat "$in" > /dev/null   # warm the page cache for every contender alike
sync

measure() { # name, command...
  name=$1; shift
  rm -f "$work/out-$name.iso"
  /usr/bin/time -v -o "$work/time-$name.txt" "$@" >/dev/null 2>"$work/err-$name.txt" || {
    cat "$work/err-$name.txt" >&2; echo "$name failed" >&2; exit 1; }
  sync
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time-$name.txt" |
    awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time-$name.txt")
  echo "$name $wall $rss"
}

report() { # title, then the three result lines
  title=$1; r_iso=$2; r_xor=$3; r_cp=$4
  echo "== $title"
  printf '%-8s %10s %12s\n' tool "wall(s)" "maxRSS(KiB)"
  for r in "$r_iso" "$r_xor" "$r_cp"; do
    set -- $r
    printf '%-8s %10s %12s\n' "$1" "$2" "$3"
  done
  set -- $r_iso; t_iso=$2; rss_iso=$3
  set -- $r_xor; t_xor=$2
  set -- $r_cp; t_cp=$2
  awk -v a="$t_iso" -v x="$t_xor" -v c="$t_cp" -v r="$rss_iso" 'BEGIN {
    if (x > 0) printf "isotool / xorriso = %.3f (target <= 0.25)\n", a / x;
    if (c > 0) printf "isotool / cp      = %.3f (target <= 1.5)\n", a / c; else print "cp took < 10 ms";
    printf "isotool peak RSS  = %.1f MiB (target < 64)\n", r / 1024 }'
}

echo "input: $in ($(stat -c %s "$in") bytes)"
seed=$work/auto.seed
# 1. no output synced: xorriso and cp leave dirty pages behind, and so does isotool --no-sync
#    (by default isotool fsyncs its output before renaming it into place).
r_iso=$(SOURCE_DATE_EPOCH=1700000000 measure isotool "$bin" --no-sync remaster "$in" -o "$work/out-isotool.iso" \
  --preseed "$seed" --kernel-arg console=ttyS0)
r_xor=$(measure xorriso xorriso -indev "$in" -outdev "$work/out-xorriso.iso" \
  -map "$seed" /preseed/auto.seed -boot_image any replay)
r_cp=$(measure cp cp "$in" "$work/out-cp.iso")
report "no output synced (isotool --no-sync, xorriso, cp)" "$r_iso" "$r_xor" "$r_cp"
# 2. every output synced before the clock stops (isotool's default durability).
r_iso=$(SOURCE_DATE_EPOCH=1700000000 measure isotool "$bin" remaster "$in" -o "$work/out-isotool.iso" \
  --preseed "$seed" --kernel-arg console=ttyS0 --force)
r_xor=$(measure xorriso sh -c "xorriso -indev '$in' -outdev '$work/out-xorriso.iso' -map '$seed' /preseed/auto.seed -boot_image any replay && sync '$work/out-xorriso.iso'")
r_cp=$(measure cp sh -c "cp '$in' '$work/out-cp.iso' && sync '$work/out-cp.iso'")
report "every output synced" "$r_iso" "$r_xor" "$r_cp"

# 3. a big --add file: its MD5 goes into md5sum.txt. The peer's equivalent flow: md5sum of the
#    new files, then xorriso maps them and the new md5sum.txt (the same work: hash, copy).
big=$work/big.bin
[ "$(stat -c %s "$big" 2>/dev/null || echo 0)" -eq $((add_mb << 20)) ] ||
  head -c $((add_mb << 20)) /dev/urandom > "$big"
cat "$big" > /dev/null
xor_add="md5sum '$big' '$seed' > '$work/sums' && xorriso -indev '$in' -outdev '$work/out-xorriso.iso' \
  -map '$seed' /preseed/auto.seed -map '$big' /pool/big.bin -map '$work/sums' /md5sum.txt -boot_image any replay"
for sync in no yes; do
  if [ $sync = no ]; then nosync=--no-sync; xsync=true; csync=true; title="no output synced"
  else nosync=; xsync="sync '$work/out-xorriso.iso'"; csync="sync '$work/out-cp.iso'"; title="every output synced"; fi
  r_iso=$(SOURCE_DATE_EPOCH=1700000000 measure isotool "$bin" $nosync remaster "$in" -o "$work/out-isotool.iso" \
    --preseed "$seed" --add "$big=/pool/big.bin" --force)
  r_xor=$(measure xorriso sh -c "$xor_add && $xsync")
  r_cp=$(measure cp sh -c "cat '$in' '$big' > '$work/out-cp.iso' && $csync")
  report "with a ${add_mb} MiB --add file, $title (cp: input + the file)" "$r_iso" "$r_xor" "$r_cp"
done
# the md5sum.txt phase alone: isotool's own report vs md5sum(1) on the same file, same run
rm -f "$work/out-isotool.iso"
SOURCE_DATE_EPOCH=1700000000 "$bin" --progress=plain --no-sync remaster "$in" -o "$work/out-isotool.iso" \
  --preseed "$seed" --add "$big=/pool/big.bin" 2>"$work/err-phase.txt" >/dev/null
t0=$(date +%s%N); md5sum "$big" >/dev/null; t1=$(date +%s%N)
awk -v mb="$add_mb" -v ns=$((t1 - t0)) '/^md5sum.txt: done/ { s = $(NF - 1); sub(/s$/, "", s) }
  END { if (s > 0) printf "md5sum.txt phase: isotool %.0f MiB/s (%s s), md5sum(1) %.0f MiB/s\n", mb / s, s, mb / (ns / 1e9);
        else print "md5sum.txt phase: no timing line from isotool --progress=plain" }' "$work/err-phase.txt"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -f "$work"/out-*.iso
