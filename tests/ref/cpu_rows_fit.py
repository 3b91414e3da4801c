#!/usr/bin/env python3
"""Reference script (not part of the product): the CPU row factor table
(hardware.h gemm_rows_eff) from measured decode rows.

Reads the "Measured vs predicted, every row" table of results/cpu_profile.md
(SmolLM2-135M variants, bf16, 2 threads, measured on a quiet machine), and
  fit     prints, per row count M, the bf16 product rate implied by every
          FFN/linear row (flops / measured time) as a fraction of the
          calibrated M = 512 rate, and the median: the gemm_rows_eff table.
  db DB   rewrites DB's profiles (a run database of the same parent, e.g. a
          tiny `puzzle build-library` over layer 0) to hold exactly those
          measured rows, so that `puzzle profile --db DB --report HW` runs the
          C cost model against them.
  hw DIR  writes DIR/quiet_flat.json and DIR/quiet_rows.json: the hardware
          file of that calibration (214 GFLOP/s bf16, 30.7 GB/s, 0.6 us/op)
          with the CPU factors (eff_gemm 1, eff_attn 0.25, eff_mem 1),
          without and with the fitted gemm_rows_eff table.
"""
import re
import sqlite3
import statistics
import sys

MD = sys.argv[3] if len(sys.argv) > 3 else "results/cpu_profile.md"
H = 576
PEAK_BF16 = 214e9  # the calibration of the same run (results/cpu_profile.md)


def rows():
    out = []
    on = False
    for line in open(MD):
        if line.startswith("## Measured vs predicted"):
            on = True
            continue
        if on and line.startswith("## "):
            break
        m = re.match(r"\| (LM head|embedding|(attn|ffn) (gqa|linear|swiglu|noop) ?(\d*)) \| (\w+):(\d+)x(\d+) \| "
                     r"([\d.]+) \(([\d.]+)–([\d.]+)\)", line)
        if not on or not m:
            continue
        name = m.group(1)
        if name == "LM head":
            part, kind, size = "head", "head", 0
        elif name == "embedding":
            part, kind, size = "embed", "embed", 0
        else:
            part, kind, size = m.group(2), m.group(3), int(m.group(4) or 0)
        out.append(dict(part=part, kind=kind, size=size, phase=m.group(5), batch=int(m.group(6)),
                        len=int(m.group(7)), ms=float(m.group(8)), p10=float(m.group(9)), p90=float(m.group(10))))
    return out


def fit():
    by_m = {}
    for r in rows():
        if r["kind"] not in ("swiglu", "linear") or r["phase"] != "decode":
            continue
        flops = (6 * H * r["size"] if r["kind"] == "swiglu" else 2 * H * H) * r["batch"]
        rate = flops / (r["ms"] * 1e-3)
        by_m.setdefault(r["batch"], []).append(rate / PEAK_BF16)
    for m in sorted(by_m):
        v = by_m[m]
        print(f"M={m}: median {statistics.median(v):.3f} (n {len(v)}, {min(v):.3f}..{max(v):.3f})")


def db(path):
    con = sqlite3.connect(path)
    dev, dt = con.execute("SELECT device, dtype FROM profiles LIMIT 1").fetchone()
    keep = {(r["part"], r["kind"], r["size"], f"{r['phase']}:{r['batch']}x{r['len']}"): r for r in rows()}
    have = con.execute("SELECT part, kind, size, scenario, param_bytes, kv_bytes_per_token FROM profiles "
                       "WHERE device = ? AND dtype = ?", (dev, dt)).fetchall()
    shapes = {(p, k, s): (pb, kv) for p, k, s, _, pb, kv in have}
    con.execute("DELETE FROM profiles")
    n = 0
    for (p, k, s, sc), r in keep.items():
        if (p, k, s) not in shapes or k == "noop":
            continue
        pb, kv = shapes[(p, k, s)]
        con.execute("INSERT INTO profiles (part, kind, size, scenario, phase, batch, len, device, dtype, median_s, "
                    "p10_s, p90_s, repeats, param_bytes, kv_bytes_per_token, measured) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 21, ?, ?, 1)",
                    (p, k, s, sc, r["phase"], r["batch"], r["len"], dev, dt, r["ms"] * 1e-3, r["p10"] * 1e-3,
                     r["p90"] * 1e-3, pb, kv))
        n += 1
    con.commit()
    print(f"{n} measured rows of {MD} into {path}")


TABLE = [[1, 0.136], [8, 0.306], [16, 0.385], [512, 1]]


def hw(d):
    import json
    import os
    src = {"title": "results/cpu_profile.md calibration", "url": "local-measurement"}
    keys = ["flops_bf16", "flops_fp8", "mem_bandwidth_bytes_per_s", "mem_bytes", "link_bandwidth_bytes_per_s",
            "link_latency_s", "launch_overhead_s"]
    j = {"id": "cpu_quiet", "name": "AMD EPYC, 2 threads, 2026-11-28 calibration", "measured": True,
         "interconnect": "none", "flops_bf16": PEAK_BF16, "flops_f32": 111e9, "flops_fp8": None,
         "mem_bandwidth_bytes_per_s": 30.7e9, "mem_bytes": 25.3e9, "link_bandwidth_bytes_per_s": 30.7e9,
         "link_latency_s": 1e-6, "launch_overhead_s": 0.6e-6, "sources": {k: src for k in keys},
         "cost_params": {"eff_gemm": 1.0, "eff_attn": 0.25, "eff_mem": 1.0}}
    json.dump(j, open(os.path.join(d, "quiet_flat.json"), "w"), indent=1)
    j["cost_params"]["gemm_rows_eff"] = TABLE
    json.dump(j, open(os.path.join(d, "quiet_rows.json"), "w"), indent=1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["fit"]:
        fit()
    elif sys.argv[1:2] == ["db"] and len(sys.argv) >= 3:
        db(sys.argv[2])
    elif sys.argv[1:2] == ["hw"] and len(sys.argv) == 3:
        hw(sys.argv[2])
    else:
        sys.exit(__doc__)
