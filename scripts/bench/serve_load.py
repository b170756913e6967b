#!/usr/bin/env python3
"""Load generator for the serving benchmark: K concurrent clients POST every
image of DATA once to URL (raw bytes as the body), each on its own
keep-alive connection, and the figures go to --json-out as one JSON line:
requests/s over the whole burst, p50/p99 latency, failures.

    python scripts/bench/serve_load.py --url http://127.0.0.1:8080/predict \
        --data ../shared/clothing-dataset-small/validation --clients 8

Client k takes images k, k+K, k+2K, ... in flow_from_directory order, so every
level sends the same images. Only the standard library: the client must not
be what is measured, and threads blocked in socket calls release the GIL.
"""
import argparse
import http.client
import json
import os
import threading
import time
import urllib.parse

import benchlib


def percentile(values, q):
    """The q-th percentile (0..100) by linear interpolation, as numpy's default."""
    v = sorted(values)
    if not v:
        return None
    pos = (len(v) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def run(url, files, clients, timeout=300):
    """Sends FILES over CLIENTS connections; (wall seconds, latencies, errors)."""
    u = urllib.parse.urlsplit(url)
    path = u.path + (f"?{u.query}" if u.query else "")
    bodies = [open(f, "rb").read() for f in files]
    latencies, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(k):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        mine = []
        start.wait()
        for body in bodies[k::clients]:
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body,
                             headers={"Content-Type": "application/octet-stream"})
                r = conn.getresponse()
                text = r.read()
                ok = r.status == 200 and b'"top"' in text
            except (OSError, http.client.HTTPException) as e:
                ok, text = False, str(e).encode()
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
            dt = time.perf_counter() - t0
            if ok:
                mine.append(dt)
            else:
                with lock:
                    errors.append(text[:200].decode("utf-8", "replace"))
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, errors


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="the predict endpoint")
    p.add_argument("--data", required=True, help="image folder (DATA/<class>/<image> or with splits)")
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--json-out", help="append the result as one JSON line")
    a = p.parse_args(argv)
    files = [os.path.join(a.data, rel) for _, rel, _, _ in benchlib.list_images(a.data)]
    wall, lat, errors = run(a.url, files, a.clients)
    rec = {"clients": a.clients, "requests": len(files), "ok": len(lat), "errors": len(errors),
           "first_error": errors[0] if errors else None, "wall_s": wall,
           "rps": len(lat) / wall if wall else None,
           "p50_ms": 1000 * percentile(lat, 50) if lat else None,
           "p99_ms": 1000 * percentile(lat, 99) if lat else None,
           "mean_ms": 1000 * sum(lat) / len(lat) if lat else None}
    print(json.dumps(rec))
    if a.json_out:
        benchlib.append_json(a.json_out, rec)


if __name__ == "__main__":
    main()
