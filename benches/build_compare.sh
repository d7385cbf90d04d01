#!/usr/bin/env bash
# The build of the fixture end to end, isotool vs its peers, in one run:
#   isotool build fixtures/build/build.toml (verify, remaster, DVD, seed, custom data, blank disk,
#   install in qemu, convert/validate/SHA256SUMS for hyperv, azure, raw)
# against the same pipeline done with the peers:
#   sha256sum (ISO check) + xorriso remaster (-boot_image any replay, the same edited files mapped
#   in) + genisoimage DVD + genisoimage cidata seed + qemu-img create + the same qemu boot +
#   qemu-img convert x2 (VHDX 1 MiB blocks, fixed VHD) + cp --sparse (raw) + sha256sum x3.
# Prints the time of each step, the totals with and without the VM's own run (the same for both),
# the ratio of the totals without the VM, and the peak RSS of isotool and of the largest peer.
# Equal durability: isotool runs with --no-sync (the peers do not sync either).
# Needs: qemu-system-x86, qemu-utils, ovmf, xorriso, genisoimage, GNU time; and what
# fixtures/ubuntu-like/build.sh needs.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
for t in qemu-system-x86_64 qemu-img xorriso genisoimage sha256sum python3; do
  command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "missing /usr/bin/time (apt-get install time)" >&2; exit 1; }
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/isotool
iso=$(fixtures/ubuntu-like/build.sh | tail -1)
sha=$(sed -n 's/^iso-sha256=//p' "$(dirname "$iso")/provenance.txt")
printf '%s  %s\n' "$sha" "$(basename "$iso")" >"$(dirname "$iso")/SHA256SUMS"

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
now() { date +%s.%N; }
declare -A PT # peer step times
PEAK=0
peer() { # name command...: times one peer step, keeps the largest RSS
  local name=$1; shift
  local t0; t0=$(now)
  /usr/bin/time -f %M -o "$W/rss" "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; exit 1; }
  PT[$name]=$(python3 -c "print(f'{$(now) - $t0:.2f}')")
  local r; r=$(tail -1 "$W/rss")
  if [ "$name" != install ] && [ "$r" -gt "$PEAK" ]; then PEAK=$r; fi
  return 0
}

echo "== isotool build (--no-sync)"
# isotool's own peak RSS comes from its report (VmHWM): GNU time's %M is the largest of the
# process and the children it waited for, i.e. qemu's.
"$BIN" --no-sync build fixtures/build/build.toml --force --json >"$W/report.json"
ISO_RSS=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['peak_rss_kib'])" "$W/report.json")
out=fixtures/out/build/1.0.0/ubuntu-like
work=$out/.work

echo "== peers"
P=$W/peer
mkdir -p "$P/x"
peer verify sha256sum "$iso"
# The same edits isotool made, taken from its output, mapped in by xorriso.
for f in /isolinux/isolinux.cfg /isolinux/txt.cfg /boot/grub/grub.cfg /md5sum.txt /preseed/ubuntu-18.04-server.seed; do
  "$BIN" iso extract "$work/installer.iso" "$f" -o "$P/x/$(basename "$f")" >/dev/null 2>&1
done
peer remaster xorriso -indev "$iso" -outdev "$P/installer.iso" -boot_image any replay \
  -map "$P/x/isolinux.cfg" /isolinux/isolinux.cfg -map "$P/x/txt.cfg" /isolinux/txt.cfg \
  -map "$P/x/grub.cfg" /boot/grub/grub.cfg -map "$P/x/md5sum.txt" /md5sum.txt \
  -map "$P/x/ubuntu-18.04-server.seed" /preseed/ubuntu-18.04-server.seed
peer provisioning-dvd genisoimage -quiet -r -J -V PROVISIONING -o "$P/provisioning.iso" fixtures/config
"$BIN" iso extract "$work/seed.iso" /user-data -o "$P/x/user-data" >/dev/null 2>&1
"$BIN" iso extract "$work/seed.iso" /meta-data -o "$P/x/meta-data" >/dev/null 2>&1
peer nocloud-seed genisoimage -quiet -r -J -V cidata -o "$P/seed.iso" "$P/x/user-data" "$P/x/meta-data"
peer blank-disk qemu-img create -q -f raw "$P/disk.raw" 2G
cp /usr/share/OVMF/OVMF_VARS_4M.fd "$P/vars.fd"
peer install qemu-system-x86_64 -machine pc -accel tcg -m 512 -smp 2 -display none -monitor none \
  -nic none -no-reboot -serial "file:$P/serial.log" \
  -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
  -drive "if=pflash,format=raw,unit=1,file=$P/vars.fd" \
  -drive "if=none,id=cd0,media=cdrom,format=raw,readonly=on,file=$P/installer.iso" -device ide-cd,drive=cd0,bootindex=0 \
  -drive "if=none,id=disk0,format=raw,file=$P/disk.raw" -device ide-hd,drive=disk0,bootindex=1
grep -q INSTALL-FINISH "$P/serial.log" || { echo "the peers' install did not finish" >&2; exit 1; }
peer convert:hyperv qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=1M "$P/disk.raw" "$P/hyperv.vhdx"
peer convert:azure qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on "$P/disk.raw" "$P/azure.vhd"
peer convert:raw cp --sparse=always "$P/disk.raw" "$P/raw.raw"
peer sha256sums sha256sum "$P/hyperv.vhdx" "$P/azure.vhd" "$P/raw.raw"

python3 - "$W/report.json" "$ISO_RSS" "$PEAK" <<PY
import json, sys
rep = json.load(open(sys.argv[1]))
iso_rss, peer_rss = int(sys.argv[2]), int(sys.argv[3])
peer = {$(for k in "${!PT[@]}"; do printf '"%s": %s, ' "$k" "${PT[$k]}"; done)}
t = {s["step"]: s["seconds"] for s in rep["steps"]}
print(f"{'step':<22} {'isotool s':>10} {'peers s':>10}")
groups = [("verify", ["verify-iso"]), ("remaster", ["remaster"]),
          ("provisioning-dvd", ["provisioning-dvd"]), ("nocloud-seed", ["nocloud-seed"]),
          ("azure-custom-data", ["azure-custom-data"]), ("blank-disk", ["blank-disk"]),
          ("install", ["install"])]
for p in ["hyperv", "azure", "raw"]:
    groups.append((f"convert:{p}", [f"convert:{p}", f"validate:{p}"]))
groups.append(("sha256sums", [s for s in t if s.startswith("sha256sums:")] + ["publish"]))
it = pt = 0.0
for name, steps in groups:
    a = sum(t.get(s, 0.0) for s in steps)
    b = peer.get(name)
    print(f"{name:<22} {a:>10.2f} {('-' if b is None else f'{b:.2f}'):>10}")
    if name != "install":
        it += a; pt += b or 0.0
print(f"{'total without the VM':<22} {it:>10.2f} {pt:>10.2f}")
print(f"{'VM (install)':<22} {t['install']:>10.2f} {peer['install']:>10.2f}")
print(f"ratio isotool/peers without the VM: {it/pt:.2f} (below 1.0: isotool is faster)")
print("note: isotool's convert steps include its SHA-256 of the artifact and the validation;")
print("      the peers' sha256sum is in their sha256sums row")
print(f"peak RSS: isotool {iso_rss/1024:.1f} MiB (whole build, the VM not counted), largest peer {peer_rss/1024:.1f} MiB (qemu not counted)")
if iso_rss > 64 * 1024:
    print("FAIL: isotool's peak RSS is over 64 MiB"); sys.exit(1)
PY
