#!/usr/bin/env python3
"""The peer of `isotool azure upload` for benches/azure_compare.sh: the official azure-storage-blob
SDK uploading a raw disk as a page blob (fixed VHD data part only: the footer is one more page),
with the same parallelism, sending only data: SEEK_DATA/SEEK_HOLE extents, then all-zero 512-byte
pages skipped, Put Page calls of at most 4 MiB.

usage: azure_page_upload.py CONNECTION_STRING CONTAINER BLOB DISK PARALLEL
"""
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from azure.storage.blob import BlobServiceClient

cs, container, blob, disk, parallel = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
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
    for a, b in extents():
        off = a
        while off < b:
            n = min(4 * MIB, b - off)
            buf = os.pread(fd, n, off)
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


with ThreadPoolExecutor(parallel) as ex:
    futs = [ex.submit(send, o, d) for o, d in chunks()]
    for f in futs:
        f.result()
