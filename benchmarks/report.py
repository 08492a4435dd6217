"""Turning the runner's per-process records into figures: medians, ratios against the
targets, the table, the JSON and the chart. No processes are started here."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

from benchmarks.workloads import has_system

LABELS = {"sluice": "sluice", "ray": "Ray", "dask": "Dask", "pyarrow": "pyarrow"}
PEERS = ("ray", "dask", "pyarrow")  # what sluice's time is divided by
TARGET_VS_DASK = 1.0  # every workload faster than Dask (a module's own TARGET_VS_DASK overrides)
DISTRIBUTIONS = {"sluice": "sluice", "numpy": "numpy", "ray": "ray", "dask": "dask",
                 "distributed": "distributed", "pyarrow": "pyarrow", "numba": "numba"}


def machine_info(systems: list[str]) -> dict:
    """What the figures depend on: the machine, its load, and every version involved."""
    info = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": list(os.getloadavg()),
        "versions": {},
        "sluice_git": _git_state(),
    }
    for name, distribution in DISTRIBUTIONS.items():
        try:
            info["versions"][name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            info["versions"][name] = None
    return info


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git_state() -> str | None:
    """The commit the figures were measured at, and whether sluice/ had local changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sluice"], cwd=root,
                               text=True, capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + (" + uncommitted changes in sluice/" if dirty else "")


def describe(record: dict) -> str:
    """One progress line's worth of a record."""
    if "error" in record:
        return f"error: {record['error']}"
    seconds = record["seconds"]
    return (f"{format_seconds(statistics.median(seconds))} (median of {len(seconds)}; "
            f"process {record['wall_seconds']:.1f} s, load {record['loadavg_after']:.1f})")


def summarize(modules: dict[str, ModuleType], systems: list[str], records: list[dict],
              args, notes: list[str], machine: dict, started: dt.datetime) -> dict:
    """The results document: per workload, each system's median and the ratios."""
    finished = dt.datetime.now(dt.timezone.utc)
    workloads = {}
    for name, module in modules.items():
        mine = [r for r in records if r["workload"] == name]
        per_system = {s: _system_summary(s, module, [r for r in mine if r["system"] == s])
                      for s in systems if has_system(module, s)}
        entry = {"title": module.TITLE, "systems": per_system}
        for peer, (target, op) in targets(module).items():
            ratio = _ratio(per_system, peer)
            entry[f"target_vs_{peer}"] = target
            entry[f"op_vs_{peer}"] = op
            entry[f"sluice_vs_{peer}"] = ratio
            entry[f"met_vs_{peer}"] = (None if ratio is None or target is None
                                       else ratio < target if op == "<" else ratio <= target)
        no_jit = per_system.get("sluice", {}).get("metrics", {}).get("no_jit_seconds")
        if no_jit is not None:
            entry["sluice_no_jit_over_jit"] = no_jit / per_system["sluice"]["median_seconds"]
        rss_target = getattr(module, "RSS_TARGET", None)
        if rss_target is not None:
            over = per_system.get("sluice", {}).get("metrics", {}).get("driver_peak_over_array")
            entry["rss_target"] = rss_target
            entry["met_rss"] = None if over is None else over <= rss_target
        workloads[name] = entry
    return {
        "suite": "sluice vs Ray vs Dask, side by side (python -m benchmarks)",
        "quick": args.quick,
        "rounds": args.rounds,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "wall_seconds": round((finished - started).total_seconds(), 1),
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "machine": machine,
        "notes": notes,
        "workloads": workloads,
        "runs": records,
    }


def targets(module: ModuleType) -> dict[str, tuple[float | None, str]]:
    """Per peer of sluice: (the sluice/peer ratio of medians to reach or None, "≤" or "<").

    Ray: the module's TARGET_VS_RAY. Dask: strictly faster (< 1), unless the module sets
    its own TARGET_VS_DASK bound. pyarrow: TARGET_VS_PYARROW, only for the workloads
    with a pyarrow baseline.
    """
    own_dask = getattr(module, "TARGET_VS_DASK", None)
    result = {"ray": (module.TARGET_VS_RAY, "≤"),
              "dask": (TARGET_VS_DASK, "<") if own_dask is None else (own_dask, "≤")}
    if has_system(module, "pyarrow"):
        result["pyarrow"] = (getattr(module, "TARGET_VS_PYARROW", None), "≤")
    return result


