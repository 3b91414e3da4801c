#!/usr/bin/env python3
"""Black-box checks of `puzzle serve` (run by tests/test_serve*.sh).

Starts the real binary on loopback (--port 0, the port read from its first
line), then checks: chat and completions at temperature 0 equal `puzzle
generate`; streaming equals the whole response; a request's output is the
same alone and among 31 concurrent others, and when its prompt shares an
engine call with another request's decode row; n=4 with a seed reproduces;
a prompt whose prefix is cached gives the same tokens and log-probabilities
and the prefix-hit counter rises; malformed and hostile requests (JSON,
HTTP, raw sockets) get the right status and the server stays up; a client
that disconnects mid-stream frees its sequence; a full queue answers 503
with Retry-After; an official OpenAI client works (when PUZZLE_PYTHON has
the `openai` package); SIGTERM under load drains and exits 0.
Standard library only. Prints "N passed, N failed"; exit status 1 on failure.

usage: serve_check.py BIN MODEL [--ctx N] [--tokens N] [--openai PYTHON]
"""
import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

KEY = "sk-test-" + uuid.uuid4().hex[:12]
passed = failed = 0


T0 = time.time()


def section(name):
    if os.environ.get("SERVE_CHECK_TIMES"):
        print(f"[{time.time() - T0:6.1f}s] {name}", file=sys.stderr)


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {name} {detail}"[:2000], file=sys.stderr)


STARTED = []  # every server this script starts, killed at exit whatever happens


def kill_servers():
    for p in STARTED:
        if p.poll() is None:
            p.kill()
            p.wait()


class Server:
    def __init__(self, binary, model, extra):
        self.err = open(os.path.join(TMP, "server.err"), "w+")
        self.p = subprocess.Popen([binary, "serve", model, "--port", "0"] + extra,
                                  stdout=subprocess.DEVNULL, stderr=self.err)
        STARTED.append(self.p)
        self.port = None
        t0 = time.time()
        while time.time() - t0 < 60 and self.port is None:
            self.err.seek(0)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.err.read())
            if m:
                self.port = int(m.group(1))
            elif self.p.poll() is not None:
                break
            else:
                time.sleep(0.02)
        if self.port is None:
            self.err.seek(0)
            raise SystemExit("server did not start: " + self.err.read())

    def log(self):
        self.err.seek(0)
        return self.err.read()


