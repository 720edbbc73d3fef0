#!/usr/bin/env python3
"""python_pools.py - concurrent.futures' executors on bench_pool's workloads.

bench_pool runs this through python3 and reads its lines back; it can also
run alone. One JSON object per result per line, with bench_pool's keys:
  {"system", "workload", "tasks", "seconds", "ns_per_task", "tasks_per_s",
   "p50_ns", "p99_ns"} plus, where they apply, start_p50_ns, start_p99_ns,
caller_pct, efficiency_pct, spin_p50_ns and detect_p50_ns.

Systems: python-thread-pool (ThreadPoolExecutor) and python-process-pool
(ProcessPoolExecutor, the platform's default start method), each with
--workers workers, created before the timed region and warmed up with a
tenth of the tasks.

Workloads, as in bench_pool.c:
  empty, spin1us, spin100us  submit N tasks, then take each result in
      order. The spins are busy loops calibrated here, the same way as in C:
      a probe loop timed 9 times against the monotonic clock, the median
      taken. spin100us tasks return how long they spun; efficiency is the
      median spin times N over what --workers CPUs do in the wall time.
  latency, latency-hot  one task at a time, ~200 us asleep between tasks
      or back to back; p50/p99 submit-to-result, the note submit-to-start.
  map (processes)  Executor.map(chunksize=64) over empty tasks.
  bytes1MiB (processes)  a 1 MiB bytes argument, a 1 MiB bytes result.
  crash-recovery (processes)  a task segfaults after stamping the time in
      a shared page; a dead worker breaks a ProcessPoolExecutor, so recovery
      is a new one-worker executor and the result of its first task.
Every figure is the median of --runs runs.
"""

import argparse
import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool
import ctypes
import json
import mmap
import os
import struct
import sys
import time

now_ns = time.monotonic_ns  # CLOCK_MONOTONIC, as bench_now_ns() in harness.c

ITERS = {"spin1us": 1, "spin100us": 1}
LAT_WARMUP = 50
LAT_IDLE_S = 200e-6
CHUNK = 64
BYTES_LEN = 1 << 20

# A page shared with every worker forked later: the crash stamp.
STAMP = mmap.mmap(-1, 8)


def spin(iters):
    for _ in range(iters):
        pass


def task_empty(_arg=None):
    return None


def task_spin(iters):
    spin(iters)


def task_spin_timed(iters):
    t0 = now_ns()
    spin(iters)
    return now_ns() - t0


def task_stamp(_arg=None):
    return now_ns()


def task_copy(data):
    return bytes(data)


def task_crash(_arg=None):
    # No core file; then a real segfault, not a signal sent by hand.
    try:
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    except (OSError, AttributeError):
        pass
    STAMP.seek(0)
    STAMP.write(struct.pack("q", now_ns()))
    ctypes.string_at(0)


