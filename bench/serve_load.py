#!/usr/bin/env python3
"""serve_load.py — load generator for OpenAI-compatible servers: `puzzle
serve` and, side by side in the same run, llama.cpp's llama-server.

At each concurrency level C, C client threads each send R streaming chat
requests back to back (distinct prompts, max_tokens fixed, temperature 0)
and record time to first token (TTFT: request sent → first content chunk),
inter-token latency (ITL: between content chunks of one stream) and the
generated tokens (usage.completion_tokens). Aggregate throughput = all
generated tokens / wall time of the level. Standard library only.

usage:
  serve_load.py --puzzle BIN MODEL [--puzzle BIN CHILD] [--llama LLAMA_SERVER GGUF] [--levels 1,4,16]
                [--requests R] [--max-tokens N] [--threads T] [--out results/serve_cpu.md]
  serve_load.py --url http://127.0.0.1:8080 [...]   (a server already running)
  serve_load.py --puzzle BIN MODEL --levels 16 --soak 600   (16 clients for 10 minutes: errors, RSS)
  serve_load.py --puzzle BIN MODEL --loadgen build/serve_load [...]

With --loadgen PATH the measurement is made by the C load generator (bench/serve_load.c, built
as build/serve_load; the project's measurement tool, percentiles p50/p90/p99) against each
server this script starts; without it, by the Python clients below (p50/p95). This script
keeps the orchestration: starting `puzzle serve` / llama-server on free ports and stopping them.
"""
import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

TOPICS = ["a lighthouse keeper", "the first snow", "a lost key", "an old map", "a quiet library", "a red kite",
          "the night train", "a small robot", "a river town", "a broken clock", "the tallest tree", "a tea shop",
          "a violin", "the desert wind", "a paper boat", "a mountain cabin"]


