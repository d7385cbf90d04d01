#!/usr/bin/env bash
# Compares isotool with its peers on the same inputs, in one run:
#   isotool provisioning-cd      vs  genisoimage -r -J   (provisioning DVD from a config tree)
#   isotool cloud-init-seed      vs  cloud-localds       (NoCloud cidata ISO)
# Prints a table of mean times and ratios (isotool / peer; below 1.0 means isotool is faster).
# Needs: genisoimage, cloud-image-utils (cloud-localds), python3; hyperfine if installed
# (else a loop timed with date +%s%N). Usage: benches/prov_compare.sh [RESOURCE_MB]
set -euo pipefail
cd "$(dirname "$0")/.."
RES_MB=${1:-16}
RUNS=${RUNS:-15}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
# ISOTOOL_BIN: measure another build (before/after a change); default: build this checkout.
if [ -n "${ISOTOOL_BIN:-}" ]; then BIN=$(realpath "$ISOTOOL_BIN"); else
  cargo build --release --quiet
  BIN=$CARGO_TARGET_DIR/release/isotool
fi
for t in genisoimage cloud-localds python3; do
  command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }
done

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
T=$W/config
mkdir -p $T/consul/client $T/consul/certs $T/unbound $T/resource/app $T/resource/web
echo '{"run": true}' > $T/run_provisioning.json
echo '{"allow": true}' > $T/allow_ssh.json
echo '{"datacenter": "dc1", "domain": "consulverse"}' > $T/consul/consul_region.json
echo "{\"encrypt\": \"$(head -c 32 /dev/urandom | base64)\"}" > $T/consul/consul_secrets.json
echo '{"enabled": true}' > $T/consul/consul_connect.json
echo '{"location": "bench"}' > $T/consul/client/consul_client_location.json
for i in $(seq 1 40); do echo "local-data: \"host$i.consulverse. IN A 10.0.0.$i\""; done > $T/unbound/unbound_zones.conf
if command -v openssl >/dev/null; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=server.dc1.consul -keyout $T/consul/certs/consul_cert.key \
    -out $T/consul/certs/consul_cert.crt 2>/dev/null
  cp $T/consul/certs/consul_cert.crt $T/consul/certs/consul_cert_bundle.crt
fi
# Resource-specific files: a few big ones and many small ones.
head -c $((RES_MB * 1024 * 1024 / 2)) /dev/urandom > $T/resource/app/bundle.tar
head -c $((RES_MB * 1024 * 1024 / 4)) /dev/urandom > $T/resource/web/assets.bin
head -c $((RES_MB * 1024 * 1024 / 4)) /dev/zero > $T/resource/web/zeros.img
for i in $(seq 1 200); do echo "{\"item\": $i, \"name\": \"resource-$i\"}" > $T/resource/app/item_$i.json; done
printf '#cloud-config\nhostname: bench\nruncmd:\n  - [echo, hi]\n' > $W/user-data
printf 'instance-id: iid-bench\nlocal-hostname: bench\n' > $W/meta-data
export SOURCE_DATE_EPOCH=1700000000

declare -A CMD
CMD[iso_isotool]="$BIN -q provisioning-cd --from $T -o $W/a.iso --force"
CMD[iso_genisoimage]="genisoimage -quiet -r -J -o $W/b.iso $T"
# isotool syncs its output before renaming it into place; genisoimage does not. The same
# durability for the peer: its output synced too.
CMD[iso_isotool_nosync]="$BIN -q --no-sync provisioning-cd --from $T -o $W/a2.iso --force"
CMD[iso_genisoimage_sync]="sh -c 'genisoimage -quiet -r -J -o $W/c.iso $T && sync $W/c.iso'"
CMD[seed_isotool]="$BIN -q cloud-init-seed -o $W/s1.iso --user-data $W/user-data --meta-data $W/meta-data --force"
CMD[seed_isotool_nosync]="$BIN -q --no-sync cloud-init-seed -o $W/s3.iso --user-data $W/user-data --meta-data $W/meta-data --force"
CMD[seed_cloud_localds]="cloud-localds $W/s2.iso $W/user-data $W/meta-data"

declare -A MEAN
if command -v hyperfine >/dev/null; then
  for k in "${!CMD[@]}"; do
    hyperfine -N --warmup 3 --runs $RUNS --export-json $W/$k.json "${CMD[$k]}" >/dev/null
    MEAN[$k]=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0]['mean'])" $W/$k.json)
  done
  HOW="hyperfine, $RUNS runs after 3 warm-ups"
else
  for k in "${!CMD[@]}"; do
    eval "${CMD[$k]}" >/dev/null 2>&1
    s=$(date +%s%N)
    for _ in $(seq 1 $RUNS); do eval "${CMD[$k]}" >/dev/null 2>&1; done
    e=$(date +%s%N)
    MEAN[$k]=$(python3 -c "print(($e - $s) / 1e9 / $RUNS)")
  done
  HOW="shell loop, $RUNS runs"
fi

TREE_BYTES=$(du -sb $T | cut -f1)
echo "config tree: $(find $T -type f | wc -l) files, $TREE_BYTES bytes ($HOW)"
python3 - "${MEAN[iso_isotool]}" "${MEAN[iso_genisoimage]}" "${MEAN[iso_genisoimage_sync]}" "${MEAN[seed_isotool]}" "${MEAN[seed_cloud_localds]}" "${MEAN[iso_isotool_nosync]}" "${MEAN[seed_isotool_nosync]}" <<'PY'
import sys
a, b, s, c, d, an, cn = map(float, sys.argv[1:8])
# Same durability on both sides of each ratio: genisoimage and cloud-localds do not fsync, so
# they are compared with `isotool --no-sync`; isotool's default (fsync before rename) is compared
# with genisoimage followed by a sync of its output.
print(f"{'task':<22}{'isotool':>12}{'peer':>12}{'ratio':>9}  what")
print(f"{'provisioning DVD':<22}{an*1000:>10.1f}ms{b*1000:>10.1f}ms{an/b:>9.2f}  isotool --no-sync vs genisoimage -r -J (neither syncs)")
print(f"{'provisioning DVD':<22}{a*1000:>10.1f}ms{s*1000:>10.1f}ms{a/s:>9.2f}  isotool vs genisoimage -r -J + sync (both sync)")
print(f"{'provisioning DVD':<22}{a*1000:>10.1f}ms{b*1000:>10.1f}ms{a/b:>9.2f}  isotool (syncs) vs genisoimage -r -J (does not)")
print(f"{'NoCloud seed (ISO)':<22}{cn*1000:>10.1f}ms{d*1000:>10.1f}ms{cn/d:>9.2f}  isotool --no-sync vs cloud-localds (neither syncs)")
print(f"{'NoCloud seed (ISO)':<22}{c*1000:>10.1f}ms{d*1000:>10.1f}ms{c/d:>9.2f}  isotool (syncs) vs cloud-localds (does not)")
PY
