"""The preflight of a big sweep: wall time from the start of Hydra's multirun to the end of the
checks of every job (the moment the first job could start), side by side with composing every
job with Hydra's ``compose`` (what the preflight did before job_configs.py).

Each measurement is a fresh process that runs the real ``prune-exp -m`` with the sweep and
exits when the preflight has checked every job (nothing is trained or written); ``--reps``
repetitions, the median is printed. The sweep: ``debug=fast``, 2 strategies x N/2 seeds.

    uv run python scripts/bench_preflight.py --jobs 1000 --reps 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

# Runs prune-exp with argv; times Preflight.on_multirun_start and exits when it returns.
PROBE = """
import os, sys, time
import prune_exp.hydra_callbacks as hc
from prune_exp import run
if os.environ["BENCH_VARIANT"] == "compose":  # every job composed by Hydra, then typed in full
    import prune_exp.job_configs as jc
    from hydra import compose
    from omegaconf import OmegaConf
    def of(self, overrides):
        full = compose(config_name=self.config_name, overrides=overrides, return_hydra_config=True)
        app = OmegaConf.masked_copy(full, [k for k in full if k != "hydra"])
        return app, run.to_run_config(app, resolve_paths=False)
    jc.JobConfigs.of = of
checks = hc.Preflight.on_multirun_start
def timed(self, config, **kw):
    t = time.perf_counter()
    checks(self, config, **kw)
    print(f"PREFLIGHT {time.perf_counter() - t:.4f}", file=sys.stderr, flush=True)
    os._exit(0)
hc.Preflight.on_multirun_start = timed
sys.argv = ["prune-exp", *sys.argv[1:]]
run.cli()
"""


def preflight_seconds(variant: str, jobs: int, root: str) -> float:
    seeds = f"range(0,{jobs // 2})"
    args = ["-m", "debug=fast", "retrain=finetune,lr_rewind", f"seed={seeds}", f"paths.root_dir={root}"]
    env = {**os.environ, "BENCH_VARIANT": variant, "PYTHONUNBUFFERED": "1"}
    res = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, cwd=root)
    line = next((x for x in res.stderr.splitlines() if x.startswith("PREFLIGHT ")), None)
    if line is None:
        raise SystemExit(f"the preflight did not finish:\n{res.stderr[-3000:]}")
    return float(line.split()[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=1000, help="jobs in the sweep (job_configs.py)")
    p.add_argument("--compose-jobs", type=int, default=100, help="jobs for the compose-every-job variant")
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as root:
        times: dict[tuple[str, int], list[float]] = {("job_configs", a.jobs): [], ("compose", a.compose_jobs): []}
        for _ in range(a.reps):  # the variants in turn, so a slow phase of the machine hits both
            for variant, jobs in times:
                times[(variant, jobs)].append(preflight_seconds(variant, jobs, root))
    fast, slow = (statistics.median(v) for v in times.values())
    print(f"| variant | jobs | preflight s (median of {a.reps}) | ms per job |")
    print("|---|---|---|---|")
    print(f"| job_configs.py (composed once per group set) | {a.jobs} | {fast:.2f} | {1e3 * fast / a.jobs:.1f} |")
    print(f"| Hydra compose for every job | {a.compose_jobs} | {slow:.2f} | {1e3 * slow / a.compose_jobs:.1f} |")
    print(f"\nper job: compose / job_configs = {(slow / a.compose_jobs) / (fast / a.jobs):.1f}x")
    print(f"goal: the preflight of a 1,000-job sweep <= 10 s: {'met' if fast <= 10 and a.jobs >= 1000 else 'not met'}")


if __name__ == "__main__":
    main()