def _system_summary(system: str, module: ModuleType, runs: list[dict]) -> dict:
    if getattr(module, f"run_{system}", None) is None:
        return {"missing": "no idiom"}
    good = [r for r in runs if "error" not in r]
    if not good:
        errors = sorted({r["error"] for r in runs})
        return {"missing": "error: " + "; ".join(errors) if errors else "not run"}
    seconds = [s for r in good for s in r["seconds"]]
    metrics: dict[str, float] = {}
    for r in good:  # the worst (highest) figure over the rounds ...
        for key, value in r.get("metrics", {}).items():
            metrics[key] = max(value, metrics.get(key, value))
    for key in metrics:  # ... but a time (*_seconds), like the timings, is the median
        if key.endswith("_seconds"):
            metrics[key] = statistics.median(r["metrics"][key] for r in good
                                             if key in r.get("metrics", {}))
    summary = {"median_seconds": statistics.median(seconds), "seconds": seconds,
               "processes": len(good), "metrics": metrics}
    if len(good) < len(runs):
        summary["failed_processes"] = len(runs) - len(good)
    return summary


def _ratio(per_system: dict, peer: str) -> float | None:
    mine = per_system.get("sluice", {}).get("median_seconds")
    theirs = per_system.get(peer, {}).get("median_seconds")
    return None if mine is None or theirs is None else mine / theirs


def format_seconds(seconds: float) -> str:
    """A duration for people to read.

    >>> format_seconds(3.64), format_seconds(0.0523), format_seconds(0.2), format_seconds(4e-5)
    ('3.64 s', '52.3 ms', '200 ms', '40 µs')
    """
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _format_ratio(ratio: float | None, target: float | None, met: bool | None, op: str) -> str:
    if ratio is None:
        return "-"
    text = f"{ratio:.2g}" if ratio >= 0.001 else f"{ratio:.1e}"
    if target is None:
        return text
    return f"{text} ({op} {target:g}: {'met' if met else 'MISSED'})"


def _shown_systems(results: dict) -> list[str]:
    """The table's systems: sluice, Ray and Dask always; a baseline (pyarrow) only where
    a workload in the results has it."""
    return [s for s in LABELS if s in ("sluice", "ray", "dask")
            or any(s in e["systems"] for e in results["workloads"].values())]


