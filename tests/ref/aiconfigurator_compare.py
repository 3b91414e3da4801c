#!/usr/bin/env python3
"""Reference data only (never part of the product): NVIDIA aiconfigurator's
single-point estimates ("agg" mode, TensorRT-LLM backend) for the grid of
scripts/aiconfigurator_compare.sh, one JSON object per line on stdout.

Runs offline (HF_HUB_OFFLINE=1) from the model configs and per-GPU operation
tables shipped in the aiconfigurator 0.12.0 wheel.

usage: aiconfigurator_compare.py MODEL SYSTEM TP ISL OSL BATCH[,BATCH...]
"""
import json
import logging
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
logging.disable(logging.WARNING)

from aiconfigurator.cli.api import cli_estimate  # noqa: E402


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    model, system, tp, isl, osl, batches = sys.argv[1:]
    for b in [int(x) for x in batches.split(",") if x]:
        t0 = time.time()
        row = {"model": model, "system": system, "tp": int(tp), "isl": int(isl), "osl": int(osl), "batch": b}
        try:
            r = cli_estimate(model, system, mode="agg", backend_name="trtllm", isl=int(isl), osl=int(osl),
                             batch_size=b, tp_size=int(tp), gemm_quant_mode="fp8_static",
                             kvcache_quant_mode="fp8", fmha_quant_mode="fp8")
            raw = r.raw or {}
            row.update(ttft_ms=float(r.ttft), tpot_ms=float(r.tpot), backend_version=r.backend_version,
                       tokens_s=float(raw.get("tokens/s", float("nan"))),
                       tokens_s_gpu=float(raw.get("tokens/s/gpu", float("nan"))),
                       memory_gb=float(raw.get("memory", float("nan"))),
                       warning=r.kv_cache_warning)
        except Exception as e:  # noqa: BLE001 - reported per row, the grid goes on
            row["error"] = f"{type(e).__name__}: {e}"[:300]
        row["seconds"] = round(time.time() - t0, 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