def median(v):
    v = sorted(v)
    return v[len(v) // 2]  # the upper middle: a figure a run produced


def percentile(sorted_v, pct):
    rank = (len(sorted_v) * pct + 99) // 100
    return sorted_v[rank - 1 if rank else 0]


def spin_median(iters, reps, trials):
    t = []
    for _ in range(trials):
        t0 = now_ns()
        for _ in range(reps):
            spin(iters)
        t.append((now_ns() - t0) / reps)
    return median(t)


def calibrate():
    probe = 1 << 16
    per_probe = spin_median(probe, 1, 9)
    ITERS["spin1us"] = max(1, round(1000.0 * probe / per_probe))
    ITERS["spin100us"] = max(1, round(100000.0 * probe / per_probe))


def emit(system, workload, tasks, seconds, ns, p50=None, p99=None, **extra):
    out = {
        "system": system,
        "workload": workload,
        "tasks": tasks,
        "seconds": round(seconds, 6),
        "ns_per_task": round(ns, 1),
        "tasks_per_s": round(1e9 / ns) if ns > 0 else 0,
        "p50_ns": None if p50 is None else round(p50),
        "p99_ns": None if p99 is None else round(p99),
    }
    for k, v in extra.items():
        out[k] = round(v, 1)
    print(json.dumps(out, separators=(",", ":")), flush=True)


def make(kind, workers):
    if kind == "thread":
        return cf.ThreadPoolExecutor(max_workers=workers)
    return cf.ProcessPoolExecutor(max_workers=workers)


def batch(ex, fn, arg, n):
    fs = [ex.submit(fn, arg) for _ in range(n)]
    return [f.result() for f in fs]


def bench_throughput(system, kind, name, n, a):
    fn = {"empty": task_empty, "spin1us": task_spin, "spin100us": task_spin_timed}[name]
    arg = ITERS.get(name)
    ns, eff, spins = [], [], []
    with make(kind, a.workers) as ex:
        batch(ex, fn, arg, max(1, n // 10))
        for _ in range(a.runs):
            t0 = now_ns()
            vals = batch(ex, fn, arg, n)
            wall = now_ns() - t0
            ns.append(wall)
            if name == "spin100us":
                s = median(vals)
                spins.append(s)
                eff.append(100.0 * s * n / a.workers / wall)
    wall = median(ns)
    extra = {}
    if eff:
        extra = {"efficiency_pct": median(eff), "spin_p50_ns": median(spins)}
    emit(system, name, n, wall / 1e9, wall / n, **extra)


def bench_latency(system, kind, hot, a):
    n = a.latency_samples
    mean, p50, p99, s50, s99, wall = [], [], [], [], [], []
    with make(kind, a.workers) as ex:
        for _ in range(a.runs):
            res, start = [], []
            t_run = now_ns()
            for i in range(n + LAT_WARMUP):
                if not hot:
                    time.sleep(LAT_IDLE_S)
                t0 = now_ns()
                st = ex.submit(task_stamp).result()
                t1 = now_ns()
                if i >= LAT_WARMUP:
                    res.append(t1 - t0)
                    start.append(st - t0)
            wall.append(now_ns() - t_run)
            mean.append(sum(res) / n)
            res.sort()
            start.sort()
            p50.append(percentile(res, 50))
            p99.append(percentile(res, 99))
            s50.append(percentile(start, 50))
            s99.append(percentile(start, 99))
    emit(system, "latency-hot" if hot else "latency", n, median(wall) / 1e9, median(mean),
         median(p50), median(p99), start_p50_ns=median(s50), start_p99_ns=median(s99),
         caller_pct=0.0)


def bench_map(system, a):
    n = a.map_tasks
    args = [None] * n
    ns = []
    with make("process", a.workers) as ex:
        list(ex.map(task_empty, args[: max(1, n // 10)], chunksize=CHUNK))
        for _ in range(a.runs):
            t0 = now_ns()
            list(ex.map(task_empty, args, chunksize=CHUNK))
            ns.append(now_ns() - t0)
    wall = median(ns)
    emit(system, "map", n, wall / 1e9, wall / n)


def bench_bytes(system, a):
    n = a.bytes_samples
    data = bytes((i * 31) & 0xFF for i in range(256)) * (BYTES_LEN // 256)
    mean, p50, p99, wall = [], [], [], []
    with make("process", a.workers) as ex:
        for _ in range(a.runs):
            rt = []
            t_run = now_ns()
            for i in range(n + LAT_WARMUP // 5):
                t0 = now_ns()
                out = ex.submit(task_copy, data).result()
                t1 = now_ns()
                if len(out) != BYTES_LEN or out[-64:] != data[-64:]:
                    sys.exit("python_pools.py: bytes1MiB: bad result")
                if i >= LAT_WARMUP // 5:
                    rt.append(t1 - t0)
            wall.append(now_ns() - t_run)
            mean.append(sum(rt) / n)
            rt.sort()
            p50.append(percentile(rt, 50))
            p99.append(percentile(rt, 99))
    emit(system, "bytes1MiB", n, median(wall) / 1e9, median(mean), median(p50), median(p99))


def bench_crash(system, a):
    n = a.crash_samples
    mean, p50, p99, d50, wall = [], [], [], [], []
    for _ in range(a.runs):
        rec, det = [], []
        t_run = now_ns()
        for _ in range(n):
            STAMP.seek(0)
            STAMP.write(struct.pack("q", 0))
            ex = make("process", 1)
            try:
                ex.submit(task_crash).result()
                sys.exit("python_pools.py: the crashing task returned")
            except BrokenProcessPool:
                t_fail = now_ns()
            ex.shutdown(wait=True)
            with make("process", 1) as ex:
                ex.submit(task_empty).result()
                t_next = now_ns()
            STAMP.seek(0)
            (stamp,) = struct.unpack("q", STAMP.read(8))
            if not stamp:
                sys.exit("python_pools.py: the crash left no stamp")
            rec.append(t_next - stamp)
            det.append(t_fail - stamp)
        wall.append(now_ns() - t_run)
        mean.append(sum(rec) / n)
        rec.sort()
        det.sort()
        p50.append(percentile(rec, 50))
        p99.append(percentile(rec, 99))
        d50.append(percentile(det, 50))
    emit(system, "crash-recovery", n, median(wall) / 1e9, median(mean), median(p50), median(p99),
         detect_p50_ns=median(d50))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--latency-samples", type=int, default=2000)
    ap.add_argument("--map-tasks", type=int, default=20000)
    ap.add_argument("--bytes-samples", type=int, default=200)
    ap.add_argument("--crash-samples", type=int, default=5)
    ap.add_argument("--tasks", action="append", default=[],
                    help="WORKLOAD=THREADS,PROCESSES task counts (empty, spin1us, spin100us)")
    ap.add_argument("--only", choices=["python-thread-pool", "python-process-pool"])
    ap.add_argument("--workload")
    a = ap.parse_args()
    a.counts = {"empty": (20000, 4000), "spin1us": (20000, 4000), "spin100us": (2000, 2000)}
    for t in a.tasks:
        name, _, nums = t.partition("=")
        th, _, pr = nums.partition(",")
        a.counts[name] = (int(th), int(pr))
    return a


def main():
    a = parse_args()
    calibrate()
    systems = [("python-thread-pool", "thread", 0), ("python-process-pool", "process", 1)]
    systems = [s for s in systems if not a.only or a.only == s[0]]

    def want(w):
        return not a.workload or a.workload == w

    for name in ("empty", "spin1us", "spin100us"):
        if want(name):
            for system, kind, idx in systems:
                bench_throughput(system, kind, name, a.counts[name][idx], a)
    for hot in (False, True):
        if want("latency-hot" if hot else "latency"):
            for system, kind, _ in systems:
                bench_latency(system, kind, hot, a)
    if any(s[1] == "process" for s in systems):
        if want("map"):
            bench_map("python-process-pool", a)
        if want("bytes1MiB"):
            bench_bytes("python-process-pool", a)
        if want("crash-recovery"):
            bench_crash("python-process-pool", a)


if __name__ == "__main__":
    main()