def request(method, path, body=None, headers=None, key=True, timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", SRV.port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = "Bearer " + KEY
    h.update(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def post(path, body, **kw):
    st, h, data = request("POST", path, body, **kw)
    try:
        return st, h, json.loads(data)
    except ValueError:
        return st, h, data


def stream(path, body):
    """Returns (status, list of parsed events, saw [DONE])."""
    c = http.client.HTTPConnection("127.0.0.1", SRV.port, timeout=120)
    c.request("POST", path, body=json.dumps(body),
              headers={"Content-Type": "application/json", "Authorization": "Bearer " + KEY})
    r = c.getresponse()
    raw = r.read().decode("utf-8")
    c.close()
    events, done = [], False
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        payload = block[6:]
        if payload == "[DONE]":
            done = True
        else:
            events.append(json.loads(payload))
    return r.status, events, done


def metrics():
    st, _, data = request("GET", "/metrics", key=False)
    out = {}
    for line in data.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def strip_bad(s):
    return s.replace("\ufffd", "")


def generate(args, prompt, n, chat):
    cmd = [args.bin, "generate", args.model, "-p", prompt, "-n", str(n), "--threads", "2"]
    if chat:
        cmd.append("--chat")
    out = subprocess.run(cmd, capture_output=True, timeout=300).stdout
    assert out.endswith(b"\n")
    return out[:-1].decode("utf-8", "replace")


def raw_exchange(data, wait=2.0, read=True):
    """Sends raw bytes; returns the status code of the reply (0: none / closed)."""
    s = socket.create_connection(("127.0.0.1", SRV.port), timeout=wait)
    try:
        s.sendall(data)
        if not read:
            return 0
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
        return int(m.group(1)) if m else 0
    except (socket.timeout, ConnectionResetError):
        return 0
    finally:
        s.close()


def preemption_check(args):
    """A KV pool far smaller than the load: requests are preempted and resumed
    (recomputed from the prefix cache) and all finish; nothing leaks."""
    global SRV
    SRV = Server(args.bin, args.model, ["--threads", "2", "--max-seqs", "8", "--ctx", str(args.ctx),
                                        "--kv-tokens", "400", "--queue", "16", "--api-key", KEY])
    t0 = time.time()
    while request("GET", "/health", key=False)[0] != 200 and time.time() - t0 < 60:
        time.sleep(0.05)
    n = args.ctx // 2
    res = [None] * 8

    def go(i):
        res[i] = post("/v1/completions", {"prompt": f"Preempt {i}:", "max_tokens": n, "temperature": 0,
                                          "stop": "\x01"})

    ths = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    m = metrics()
    check("preemption: all 200", all(r[0] == 200 for r in res), [r[0] for r in res])
    check("preemption happened", m["puzzle_preemptions_total"] > 0, m["puzzle_preemptions_total"])
    check("preemption: every request completes", all(r[0] == 200 and r[2]["usage"]["completion_tokens"] == n or
                                                      r[2]["choices"][0]["finish_reason"] == "stop" for r in res),
          [r[2]["usage"] for r in res])
    check("preemption: pool back to free", m["puzzle_kv_pages_used"] == 0 and m["puzzle_running_sequences"] == 0,
          (m["puzzle_kv_pages_used"], m["puzzle_running_sequences"]))
    SRV.p.send_signal(signal.SIGTERM)
    check("preemption server exits 0", SRV.p.wait(timeout=60) == 0)


def main():
    global SRV, TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("model")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--flood-tokens", type=int, default=0,
                    help="max_tokens of the queue-full flood (default 4 x --tokens)")
    ap.add_argument("--openai", default="")
    ap.add_argument("--tmp", default="/tmp")
    ap.add_argument("--preempt", action="store_true", help="also run a server with a tiny KV pool")
    args = ap.parse_args()
    TMP = args.tmp
    if args.preempt:
        section("preemption")
        preemption_check(args)
    T = args.tokens
    SRV = Server(args.bin, args.model, ["--threads", "2", "--max-seqs", "32", "--ctx", str(args.ctx),
                                        "--queue", "4", "--timeout", "2", "--api-key", KEY,
                                        "--drain", "60"])
    # /health: 503 while loading (when we are quick enough to see it), then 200
    seen = []
    t0 = time.time()
    while time.time() - t0 < 120 and 200 not in seen:
        seen.append(request("GET", "/health", key=False)[0])
        time.sleep(0.05)
    check("health: 503 while loading, then 200", seen[-1] == 200 and set(seen[:-1]) <= {503}, str(seen))
    st, _, data = request("GET", "/v1/models")
    check("models", st == 200 and json.loads(data)["data"][0]["object"] == "model", data)

    section("generate")
    # --- temperature 0 equals `puzzle generate` (chat template and plain completion)
    q = "What is the capital of France?"
    st, _, r = post("/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": q}],
                                             "max_tokens": T, "temperature": 0})
    ref = generate(args, q, T, True)
    text = r["choices"][0]["message"]["content"] if st == 200 else None
    check("chat 200", st == 200, r)
    check("chat equals puzzle generate --chat", text is not None and strip_bad(text) == strip_bad(ref),
          f"{text!r} vs {ref!r}")
    check("chat usage", st == 200 and r["usage"]["completion_tokens"] <= T and r["usage"]["prompt_tokens"] > 10
          and r["usage"]["total_tokens"] == r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"], r)
    check("chat finish_reason", st == 200 and r["choices"][0]["finish_reason"] in ("stop", "length"), r)
    p = "Once upon a time"
    st, _, r = post("/v1/completions", {"prompt": p, "max_tokens": T, "temperature": 0})
    ref = generate(args, p, T, False)
    ctext = r["choices"][0]["text"] if st == 200 else None
    check("completion equals puzzle generate", ctext is not None and strip_bad(ctext) == strip_bad(ref),
          f"{ctext!r} vs {ref!r}")
    check("completion object", st == 200 and r["object"] == "text_completion", r)

    section("stream")
    # --- streaming: the deltas add up to the whole response; usage chunk; [DONE]
    st, ev, done = stream("/v1/completions", {"prompt": p, "max_tokens": T, "temperature": 0, "stream": True,
                                              "stream_options": {"include_usage": True}})
    stext = "".join(e["choices"][0]["text"] for e in ev if e["choices"])
    check("completion stream equals non-stream", st == 200 and done and stext == ctext, f"{stext!r} {ctext!r}")
    check("stream usage chunk", ev and ev[-1]["choices"] == [] and ev[-1]["usage"]["completion_tokens"] > 0, ev[-1:])
    st, ev, done = stream("/v1/chat/completions", {"messages": [{"role": "user", "content": q}],
                                                   "max_tokens": T, "temperature": 0, "stream": True})
    deltas = [e["choices"][0]["delta"] for e in ev]
    check("chat stream role first", deltas and deltas[0].get("role") == "assistant", deltas[:1])
    check("chat stream equals non-stream", done and "".join(d.get("content", "") for d in deltas) == text)
    check("chat stream finish", ev and ev[-1]["choices"][0]["finish_reason"] in ("stop", "length"))

    section("alone")
    # --- alone vs among 31 concurrent others (batch-invariant decode). The
    # prompt is shorter than a KV page, so the repeat is not served from the
    # prefix cache: only the batch differs.
    body = {"messages": [{"role": "user", "content": "Tell me about the moon."}], "max_tokens": T,
            "temperature": 0}
    st, _, alone = post("/v1/chat/completions", body)
    cbody = {"prompt": "The moon is", "max_tokens": T, "temperature": 0, "logprobs": 3}
    st2, _, calone = post("/v1/completions", cbody)
    results = [None] * 32

    def worker(i):
        if i == 9:
            results[i] = post("/v1/completions", cbody)
            return
        b = dict(body) if i == 7 else {"messages": [{"role": "user", "content": f"Write item {i} of a list."}],
                                       "max_tokens": T, "temperature": 0}
        results[i] = post("/v1/chat/completions", b)

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    check("32 concurrent all 200", all(r and r[0] == 200 for r in results), [r[0] for r in results if r])
    mine = results[7][2]
    check("alone == among 31 others (text)", st == 200 and
          mine["choices"][0]["message"]["content"] == alone["choices"][0]["message"]["content"])
    cmine = results[9][2]
    check("alone == among 31 others (completion text and logprobs)", st2 == 200 and
          cmine["choices"][0]["text"] == calone["choices"][0]["text"] and
          cmine["choices"][0]["logprobs"] == calone["choices"][0]["logprobs"],
          (calone["choices"][0]["logprobs"]["token_logprobs"], cmine["choices"][0]["logprobs"]["token_logprobs"]))

    section("mixed")
    # --- a prompt that arrives while another request decodes is prefilled in the same
    # engine call as that decode row (pz_engine_mixed_steps; the 32 above mostly arrive
    # together): both answers equal their runs alone, and /metrics counts the mixed call.
    L = args.ctx // 2
    lbody = {"prompt": "Count slowly:", "max_tokens": L, "temperature": 0, "stop": "\x01"}
    st3, _, lalone = post("/v1/completions", lbody)
    key = 'puzzle_engine_steps_total{kind="mixed"}'
    mixed_ok = same = False
    for attempt in range(3):  # the long one may (rarely) finish before the second arrives
        m0 = metrics()
        res = {}
        th = threading.Thread(target=lambda: res.update(a=post("/v1/completions", lbody)))
        th.start()
        t0 = time.time()
        while metrics()["puzzle_generation_tokens_total"] < m0["puzzle_generation_tokens_total"] + 2 and \
                time.time() - t0 < 30:
            time.sleep(0.002)
        res["b"] = post("/v1/chat/completions", body)
        th.join()
        m1 = metrics()
        mixed_ok = m1[key] > m0[key]
        same = (st3 == 200 and res["a"][0] == 200 and res["b"][0] == 200 and
                res["a"][2]["choices"][0]["text"] == lalone["choices"][0]["text"] and
                res["b"][2]["choices"][0]["message"]["content"] == alone["choices"][0]["message"]["content"])
        if mixed_ok or not same:
            break
    check("mixed step: decode rows and a prompt in one engine call", mixed_ok, (m0.get(key), m1.get(key)))
    check("mixed step: both answers equal their runs alone", same)
    check("engine step metrics", all(f'puzzle_engine_{n}{{kind="{k}"}}' in m1
                                     for n in ("steps_total", "step_rows_total", "step_seconds_total")
                                     for k in ("decode", "prefill", "mixed")) and
          m1['puzzle_engine_step_rows_total{kind="decode"}'] >= m1['puzzle_engine_steps_total{kind="decode"}'] > 0)

    section("n4")
    # --- n = 4 with a seed is reproducible; choices are independent samples
    nb = {"prompt": "The weather today", "max_tokens": T, "temperature": 0.9, "top_p": 0.95, "seed": 1234, "n": 4}
    st1, _, a = post("/v1/completions", nb)
    st2, _, b = post("/v1/completions", nb)
    ta = [c["text"] for c in a["choices"]] if st1 == 200 else []
    tb = [c["text"] for c in b["choices"]] if st2 == 200 else []
    check("n=4 returns 4 choices", len(ta) == 4 and [c["index"] for c in a["choices"]] == [0, 1, 2, 3], a)
    check("n=4 seeded reproducible", ta == tb, f"{ta} {tb}")
    check("n=4 choices differ", len(set(ta)) > 1, ta)
    st, ev, done = stream("/v1/completions", dict(nb, stream=True))
    per = ["", "", "", ""]
    for e in ev:
        for c in e["choices"]:
            per[c["index"]] += c["text"]
    check("n=4 streamed equals non-stream", done and per == ta, f"{per} {ta}")

    section("stop")
    # --- stop strings: cut before the stop text, never emitted, finish "stop"
    # (on choice 0 of the seeded request above: n=1 with that seed samples the same)
    full = ta[0] if ta else ""
    if len(full) > 6:
        stop = full[3:6]
        sb = {"prompt": "The weather today", "max_tokens": T, "temperature": 0.9, "top_p": 0.95, "seed": 1234,
              "stop": [stop]}
        st, _, r = post("/v1/completions", sb)
        t2 = r["choices"][0]["text"] if st == 200 else ""
        check("stop string", st == 200 and t2 == full[:full.find(stop)] and
              r["choices"][0]["finish_reason"] == "stop", f"{t2!r} stop={stop!r} full={full!r}")
        st, ev, done = stream("/v1/completions", dict(sb, stop=stop, stream=True))
        t3 = "".join(e["choices"][0]["text"] for e in ev)
        check("stop string streamed", done and t3 == t2, f"{t3!r} vs {t2!r}")
    else:
        check("seeded sample long enough for the stop test", False, repr(full))

    section("prefix")
    # --- prefix reuse: same tokens and logprobs as a cold prefill; hit counter rises
    nonce = uuid.uuid4().hex[:8]
    long_prompt = (f"[{nonce}] The history of the city begins with a small settlement on the river. "
                   "Over the centuries, merchants and craftsmen built houses, markets and churches, "
                   "and the town grew into a centre of trade for the whole region. ") * 2
    pb = {"prompt": long_prompt, "max_tokens": 8, "temperature": 0, "logprobs": 5}
    h0 = metrics().get("puzzle_prefix_cache_hits_total", 0)
    st1, _, cold = post("/v1/completions", pb)
    h1 = metrics().get("puzzle_prefix_cache_hits_total", 0)
    st2, _, warm = post("/v1/completions", pb)
    h2 = metrics().get("puzzle_prefix_cache_hits_total", 0)
    check("cold prefill has no hit", st1 == 200 and h1 == h0, (h0, h1))
    check("prefix hit counter rises", st2 == 200 and h2 >= h1 + 2, (h1, h2))
    check("prefix reuse: same text", st2 == 200 and warm["choices"][0]["text"] == cold["choices"][0]["text"])
    # The server's engine is batch-invariant (runtime/engine.h): prefill
    # products run in fixed blocks of rows, so the warm prefill (fewer rows)
    # reproduces the cold one bit for bit, and so does everything after it.
    lc, lw = cold["choices"][0]["logprobs"], warm["choices"][0]["logprobs"]
    check("prefix reuse: identical logprobs and top logprobs", st2 == 200 and lc == lw,
          (lc["token_logprobs"], lw["token_logprobs"]))
    # --- a partial page: a prompt that parts from the long one inside its second page (after
    # ~17-28 tokens) attaches the first page and a copy of the shared part of the second,
    # and still equals `puzzle generate`
    cut = long_prompt.index("river.") + len("river.")
    branch = long_prompt[:cut] + " Then the railway came, and the old bridge was torn down."
    k1 = metrics().get("puzzle_prefix_cache_hit_tokens_total", 0)
    st3, _, part = post("/v1/completions", {"prompt": branch, "max_tokens": 8, "temperature": 0})
    k2 = metrics().get("puzzle_prefix_cache_hit_tokens_total", 0)
    check("partial page: hit tokens past the first page, inside the second", 16 < k2 - k1 < 32, (k1, k2))
    ref = generate(args, branch, 8, False)
    ptext = part["choices"][0]["text"] if st3 == 200 else None
    check("partial page: equals puzzle generate", ptext is not None and strip_bad(ptext) == strip_bad(ref),
          f"{ptext!r} vs {ref!r}")

    section("bad")
    # --- bad input: every one answered with the right status, the server stays up
    big_prompt = "hello " * (args.ctx * 2)
    cases = [
        ("POST", "/v1/chat/completions", "{", 400),
        ("POST", "/v1/chat/completions", "", 400),
        ("POST", "/v1/chat/completions", "null", 400),
        ("POST", "/v1/chat/completions", "[1,2]", 400),
        ("POST", "/v1/chat/completions", '"text"', 400),
        ("POST", "/v1/chat/completions", {}, 400),
        ("POST", "/v1/chat/completions", {"messages": "hi"}, 400),
        ("POST", "/v1/chat/completions", {"messages": []}, 400),
        ("POST", "/v1/chat/completions", {"messages": [1]}, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user"}]}, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": 1, "content": "x"}]}, 400),
        ("POST", "/v1/completions", {}, 400),
        ("POST", "/v1/completions", {"prompt": 5}, 400),
        ("POST", "/v1/completions", {"prompt": []}, 400),
        ("POST", "/v1/completions", {"prompt": [1, -1]}, 400),
        ("POST", "/v1/completions", {"prompt": [1, 10 ** 9]}, 400),
        ("POST", "/v1/completions", {"prompt": [1.5]}, 400),
        ("POST", "/v1/completions", {"prompt": ["a", "b"]}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "max_tokens": 0}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "max_tokens": -5}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "max_tokens": "10"}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2.5}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "max_tokens": args.ctx}, 400),
        ("POST", "/v1/completions", {"prompt": big_prompt, "max_tokens": 1}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "temperature": 3}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "temperature": "hot"}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "top_p": 0}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "top_p": 1.5}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "n": 0}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "n": 9}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "seed": "abc"}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "stop": 7}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "stop": ["a", 1]}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "stream": "yes"}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "stream_options": {"include_usage": True}}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "logprobs": 6}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "logprobs": True}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "echo": True}, 400),
        ("POST", "/v1/completions", {"prompt": "x", "frequency_penalty": 1}, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "logprobs": 1}, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "logprobs": True,
                                          "top_logprobs": 21}, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "model": 3}, 400),
        ("POST", "/v1/chat/completions", "[" * 5000 + "]" * 5000, 400),
        ("POST", "/v1/chat/completions", b'{"messages":[{"role":"user","content":"\xff\xfe"}],"max_tokens":2}', 200),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 200}],
                                          "max_tokens": 1, "temperature": 0}, 200),
        ("GET", "/v1/chat/completions", None, 405),
        ("PUT", "/v1/completions", {}, 405),
        ("DELETE", "/v1/models", None, 405),
        ("POST", "/health", {}, 405),
        ("GET", "/v2/whatever", None, 404),
        ("GET", "/", None, 404),
        ("GET", "/v1/models/../../etc/passwd", None, 404),
    ]
    for i, (m, path, body, want) in enumerate(cases):
        st, _, data = request(m, path, body)
        ok = st == want
        if ok and want >= 400 and m != "HEAD":
            try:
                e = json.loads(data)["error"]
                ok = set(e) == {"message", "type", "param", "code"} and isinstance(e["message"], str)
            except Exception:
                ok = False
        check(f"bad input #{i} {m} {path} -> {want}", ok, f"got {st} {data[:200]!r}")
    st, _, _ = request("GET", "/v1/models", key=False)
    check("missing key 401", st == 401, st)
    st, _, _ = request("POST", "/v1/completions", {"prompt": "x"}, key=False,
                       headers={"Authorization": "Bearer wrong"})
    check("wrong key 401", st == 401, st)
    st, _, _ = request("POST", "/v1/completions", {"prompt": "x"}, key=False, headers={"Authorization": KEY})
    check("key without Bearer 401", st == 401, st)
    st, _, _ = request("GET", "/metrics", key=False)
    check("metrics open without key", st == 200, st)
    # raw HTTP: garbage, truncated, oversize headers, huge declared body, slow clients
    check("garbage request line", raw_exchange(b"HELLO\r\n\r\n") in (400, 0))
    check("bad HTTP version", raw_exchange(b"GET /health HTTP/9.9\r\n\r\n") in (505, 400))
    check("missing Host on HTTP/1.1", raw_exchange(b"GET /health HTTP/1.1\r\n\r\n") == 400)
    check("oversize header", raw_exchange(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 100000 +
                                          b"\r\n\r\n", wait=5) in (413, 431, 400, 0))
    check("declared 1 GiB body -> 413", raw_exchange(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
        b"\r\nContent-Length: 1073741824\r\n\r\n{") == 413)
    s = socket.create_connection(("127.0.0.1", SRV.port), timeout=10)  # 2 MiB chunked: read, dropped, 413
    try:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(32):
            s.sendall(b"10000\r\n" + b"x" * 65536 + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        m = re.match(rb"HTTP/1\.1 (\d{3})", s.recv(4096))
        st = int(m.group(1)) if m else 0
    except OSError as e:
        st = str(e)
    s.close()
    check("2 MiB chunked body -> 413", st == 413, st)
    check("bad chunked encoding", raw_exchange(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", wait=4) in (400, 0))
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", SRV.port), timeout=10)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro")
    try:
        closed = s.recv(100) is not None
    except (socket.timeout, ConnectionResetError):
        closed = False
    s.close()
    check("stalled body times out", closed and time.time() - t0 < 8, time.time() - t0)
    s = socket.create_connection(("127.0.0.1", SRV.port), timeout=10)
    s.sendall(b"GET /health HTTP/1.1\r\nHo")
    t0 = time.time()
    try:
        s.recv(100)
        slow_closed = True
    except (socket.timeout, ConnectionResetError):
        slow_closed = False
    s.close()
    check("slow headers time out", slow_closed and time.time() - t0 < 8, time.time() - t0)
    for _ in range(20):  # connect and vanish
        s = socket.create_connection(("127.0.0.1", SRV.port))
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
        s.close()
    st, _, _ = request("GET", "/health", key=False)
    check("alive after hostile input", st == 200, st)

    section("disconnect")
    # --- disconnects free the sequence at once (streaming and not)
    mx = args.ctx - 32
    for streaming in (True, False):
        g0 = metrics()["puzzle_generation_tokens_total"]
        s = socket.create_connection(("127.0.0.1", SRV.port), timeout=30)
        body = json.dumps({"prompt": "Count: 1 2 3", "max_tokens": mx, "temperature": 0.8, "stream": streaming,
                           "stop": "\x01"})
        s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
        if streaming:
            s.recv(10)  # the first bytes (the headers: sent when the job is queued)
        # until the sequence runs
        t0 = time.time()
        while metrics()["puzzle_running_sequences"] == 0 and time.time() - t0 < 10:
            time.sleep(0.01)
        s.close()
        t0 = time.time()
        while metrics()["puzzle_running_sequences"] != 0 and time.time() - t0 < 10:
            time.sleep(0.01)
        freed = time.time() - t0
        g1 = metrics()["puzzle_generation_tokens_total"]
        check(f"disconnect frees the sequence (stream={streaming})",
              metrics()["puzzle_running_sequences"] == 0 and g1 - g0 < mx, f"{freed:.2f}s, {g1 - g0} of {mx} tokens")

    section("queue")
    # --- a full queue answers 503 with Retry-After; the others succeed
    codes = []
    lock = threading.Lock()

    def flood(i):
        st, h, _ = post("/v1/completions", {"prompt": f"Item {i}:", "max_tokens": args.flood_tokens or 4 * T,
                                            "temperature": 0})
        with lock:
            codes.append((st, h.get("Retry-After")))

    ths = [threading.Thread(target=flood, args=(i,)) for i in range(44)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    n503 = [c for c in codes if c[0] == 503]
    check("queue full -> 503", len(n503) >= 1 and all(c[1] for c in n503), codes)
    check("queue full: the rest 200", all(c[0] in (200, 503) for c in codes) and
          sum(c[0] == 200 for c in codes) >= 36, codes)
    m = metrics()
    check("metrics: nothing running after", m["puzzle_running_sequences"] == 0 and m["puzzle_queue_depth"] == 0)
    check("metrics: requests by status", m.get('puzzle_requests_total{status="400"}', 0) >= 40 and
          m.get('puzzle_requests_total{status="503"}', 0) >= 1)
    check("metrics: ttft histogram", m["puzzle_time_to_first_token_seconds_count"] > 0)

    section("openai")
    # --- the official OpenAI client, unchanged
    if args.openai:
        r = subprocess.run([args.openai, os.path.join(os.path.dirname(__file__), "ref", "openai_client_check.py"),
                            f"http://127.0.0.1:{SRV.port}/v1", KEY], capture_output=True, text=True, timeout=120)
        check("openai client", r.returncode == 0, r.stdout + r.stderr)

    section("sigterm")
    # --- SIGTERM under load: running requests finish, new ones are refused, exit 0
    outs = [None] * 6

    def load(i):
        outs[i] = stream("/v1/completions", {"prompt": f"Story {i}:", "max_tokens": T * 2, "temperature": 0.7,
                                             "stream": True})

    ths = [threading.Thread(target=load, args=(i,)) for i in range(6)]
    for t in ths:
        t.start()
    t0 = time.time()
    # every request admitted or queued (on a loaded machine a thread may connect late)
    while True:
        mt = metrics()
        if (mt["puzzle_running_requests"] + mt["puzzle_queue_depth"] >= 6 and mt["puzzle_running_sequences"] >= 3) \
                or time.time() - t0 > 30:
            break
        time.sleep(0.01)
    SRV.p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        st, _, _ = request("GET", "/health", key=False, timeout=5)
        refused = False
    except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
        refused = True
    for t in ths:
        t.join()
    rc = SRV.p.wait(timeout=60)
    check("SIGTERM: new connections refused", refused)
    check("SIGTERM: running requests finished", all(o and o[0] == 200 and o[2] and
                                                    o[1][-1]["choices"][0]["finish_reason"] in ("stop", "length")
                                                    for o in outs), [o and (o[0], o[2]) for o in outs])
    check("SIGTERM: exit 0", rc == 0, rc)
    check("SIGTERM: drained", "drained" in SRV.log(), SRV.log()[-500:])
    print(f"{passed} passed, {failed} failed")
    if failed:
        print(SRV.log()[-3000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_servers()
