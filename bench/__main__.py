"""`python -m bench all|serving|wake|wake-workers|operator|prefix`: run a part (or all), write bench/results/,
plot."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench import results

PARTS = ("serving", "wake", "wake-workers", "operator", "prefix")


def _tiny_model(work_dir: Path) -> Path:
    from tests.support.tinymodel import build_tiny_model

    return build_tiny_model(work_dir / "tiny-llama")


def run_part(part: str, work_dir: Path, args: argparse.Namespace) -> Path:
    started = time.monotonic()
    if part == "serving":
        from bench import serving

        body = serving.run(
            _tiny_model(work_dir), work_dir, rounds=args.rounds, duration_s=args.duration, server=args.server
        )
        part = f"serving-{args.server}" if args.server else part  # one server's run beside the full one
    elif part == "wake":
        from bench import wake

        body = wake.run(_tiny_model(work_dir), work_dir, trials=args.trials)
    elif part == "wake-workers":
        from bench import wake_workers

        body = wake_workers.run(_tiny_model(work_dir), work_dir, trials=args.worker_trials)
    elif part == "prefix":
        from bench import prefix

        body = prefix.run(_tiny_model(work_dir), work_dir)
    else:
        from bench import operator_scale

        body = operator_scale.run(work_dir, fleets=args.fleets)
    body["wall_s"] = round(time.monotonic() - started, 1)
    path = results.write(part, body)
    print(f"[bench] {part}: {path} ({body['wall_s']}s)", flush=True)
    return path


def _profile(args: argparse.Namespace) -> int:
    from bench import profile

    if args.server is None:
        raise SystemExit("profile: name a server (bare-vllm, ray-serve-llm, modelfleet)")
    work_dir = Path(tempfile.mkdtemp(prefix="mf-bench-", dir="/tmp"))
    try:
        body = profile.run(
            args.server,
            _tiny_model(work_dir),
            work_dir,
            concurrency=args.concurrency,
            duration_s=args.duration,
            py_spy=args.py_spy,
        )
        print(f"[bench] profile: {results.write(f'profile-{args.server}', body)}", flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("part", choices=("all", *PARTS, "plots", "profile", "tables"))
    parser.add_argument(
        "server",
        nargs="?",
        choices=("bare-vllm", "ray-serve-llm", "ray-serve-llm-ht", "modelfleet", "modelfleet-standard"),
        help="profile: which server; serving: only this one (written to serving-SERVER.json)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="profile: concurrent streams")
    parser.add_argument("--py-spy", action="store_true", help="profile: record py-spy stacks too")
    parser.add_argument("--rounds", type=int, default=2, help="serving: A B C rounds")
    parser.add_argument("--duration", type=float, default=8.0, help="serving: seconds per measured cell")
    parser.add_argument("--trials", type=int, default=5, help="wake: wakes from zero replicas")
    parser.add_argument(
        "--worker-trials", type=int, default=3, help="wake-workers: wakes from zero workers (test cluster)"
    )
    parser.add_argument("--fleets", type=int, default=500, help="operator: fleets to create")
    args = parser.parse_args(argv)
    if args.part == "profile":
        return _profile(args)
    if args.part == "tables":
        from bench import report

        print(report.render_all())
        return 0
    if args.part != "plots":
        work_dir = Path(tempfile.mkdtemp(prefix="mf-bench-", dir="/tmp"))
        try:
            for part in PARTS if args.part == "all" else (args.part,):
                run_part(part, work_dir, args)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
    from bench import plots

    for path in plots.plot_all():
        print(f"[bench] plot: {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
