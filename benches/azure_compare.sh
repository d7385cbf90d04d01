#!/usr/bin/env bash
# Peer comparison for `isotool azure upload`, in one run against one Azurite (127.0.0.1, a free
# port, a temporary location): isotool vs the Python azure-storage-blob SDK (page blob, same
# parallelism, zero pages skipped: benches/azure_page_upload.py), plus the time to read the
# source's data (SEEK_DATA extents, warm cache). Prints wall times, ratios and peak RSS.
#
#   benches/azure_compare.sh           3 GiB sparse raw with 400 MiB of data, --parallel 8
#   benches/azure_compare.sh --short   1 GiB with 128 MiB (CI)
# Env: PARALLEL (default 8), ISOTOOL (a prebuilt binary; default: cargo build --release). isotool runs with --verify never (the SDK does not verify either);
# isotool still hashes MD5 and SHA-256 of the whole fixed-VHD stream, the SDK hashes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=3072 DATA_MIB=400
if [ "${1:-}" = "--short" ]; then SIZE_MIB=1024 DATA_MIB=128; fi
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

measure() { # name, command...: prints "name seconds rss_kib"
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f %M -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$name $(echo "$t1 - $t0" | bc -l) $(cat "$WORK/rss")"
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
R=$(measure read bash -c read_data)
I=$(measure isotool "$ISOTOOL" azure upload "$IN" --container bench --blob isotool.vhd --parallel "$PARALLEL" --verify never --quiet --connection-string "$CS")
S=$(measure sdk python3 benches/azure_page_upload.py "$CS" bench sdk.vhd "$IN" "$PARALLEL")
echo "azure upload: ${SIZE_MIB} MiB sparse raw, ${DATA_MIB} MiB data, parallel $PARALLEL, Azurite on 127.0.0.1"
printf '%-10s %10s %12s\n' tool seconds peak_rss_MiB
for line in "$R" "$I" "$S"; do
  set -- $line; printf '%-10s %10.2f %12.1f\n' "$1" "$2" "$(echo "$3/1024" | bc -l)"
done
ti=$(echo "$I" | cut -d' ' -f2); ts=$(echo "$S" | cut -d' ' -f2); tr=$(echo "$R" | cut -d' ' -f2)
printf 'ratio sdk/isotool: %.2f (>1: isotool faster)\n' "$(echo "$ts / $ti" | bc -l)"
printf 'ratio isotool/read: %.2f (target <= 1.3)\n' "$(echo "$ti / $tr" | bc -l)"
