#!/usr/bin/env python3
"""Markdown tables from the load generator's JSON (results/loadgen/*.json).

    python3 benches/loadgen_table.py [results/loadgen]

One row per workload (and per feed rate for `sweep`, per mode for a paired
trades workload): median of the runs with min-max, as written into
BENCHMARKS.md. A paired workload (`trades`) also gets its side-by-side
table: quotes only against with trades, medians, and their ratio.
"""
import json
import pathlib
import sys

ROWS = [
    ("connects_per_sec", "handshakes/s", "{:,.0f}"),
    ("updates_per_sec", "delivered updates/s", "{:,.0f}"),
    ("frames_per_sec", "frames/s", "{:,.0f}"),
    ("updates_per_frame", "updates/frame", "{:.1f}"),
    ("delivered_share", "delivered/offered", "{:.3f}"),
    ("latency_p50_ms", "p50 ms", "{:.2f}"),
    ("latency_p99_ms", "p99 ms", "{:.2f}"),
    ("latency_p999_ms", "p99.9 ms", "{:.2f}"),
    ("latency_max_ms", "max ms", "{:.2f}"),
    ("built_p50_ms", "gateway side: p50 age at frame build, ms (≤, bucket bound)", "{:g}"),
    ("built_p99_ms", "gateway side: p99 age at frame build, ms (≤, bucket bound)", "{:g}"),
    ("gw_cpu_share", "gateway CPU (cores)", "{:.2f}"),
    ("gw_cpu_us_per_update", "gateway µs CPU/update", "{:.3f}"),
    ("gw_cpu_us_per_frame", "gateway µs CPU/frame", "{:.2f}"),
    ("gw_user_us_per_frame", "… of it in user space", "{:.2f}"),
    ("gw_kernel_us_per_frame", "… of it in the kernel", "{:.2f}"),
    ("gw_rss_kib_growth", "gateway RSS growth in window (KiB)", "{:,.0f}"),
    ("loadgen_cpu_share", "load generator CPU (cores)", "{:.2f}"),
    ("raw_writes_per_sec", "raw: 100 B writes/s", "{:,.0f}"),
    ("raw_cpu_us_per_write", "raw: µs CPU/write", "{:.2f}"),
    ("raw_batched_msgs_per_sec", "raw: msgs/s, gateway's msgs per write", "{:,.0f}"),
    ("frames_vs_raw_writes", "gateway frames/s ÷ raw writes/s", "{:.2f}"),
    ("updates_vs_raw_batched", "gateway updates/s ÷ raw msgs/s", "{:.2f}"),
    ("raw_paced_round_ms", "raw paced: ms to write every socket once", "{:.2f}"),
    ("raw_paced_receipt_p99_ms", "raw paced at receipt (same reader): p99 ms", "{:.2f}"),
    ("raw_paced_cpu_us_per_write", "raw paced: µs CPU/write", "{:.2f}"),
    ("floor_cost_us", "one-core floor: µs per write used", "{:.2f}"),
    ("floor_p50_ms", "one-core floor: p50 ms", "{:.2f}"),
    ("floor_p99_ms", "one-core floor: p99 ms", "{:.2f}"),
    ("p99_vs_floor", "gateway p99 ÷ floor p99", "{:.2f}"),
    ("msgs_per_sec", "delivered msgs/s (quotes + trades + drops)", "{:,.0f}"),
    ("gw_cpu_us_per_msg", "gateway µs CPU/delivered msg", "{:.3f}"),
    ("gw_rss_kib_max", "gateway RSS max (KiB)", "{:,.0f}"),
    ("trades_offered_per_sec", "trades offered/s", "{:,.0f}"),
    ("trades_per_sec", "trades delivered/s", "{:,.0f}"),
    ("trade_delivered_share", "trades delivered/offered", "{:.3f}"),
    ("gw_cpu_us_per_trade", "gateway µs CPU/trade (all CPU ÷ trades)", "{:.3f}"),
    ("trade_age_p50_ms", "trade age p50 ms", "{:.2f}"),
    ("trade_age_p99_ms", "trade age p99 ms", "{:.2f}"),
    ("trade_age_p999_ms", "trade age p99.9 ms", "{:.2f}"),
    ("trades_dropped_per_sec", "trades dropped/s", "{:,.0f}"),
    ("trade_seq_gaps", "trade seq gaps (must be 0)", "{:.0f}"),
    ("trade_disorder", "trade seq disorder (must be 0)", "{:.0f}"),
    ("gw_trades_in_per_sec", "gateway: trades in/s", "{:,.0f}"),
    ("gw_trades_out_per_sec", "gateway: trades out/s", "{:,.0f}"),
]

# Shown even when zero: a zero is the finding.
ALWAYS = {"trades_dropped_per_sec", "trade_seq_gaps", "trade_disorder"}


def cell(stat, fmt):
    if not stat:
        return "–"
    med, lo, hi = stat["median"], stat["min"], stat["max"]
    return f"{fmt.format(med)} ({fmt.format(lo)}–{fmt.format(hi)})"


def num(v):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "results/loadgen")
    for path in sorted(root.glob("*.json")):
        doc = json.loads(path.read_text())
        w = doc["workload"]
        for res in w["results"]:
            s = res["summary"]
            runs = len(res["runs"])
            mode = f", mode {res['mode']}" if res.get("mode") else ""
            print(f"\n#### {w['workload']}{mode}: {w['clients']:,} clients × {w['symbols_per_client']} symbols, {res['feed']} ({runs} runs, {doc['date']})\n")
            print("| figure | median (min–max) |")
            print("| --- | ---: |")
            for key, label, fmt in ROWS:
                st = s.get(key)
                if st and (st["max"] != 0 or st["min"] != 0 or key in ALWAYS):
                    print(f"| {label} | {cell(s[key], fmt)} |")
        for comp in w.get("comparison", []):
            print(f"\n#### {w['workload']}: quotes only vs with trades, {comp['feed']} (medians, {doc['date']})\n")
            print("| figure | quotes only | with trades | ratio |")
            print("| --- | ---: | ---: | ---: |")
            for row in comp["figures"]:
                q, t = row["quotes"], row["trades"]
                ratio = f"{t / q:.2f}×" if q and t is not None else ""
                print(f"| {row['label']} | {num(q)} | {num(t)} | {ratio} |")
        if w.get("trade_seq_errors"):
            print(f"\n**ERROR: {w['trade_seq_errors']} trade seq gaps/disorder in {w['workload']}**")


if __name__ == "__main__":
    main()