def one_request(host, port, i, max_tokens):
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content":
                       f"Write a short story about {TOPICS[i % len(TOPICS)]} (number {i})."}],
                       "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}})
    c = http.client.HTTPConnection(host, port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
    stamps, usage, buf = [], None, b""
    while True:
        chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            ev = ev.strip()
            if not ev.startswith(b"data: "):
                continue
            data = ev[6:]
            if data == b"[DONE]":
                continue
            o = json.loads(data)
            if o.get("usage"):
                usage = o["usage"]
            for ch in o.get("choices") or []:
                if (ch.get("delta") or {}).get("content"):
                    stamps.append(time.perf_counter())
    c.close()
    n = usage["completion_tokens"] if usage else len(stamps)
    ttft = stamps[0] - t0 if stamps else float("nan")
    itl = [b - a for a, b in zip(stamps, stamps[1:])]
    return n, ttft, itl


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run_level(url, conc, reqs, max_tokens):
    u = urllib.parse.urlparse(url)
    res, errors = [], []
    lock = threading.Lock()

    def worker(w):
        for k in range(reqs):
            try:
                out = one_request(u.hostname, u.port, w * reqs + k, max_tokens)
                with lock:
                    res.append(out)
            except Exception as e:  # counted, reported
                with lock:
                    errors.append(str(e))

    ths = [threading.Thread(target=worker, args=(w,)) for w in range(conc)]
    t0 = time.perf_counter()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.perf_counter() - t0
    toks = sum(r[0] for r in res)
    ttft = [r[1] for r in res]
    itl = [x for r in res for x in r[2]]
    return {"conc": conc, "requests": len(res), "errors": len(errors), "tokens": toks, "wall": wall,
            "tps": toks / wall, "ttft50": pct(ttft, 50), "ttft95": pct(ttft, 95), "itl50": pct(itl, 50),
            "itl95": pct(itl, 95), "err": errors[:3]}


def rss_mib(p):
    with open(f"/proc/{p.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def soak(url, p, conc, max_tokens, seconds, name):
    u = urllib.parse.urlparse(url)
    stop = time.time() + seconds
    stats = {"requests": 0, "tokens": 0, "errors": 0}
    lock = threading.Lock()

    def worker(w):
        k = 0
        while time.time() < stop:
            try:
                n, _, _ = one_request(u.hostname, u.port, w * 100000 + k, max_tokens)
                with lock:
                    stats["requests"] += 1
                    stats["tokens"] += n
            except Exception as e:
                with lock:
                    stats["errors"] += 1
                print(f"error: {e}", file=sys.stderr)
            k += 1

    ths = [threading.Thread(target=worker, args=(w,)) for w in range(conc)]
    t0 = time.time()
    for t in ths:
        t.start()
    print(f"| {name} soak | elapsed s | requests | tokens | errors | server RSS MiB |\n|---|---|---|---|---|---|")
    while any(t.is_alive() for t in ths):
        time.sleep(min(30, max(0.1, stop - time.time() + 1)))
        with lock:
            print(f"| | {time.time() - t0:.0f} | {stats['requests']} | {stats['tokens']} | {stats['errors']} | "
                  f"{rss_mib(p) if p else float('nan'):.1f} |", flush=True)
    for t in ths:
        t.join()


def start(cmd, env, ready_url, log):
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    u = urllib.parse.urlparse(ready_url)
    t0 = time.time()
    while time.time() - t0 < 300:
        if p.poll() is not None:
            raise SystemExit(f"server exited: {' '.join(cmd)}")
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return p
        except OSError:
            pass
        time.sleep(0.2)
    p.kill()
    raise SystemExit("server did not become ready")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--puzzle", nargs=2, metavar=("BIN", "MODEL"), action="append", default=[],
                    help="a `puzzle serve` to start (repeatable: a parent and its child)")
    ap.add_argument("--llama", nargs=2, metavar=("LLAMA_SERVER", "GGUF"))
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--requests", type=int, default=2, help="requests per client per level")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--loadgen", metavar="PATH", help="measure with the C load generator (build/serve_load)")
    ap.add_argument("--timeout", type=float, default=600, help="--loadgen: per-request bound, seconds")
    ap.add_argument("--soak", type=float, default=0,
                    help="instead of levels: the largest level's clients loop for this many seconds; "
                         "errors and the server's resident memory every 30 s are reported")
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "passive"))
    rows = []
    c_tables = []
    servers = []
    if a.url:
        servers.append(("server", None, a.url))
    for binary, model in a.puzzle:
        port = free_port()
        name = "puzzle serve " + os.path.basename(model.rstrip("/"))
        servers.append((name, [binary, "serve", model, "--port", str(port), "--threads", str(a.threads),
                               "--max-seqs", str(max(levels)), "--ctx", "1024"], f"http://127.0.0.1:{port}"))
    if a.llama:
        port = free_port()
        np_ = max(levels)
        servers.append(("llama-server " + os.path.basename(a.llama[1]), [a.llama[0], "-m", a.llama[1], "--port", str(port), "-t", str(a.threads),
                                         "-np", str(np_), "-c", str(1024 * np_), "-cb"],
                        f"http://127.0.0.1:{port}"))
    for name, cmd, url in servers:
        p = None
        log = tempfile.TemporaryFile()
        if cmd:
            p = start(cmd, env, url, log)
        try:
            if a.loadgen:  # the C tool measures; its table goes into the output as it is
                cmd_l = [a.loadgen, "--url", url, "--levels", a.levels, "--requests", str(a.requests),
                         "--max-tokens", str(a.max_tokens), "--label", name, "--timeout", str(a.timeout)]
                if a.soak:
                    cmd_l += ["--soak", str(a.soak)] + (["--pid", str(p.pid)] if p else [])
                r = subprocess.run(cmd_l, stdout=subprocess.PIPE, text=True)
                print(r.stdout, end="", flush=True)
                c_tables.append((r.returncode, r.stdout))
                continue
            one_request(urllib.parse.urlparse(url).hostname, urllib.parse.urlparse(url).port, 999, 8)  # warm-up
            if a.soak:
                soak(url, p, max(levels), a.max_tokens, a.soak, name)
                continue
            for c in levels:
                r = run_level(url, c, a.requests, a.max_tokens)
                r["server"] = name
                rows.append(r)
                print(f"{name} C={c:3d}  {r['tps']:7.1f} tok/s  TTFT p50 {r['ttft50'] * 1e3:7.0f} ms "
                      f"p95 {r['ttft95'] * 1e3:7.0f} ms  ITL p50 {r['itl50'] * 1e3:6.1f} ms "
                      f"p95 {r['itl95'] * 1e3:6.1f} ms  ({r['requests']} requests, {r['tokens']} tokens, "
                      f"{r['errors']} errors)", flush=True)
        finally:
            if p:
                p.terminate()
                p.wait(timeout=120)
    table = ["| server | streams | requests | errors | tokens | wall s | tok/s | × 1 stream | TTFT p50 ms | "
             "TTFT p95 ms | ITL p50 ms | ITL p95 ms |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = next(x for x in rows if x["server"] == r["server"])["tps"]
        table.append(f"| {r['server']} | {r['conc']} | {r['requests']} | {r['errors']} | {r['tokens']} | "
                     f"{r['wall']:.1f} | {r['tps']:.1f} | {r['tps'] / base:.2f} | {r['ttft50'] * 1e3:.0f} | "
                     f"{r['ttft95'] * 1e3:.0f} | {r['itl50'] * 1e3:.1f} | {r['itl95'] * 1e3:.1f} |")
    if a.loadgen:
        if a.out:
            with open(a.out, "a") as f:
                f.write("".join(t for _, t in c_tables))
        return 1 if any(rc for rc, _ in c_tables) else 0
    print("\n".join(table))
    if a.out:
        with open(a.out, "a") as f:
            f.write("\n".join(table) + "\n")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
