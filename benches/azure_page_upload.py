#!/usr/bin/env python3
"""The peer of `isotool azure upload` for benches/azure_compare.sh: the official azure-storage-blob
SDK uploading a raw disk as a page blob (fixed VHD data part only: the footer is one more page),
with the same parallelism, sending only data: SEEK_DATA/SEEK_HOLE extents, then all-zero 512-byte
pages skipped, Put Page calls of at most 4 MiB.

With MD5=md5 it also does what isotool does for the blob's integrity: the MD5 of the whole blob
(data, zeros and the 512-byte last page) computed in stream order while sending, then set as the
blob's Content-MD5 (Set Blob Properties) at the end: the same blob as isotool's, footer aside.

usage: azure_page_upload.py CONNECTION_STRING CONTAINER BLOB DISK PARALLEL [md5]
"""
import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from azure.storage.blob import BlobServiceClient, ContentSettings

cs, container, blob, disk, parallel = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
want_md5 = len(sys.argv) > 6 and sys.argv[6] == "md5"
MIB = 1 << 20
size = os.path.getsize(disk)
vsize = (size + MIB - 1) // MIB * MIB
svc = BlobServiceClient.from_connection_string(cs)
try:
    svc.create_container(container)
except Exception:
    pass
bc = svc.get_blob_client(container, blob)
bc.create_page_blob(vsize + 512)
fd = os.open(disk, os.O_RDONLY)
ZERO = bytes(512)
ZEROS = bytes(4 * MIB)
md5 = hashlib.md5() if want_md5 else None


def hash_zeros(n):
    while n > 0:
        k = min(n, len(ZEROS))
        md5.update(memoryview(ZEROS)[:k])
        n -= k


def extents():
    pos = 0
    while pos < size:
        try:
            a = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return
        b = os.lseek(fd, a, os.SEEK_HOLE)
        yield a, b
        pos = b


def send(off, data):
    bc.upload_page(data, offset=off, length=len(data))


def chunks():
    pos = 0
    for a, b in extents():
        if md5:
            hash_zeros(a - pos)
        off = a
        while off < b:
            n = min(4 * MIB, b - off)
            buf = os.pread(fd, n, off)
            if md5:
                md5.update(buf)
            run = None
            for i in range(0, n, 512):
                nz = buf[i:i + 512] != ZERO
                if nz and run is None:
                    run = i
                if not nz and run is not None:
                    yield off + run, buf[run:i]
                    run = None
            if run is not None:
                yield off + run, buf[run:n]
            off += n
        pos = b
    if md5:
        hash_zeros(vsize + 512 - pos)


with ThreadPoolExecutor(parallel) as ex:
    futs = [ex.submit(send, o, d) for o, d in chunks()]
    for f in futs:
        f.result()
if md5:
    bc.set_http_headers(ContentSettings(content_type="application/octet-stream", content_md5=md5.digest()))