def table(results: dict) -> str:
    """The Markdown table, then the memory and jit figures and the notes under it."""
    systems = _shown_systems(results)
    peers = [p for p in PEERS if p in systems]
    header = ["workload", *(LABELS[s] for s in systems), *(f"sluice / {LABELS[p]}" for p in peers)]
    lines = [_headline(results), "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for name, entry in results["workloads"].items():
        cells = []
        for system in systems:
            summary = entry["systems"].get(system, {"missing": "not run"})
            cells.append(format_seconds(summary["median_seconds"]) if "median_seconds" in summary
                         else "error" if summary["missing"].startswith("error") else "-")
        for peer in peers:
            cells.append(_format_ratio(entry.get(f"sluice_vs_{peer}"),
                                       entry.get(f"target_vs_{peer}"),
                                       entry.get(f"met_vs_{peer}"), entry.get(f"op_vs_{peer}")))
        lines.append(f"| {name}: {entry['title']} | " + " | ".join(cells) + " |")
    lines += _memory_lines(results)
    jit_lines = _jit_lines(results)
    if jit_lines:
        lines += ([] if lines[-1] == "" else [""]) + jit_lines + [""]
    problems = [f"{name} on {LABELS[s]}: {summary['missing']}"
                for name, entry in results["workloads"].items()
                for s, summary in entry["systems"].items()
                if summary.get("missing", "").startswith("error")]
    for note in results["notes"] + problems:
        lines.append(f"- {note}")
    if results["quick"]:
        lines.append("- quick run: sizes cut about tenfold (each workload's size()); the titles "
                     "name the full sizes, and the targets apply to those")
    return "\n".join(lines)


def _headline(results: dict) -> str:
    machine = results["machine"]
    versions = machine["versions"]
    installed = [f"{LABELS[s]} {versions.get(s)}" for s in _shown_systems(results)
                 if versions.get(s)]
    per_cell = sorted({len(s["seconds"]) for e in results["workloads"].values()
                       for s in e["systems"].values() if "seconds" in s})
    cells = "-".join(str(n) for n in (per_cell[:1] + per_cell[-1:] if per_cell else [0]))
    if per_cell and per_cell[0] == per_cell[-1]:
        cells = str(per_cell[0])
    load = (f"load average {machine['loadavg_start'][0]:.1f} at the start, "
            f"{machine['loadavg_end'][0]:.1f} at the end")
    return (f"Median of {cells} timed repetitions per cell ({results['rounds']} rounds, a fresh "
            f"process per system, workload and round). {', '.join(installed)}; Python "
            f"{machine['python']}, {machine['cpu_count']} CPUs ({machine['cpu_model']}), "
            f"{machine['memory_gib']} GiB; {load}.")


def _memory_lines(results: dict) -> list[str]:
    entry = results["workloads"].get("objects")
    if not entry:
        return []
    parts = []
    for system, summary in entry["systems"].items():
        metrics = summary.get("metrics", {})
        if "driver_peak_over_array" in metrics:
            parts.append(f"{LABELS[system]} {metrics['driver_peak_rss_mb']:.0f} MB peak, "
                         f"{metrics['driver_peak_over_array']:.2f}x the array over its "
                         f"{metrics['driver_baseline_rss_mb']:.0f} MB start")
    if not parts:
        return []
    array_mb = next(s["metrics"]["array_mb"] for s in entry["systems"].values()
                    if "array_mb" in s.get("metrics", {}))
    verdict = ("" if entry.get("met_rss") is None else
               f" sluice target ≤ {entry['rss_target']:g}x: "
               f"{'met' if entry['met_rss'] else 'MISSED'}.")
    return ["", f"objects, the driver's peak resident memory with a {array_mb:.0f} MB array "
                f"(highest over the rounds): " + "; ".join(parts) + "." + verdict, ""]


def _jit_lines(results: dict) -> list[str]:
    """sluice's time with jit=True against the same pipeline's with jit=False, for the
    workloads that report it (etl_rows)."""
    lines = []
    for name, entry in results["workloads"].items():
        sluice = entry["systems"].get("sluice", {})
        no_jit = sluice.get("metrics", {}).get("no_jit_seconds")
        if no_jit is None or "median_seconds" not in sluice:
            continue
        lines.append(f"{name}, sluice's row function with jit=True: "
                     f"{format_seconds(sluice['median_seconds'])}; the same pipeline with "
                     f"jit=False: {format_seconds(no_jit)} ({entry['sluice_no_jit_over_jit']:.2g}x "
                     f"the jit time).")
    return lines


def chart(results: dict, path: Path) -> Path | str:
    """A bar chart of the medians (log scale) at ``path``; or why there is none."""
    try:
        import matplotlib
    except ImportError:
        return "no chart: matplotlib is not installed (pip install -e '.[bench]')"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["workloads"])
    systems = [s for s in LABELS if any("median_seconds" in e["systems"].get(s, {})
                                        for e in results["workloads"].values())]
    if not names or not systems:
        return "no chart: nothing was measured"
    width = 0.8 / len(systems)
    # Each workload's bars are centred on its tick: only the systems measured there count
    # (pyarrow only for etl, no Dask for compiled).
    measured = {name: [s for s in systems
                       if "median_seconds" in results["workloads"][name]["systems"].get(s, {})]
                for name in names}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(names) + 2), 4.8))
    for system in systems:
        xs, ys = [], []
        for i, name in enumerate(names):
            if system in measured[name]:
                here = measured[name]
                xs.append(i + (here.index(system) - (len(here) - 1) / 2) * width)
                ys.append(results["workloads"][name]["systems"][system]["median_seconds"])
        label = LABELS[system] + (" (one process)" if system == "pyarrow" else "")
        bars = ax.bar(xs, ys, width, label=label)
        if system == "sluice":
            for bar, name in zip(bars, [n for n in names if "median_seconds" in
                                        results["workloads"][n]["systems"].get("sluice", {})]):
                entry = results["workloads"][name]
                text = "\n".join(f"{entry[f'sluice_vs_{peer}']:.2g}x {LABELS[peer]}"
                                  for peer in ("ray", "pyarrow")
                                  if entry.get(f"sluice_vs_{peer}") is not None)
                if text:
                    ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("median seconds (log scale, lower is better)")
    machine = results["machine"]
    ax.set_title(f"sluice vs Ray vs Dask: {machine['cpu_count']} CPUs, "
                 f"{results['finished'][:10]}{' (quick sizes)' if results['quick'] else ''}")
    ax.legend()
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".png.tmp")
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path
