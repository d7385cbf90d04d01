#!/usr/bin/env bash
# Peer comparison for `isotool azure upload`, in one run against one Azurite (127.0.0.1, a free
# port, a temporary location): isotool vs the Python azure-storage-blob SDK (page blob, same
# parallelism, zero pages skipped: benches/azure_page_upload.py), plus the time to read the
# source's data (SEEK_DATA extents, warm cache). Prints wall times, ratios, peak RSS and CPU
# seconds (user + sys) of each client.
#
#   benches/azure_compare.sh           3 GiB sparse raw with 400 MiB of data, --parallel 8, 3 rounds
#   benches/azure_compare.sh --short   1 GiB with 128 MiB, 1 round (CI)
# Env: PARALLEL (default 8), ROUNDS, ISOTOOL (a prebuilt binary; default: cargo build --release).
# isotool runs with --verify never (the SDK does not verify either); it hashes MD5 and SHA-256 of
# the whole fixed-VHD stream (zeros included) and sends a CRC-64 with each Put Page (Azurite
# computes the CRC-64 of every Put Page whether or not the client sends one, so that costs the
# service nothing more). "sdk" hashes nothing and leaves the blob without Content-MD5; "sdk+md5"
# computes the MD5 of the whole blob and sets it as Content-MD5, as isotool must (issue 8): the
# same pages, the same parallelism and the same finished blob, hence the equal-work comparison.
# isotool does more still (the SHA-256 it prints). "isotool-local" is `--dry-run`: isotool's own
# work (read, page scan, MD5, SHA-256 of the whole stream) with no request: the floor of any
# isotool upload on this machine, whatever the service.
# On a loaded machine, Azurite (one node process) and the client share the CPU: client CPU time
# is Azurite's lost time, hence the cpu_seconds column.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=3072 DATA_MIB=400 ROUNDS=${ROUNDS:-3}
if [ "${1:-}" = "--short" ]; then SIZE_MIB=1024 DATA_MIB=128 ROUNDS=${ROUNDS:-1}; fi
PARALLEL=${PARALLEL:-8}
AZURITE=$PWD/tests/azurite/node_modules/.bin/azurite-blob
[ -x "$AZURITE" ] || { echo "azure_compare.sh: run npm ci in tests/azurite (.ci/install-deps)" >&2; exit 1; }
python3 -c 'import azure.storage.blob' || { echo "azure_compare.sh: pip install azure-storage-blob (.ci/install-deps)" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "azure_compare.sh: apt-get install time" >&2; exit 1; }

if [ -z "${ISOTOOL:-}" ]; then cargo build --release --quiet; ISOTOOL=$PWD/target/release/isotool; fi
WORK=$(mktemp -d "$PWD/target/azbench.XXXXXX")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$AZURITE" --location "$WORK/azurite" --blobHost 127.0.0.1 --blobPort "$PORT" --skipApiVersionCheck --silent >/dev/null 2>&1 &
AZ_PID=$!
trap 'kill $AZ_PID 2>/dev/null; wait $AZ_PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
KEY=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==
CS="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$KEY;BlobEndpoint=http://127.0.0.1:$PORT/devstoreaccount1;"

# Input: sparse raw, data in runs spread over the disk, random bytes.
IN=$WORK/in.raw
truncate -s "${SIZE_MIB}M" "$IN"
runs=$((DATA_MIB / 50)); stride=$((SIZE_MIB / runs))
for i in $(seq 0 $((runs - 1))); do
  dd if=/dev/urandom of="$IN" bs=1M count=50 seek=$((i * stride)) conv=notrunc status=none
done

measure() { # name, command...: prints "name seconds rss_kib cpu_seconds"
  local name=$1; shift
  /usr/bin/time -f '%e %M %U %S' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  read -r e m u s < "$WORK/time"
  echo "$name $e $m $(echo "$u + $s" | bc -l)"
}

read_data() { python3 - "$IN" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); size = os.fstat(fd).st_size; pos = 0
while pos < size:
    try: a = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError: break
    b = os.lseek(fd, a, os.SEEK_HOLE)
    while a < b:
        n = min(4 << 20, b - a); os.pread(fd, n, a); a += n
    pos = b
PY
}
export -f read_data; export IN
cat "$IN" >/dev/null # warm the cache for everyone
# Rounds interleave the tools (isotool, isotool-local, sdk, sdk+md5, isotool, ...) against the same Azurite, so
# that a change in the machine's load hits all of them; medians are compared.
: > "$WORK/results"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$ROUNDS"); do
  measure read bash -c read_data >> "$WORK/results"
  measure isotool "$ISOTOOL" azure upload "$IN" --container bench --blob "isotool$r.vhd" --parallel "$PARALLEL" --verify never --quiet --connection-string "$CS" >> "$WORK/results"
  measure isotool-local "$ISOTOOL" azure upload "$IN" --container bench --blob "dry$r.vhd" --dry-run --quiet --connection-string "$CS" >> "$WORK/results"
  measure sdk python3 benches/azure_page_upload.py "$CS" bench "sdk$r.vhd" "$IN" "$PARALLEL" >> "$WORK/results"
  measure sdk+md5 python3 benches/azure_page_upload.py "$CS" bench "sdkmd5$r.vhd" "$IN" "$PARALLEL" md5 >> "$WORK/results"
done
echo "azure upload: ${SIZE_MIB} MiB sparse raw, ${DATA_MIB} MiB data, parallel $PARALLEL, Azurite on 127.0.0.1, $ROUNDS round(s)"
echo "load average at start: $LOAD0; at end: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores; Azurite shares them)"
printf '%-10s %-28s %10s %12s %12s\n' tool 'seconds (each round)' median peak_rss_MiB cpu_seconds
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, sec, rss, cpu = line.split()
    rows.setdefault(name, []).append((float(sec), int(rss) / 1024, float(cpu)))
med = {}
for name, rs in rows.items():
    med[name] = statistics.median(r[0] for r in rs)
    each = " ".join("%.2f" % r[0] for r in rs)
    print("%-10s %-28s %10.2f %12.1f %12.2f" % (name, each, med[name], max(r[1] for r in rs),
                                               statistics.median(r[2] for r in rs)))
i = med["isotool"]
print("ratio sdk/isotool: %.2f (>1: isotool faster; medians)" % (med["sdk"] / i))
print("ratio sdk+md5/isotool: %.2f (equal work: the SDK also setting the blob's Content-MD5, as isotool does)" % (med["sdk+md5"] / i))
print("ratio isotool/read: %.2f (target <= 1.3; the service's ingest rate is the limit here, see isotool-local)" % (i / med["read"]))
print("ratio isotool-local/read: %.2f (isotool's own work over the bare read of the data)" % (med["isotool-local"] / med["read"]))
PY
