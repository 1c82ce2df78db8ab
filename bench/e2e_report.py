"""What ``bench_e2e.py`` prints: one line per run as it ends, then the medians."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from e2e_support import fmt, median, percentile

if TYPE_CHECKING:
    from bench_e2e import Latency, Sample

PEER = "taskiq + taskiq-redis streams broker"
INFRA = ("redis", "stand-in", "bench")


def sample_line(run: str, s: Sample) -> str:
    cpu = ", ".join(f"{name} {fmt(s.cpu_us(name))}" for name in s.cpu_s)
    trips = s.trips_per_job()
    line = (f"{run} {s.label:<40} {fmt(s.rate):>6} jobs/s ({s.jobs:,} in {s.seconds:.2f} s, "
            f"start-up {s.startup_s:.1f} s)  CPU us/job: {cpu}  Redis cmds/job "
            f"{s.redis_per_job():.2f}  store round trips/job "
            f"{'n/a' if trips is None else f'{trips:.3f}'}")
    if s.failed:
        line += f"  ({s.failed} jobs did NOT finish successfully)"
    return line


def latency_line(run: str, lat: Latency) -> str:
    return (f"{run} latency {lat.label:<32} {len(lat.finished_ms)} jobs: submit -> IN_PROGRESS "
            f"{_p(lat.started_ms)}, -> FINISHED {_p(lat.finished_ms)}, "
            f"seen by a watcher {_p(lat.seen_ms)} ms (p50 / p99)")


def _p(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return f"{percentile(values, 0.5):.1f} / {percentile(values, 0.99):.1f}"


def _per_job(counts: Counter[str], jobs: int, top: int = 12) -> str:
    rows = counts.most_common(top)
    rest = sum(counts.values()) - sum(n for _, n in rows)
    text = ", ".join(f"{name} {n / jobs:.3f}" for name, n in rows)
    return text + (f", others {rest / jobs:.3f}" if rest else "")


def summary(samples: Sequence[Sample], latencies: Sequence[Latency], repeat: int) -> str:
    labels = list(dict.fromkeys(s.label for s in samples))
    by_label = {label: [s for s in samples if s.label == label] for label in labels}
    out = [f"\n## medians of {repeat} run(s); jobs/s samples in run order",
           "| system | jobs/run | jobs/s | Redis cmds/job | own CPU us/job (by process; "
           "others) | store round trips/job |",
           "|---|---|---|---|---|---|"]
    for label, group in by_label.items():
        rates = ", ".join(fmt(s.rate) for s in group)
        names = [n for n in group[0].cpu_s if n not in INFRA]
        own = ", ".join(f"{n} {fmt(median([s.cpu_us(n) for s in group]))}" for n in names)
        infra = "; ".join(f"{n} {fmt(median([s.cpu_us(n) for s in group]))}"
                          for n in INFRA if n in group[0].cpu_s)
        trips = [t for s in group if (t := s.trips_per_job()) is not None]
        out.append(
            f"| {label} | {group[0].jobs:,} | {fmt(median([s.rate for s in group]))} ({rates}) "
            f"| {median([s.redis_per_job() for s in group]):.2f} "
            f"| {fmt(median([s.own_cpu_us() for s in group]))} ({own}; {infra}) "
            f"| {f'{median(trips):.3f}' if trips else 'n/a'} |")
    out += _ratios(by_label)
    for lat_label in dict.fromkeys(lat.label for lat in latencies):
        group = [lat for lat in latencies if lat.label == lat_label]
        pooled = [[v for lat in group for v in getattr(lat, f)]
                  for f in ("started_ms", "finished_ms", "seen_ms")]
        out.append(f"latency at the light load, {lat_label} (pooled over {len(group)} run(s), "
                   f"{len(pooled[1])} jobs): submit -> IN_PROGRESS {_p(pooled[0])}, "
                   f"-> FINISHED {_p(pooled[1])}, seen by a watcher {_p(pooled[2])} ms "
                   f"(p50 / p99)")
    out.append("\n## per job, by command (the last run of each)")
    for label, group in by_label.items():
        last = group[-1]
        out.append(f"{label}: Redis {_per_job(last.redis, last.jobs)}")
        if last.trips is not None and last.ops is not None:
            out.append(f"{'':>{len(label)}}  store round trips {_per_job(last.trips, last.jobs)}"
                       f"; opcounters {_per_job(+last.ops, last.jobs)}")
    return "\n".join(out)


def _ratios(by_label: dict[str, list[Sample]]) -> list[str]:
    peer = by_label.get(PEER)
    if not peer:
        return []
    lines = []
    for label, group in by_label.items():
        if label == PEER or "clients" in label:
            continue
        ratios = [ours.rate / theirs.rate for ours, theirs in zip(group, peer, strict=False)]
        per_run = ", ".join(f"{r:.0%}" for r in ratios)
        lines.append(f"ratio jobs/s {label} / taskiq, each from one run: {per_run} "
                     f"(median {median(ratios):.0%})")
    return lines
