"""DDP vs DiLoCo between two hosts on a slow link: wall time and bytes to the same held-out loss.

Two network namespaces, one okai node each (`okai train --nnodes 2`, one
process per node, world size 2), joined by an emulated link (slow_link.py:
rate + one-way delay, netem's model; this kernel has no netem) at
50 Mbit/s / 40 ms RTT and 500 Mbit/s / 10 ms RTT. The model is
slow_links_mlp.py (1.13M parameters, Adam, batch 32 a rank) on the digits.
DiLoCo takes an outer step at every epoch end (inner_steps = steps per epoch),
so every held-out evaluation (after each epoch) sees the synchronised model.

Per run it reports:
- time to the target held-out loss: the training loop's seconds (metrics
  `stepSeconds`, summed) up to the first epoch whose held-out loss is at or
  below the target; the run's whole wall time (process start to exit) too;
- bytes per node: okai's count (`bytesSent`, ring all-reduce share) up to that
  epoch, and the bytes the relay carried from each host over the whole run
  (IP packets: rendezvous, evaluation and headers included);
- compute utilisation: compute seconds / loop seconds. Compute a step is the
  same for both strategies (forward, backward, Adam): measured in the DiLoCo
  run as (loop - sync seconds) / steps and applied to the DDP run.

Checkpoints are off (`checkpoint_every` above the run's steps): a DiLoCo
checkpoint gathers every rank's state, which would swamp the bytes compared.

    .venv/bin/python benchmarks/train_slow_links.py [--target 0.2] [--plot PATH]
Needs root (namespaces, TUN devices).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from okai.digest import Digest
from okai.manifest import DilocoSync, EntrypointModel, JobSpec, ManifestRef
from okai.train import LocalShardSource, SourceSpec, job_to_toml
from slow_link import ADDRESSES, Link, slow_link_hosts
from train_common import digits_store

HERE = Path(__file__).resolve().parent
LINKS = (Link(50, 40), Link(500, 10))
STEPS_PER_EPOCH = 22  # digits: 1,438 training samples, 719 a rank, batch 32
RUN_TIMEOUT = 600


@dataclass
class Run:
    strategy: str
    link: Link
    epochs: list[dict[str, Any]]
    wall_seconds: float
    relay_bytes: tuple[int, int]
    advice: str | None

    def curve(self) -> tuple[list[float], list[float]]:
        seconds, losses, total = [], [], 0.0
        for epoch in self.epochs:
            total += epoch["stepSeconds"]
            seconds.append(total)
            losses.append(epoch["testLoss"])
        return seconds, losses

    def at_target(self, target: float) -> dict[str, Any] | None:
        """The first epoch at or below the target loss, with the loop seconds up to it."""
        seconds = 0.0
        for epoch in self.epochs:
            seconds += epoch["stepSeconds"]
            if epoch["testLoss"] is not None and epoch["testLoss"] <= target:
                return {**epoch, "seconds": seconds, "steps": epoch["step"]}
        return None


def job(
    ref: ManifestRef,
    code: tuple[str, Digest],
    strategy: str,
    epochs: int,
    outer: tuple[float, float],
) -> JobSpec:
    sync = (
        DilocoSync(
            strategy="diloco",
            inner_steps=STEPS_PER_EPOCH,
            outer_lr=outer[0],
            outer_momentum=outer[1],
            compression="bf16",
        )
        if strategy == "diloco"
        else None
    )
    return JobSpec(
        name=f"slow-links-{strategy}",
        model=EntrypointModel(entrypoint_blob_id=code[0], sha256=code[1]),
        hyperparameters={"epochs": epochs, "batch_size": 32, "lr": 0.001, "hidden": 1024},
        datasets=(ref,),
        nodes=2,
        procs_per_node=1,
        checkpoint_every=10**6,
        sync=sync,
    )


def train_across(link: Link, job_file: Path, spec: SourceSpec, work: Path) -> Run:
    """Run the job on the two hosts of a fresh link; rank 0's epochs and the relay's bytes."""
    with slow_link_hosts(link) as (hosts, directions):
        began = time.perf_counter()
        nodes = []
        for host, address in zip(hosts, ADDRESSES, strict=True):
            command = [
                "ip", "netns", "exec", host, sys.executable, "-m", "okai", "--json", "train",
                str(job_file), "--rdzv-endpoint", f"{ADDRESSES[0]}:29400",
                "--rdzv-id", work.name, "--local-addr", address,
                "--run-dir", str(work / host), "--data", spec.location,
            ]  # fmt: skip
            nodes.append(
                subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            )
        outputs = []
        for node in nodes:
            stdout, stderr = node.communicate(timeout=RUN_TIMEOUT)
            if node.returncode != 0:
                raise SystemExit(f"a node failed ({node.returncode}):\n{stderr[-3000:]}")
            outputs.append(json.loads(stdout))
        wall = time.perf_counter() - began
        relay = (directions[0].bytes, directions[1].bytes)
    main = next(out for out in outputs if out["receipt"] is not None)
    records = [
        json.loads(line) for line in Path(main["runDir"], "metrics.jsonl").read_text().splitlines()
    ]
    epochs = [r for r in records if r["event"] == "epoch"]
    strategy = next(r["sync"] for r in records if r["event"] == "start")
    advice = next((r["advice"] for r in records if "advice" in r), None)
    return Run(strategy, link, epochs, wall, relay, advice)


def mb(count: float) -> str:
    return f"{count / 1e6:,.1f} MB"


def report(runs: list[Run], target: float) -> None:
    print(f"target held-out loss {target}; load average {os.getloadavg()[0]:.1f} at the end")
    for link in LINKS:
        ddp, diloco = (
            next(r for r in runs if r.link == link and r.strategy == s) for s in ("ddp", "diloco")
        )
        reached = {run.strategy: run.at_target(target) for run in (ddp, diloco)}
        last = diloco.epochs[-1]
        diloco_loop = sum(e["stepSeconds"] for e in diloco.epochs)
        compute_per_step = (diloco_loop - last["syncSeconds"]) / last["step"]
        print(f"\n{link}")
        for run in (ddp, diloco):
            hit = reached[run.strategy]
            loop = sum(e["stepSeconds"] for e in run.epochs)
            compute = compute_per_step * run.epochs[-1]["step"]
            where = (
                f"reached at epoch {hit['epoch'] + 1} (step {hit['steps']}) after "
                f"{hit['seconds']:.1f} s, {mb(hit['bytesSent'])} sent per node"
                if hit
                else "target not reached"
            )
            print(
                f"  {run.strategy:6}: {where}; whole run {len(run.epochs)} epochs, loop "
                f"{loop:.1f} s, wall {run.wall_seconds:.1f} s, final held-out loss "
                f"{run.epochs[-1]['testLoss']:.3f}, okai count {mb(run.epochs[-1]['bytesSent'])}/node, "
                f"relay {mb(run.relay_bytes[0])} + {mb(run.relay_bytes[1])}, "
                f"compute utilisation {compute / loop:.0%}"
            )
            if run.advice:
                print(f"          warned: {run.advice}")
        if reached["ddp"] and reached["diloco"]:
            ddp_hit, diloco_hit = reached["ddp"], reached["diloco"]
            print(
                f"  DiLoCo / DDP to the target: {ddp_hit['seconds'] / diloco_hit['seconds']:.1f}x "
                f"less time, {ddp_hit['bytesSent'] / diloco_hit['bytesSent']:.1f}x fewer bytes"
            )


def plot(runs: list[Run], target: float, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(LINKS), figsize=(11, 4), sharey=True)
    for axis, link in zip(axes, LINKS, strict=True):
        for run in (r for r in runs if r.link == link):
            seconds, losses = run.curve()
            axis.plot(seconds, losses, marker="o", ms=3, label=run.strategy)
        axis.axhline(target, color="grey", ls="--", lw=0.8, label="target")
        axis.set(xlabel="training seconds", title=str(link), xlim=(0, None))
        axis.legend()
    axes[0].set_ylabel("held-out loss")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.15, help="held-out loss to reach")
    parser.add_argument("--ddp-epochs", type=int, default=3)
    parser.add_argument("--diloco-epochs", type=int, default=6)
    parser.add_argument("--outer-lr", type=float, default=0.7)
    parser.add_argument("--outer-momentum", type=float, default=0.5)
    parser.add_argument("--plot", type=Path, default=HERE.parent / "docs/img/train-slow-links.png")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec, ref, _ = digits_store(root, repeat=1)
        code = (HERE / "slow_links_mlp.py").read_bytes()
        blob = LocalShardSource(spec.location).put(code)
        outer = (args.outer_lr, args.outer_momentum)
        for link in LINKS:
            for strategy, epochs in (("ddp", args.ddp_epochs), ("diloco", args.diloco_epochs)):
                job_file = root / f"{strategy}.toml"
                job_file.write_text(
                    job_to_toml(job(ref, (blob, Digest.of_bytes(code)), strategy, epochs, outer))
                )
                work = root / f"{strategy}-{link.mbit_per_second:g}"
                work.mkdir()
                run = train_across(link, job_file, spec, work)
                print(f"{strategy} over {link}: {run.wall_seconds:.1f} s", file=sys.stderr)
                runs.append(run)
    report(runs, args.target)
    title = (
        f"1.1M-parameter MLP, 2 nodes: DDP vs DiLoCo (H = {STEPS_PER_EPOCH}, outer lr "
        f"{args.outer_lr:g}, momentum {args.outer_momentum:g}, bf16 deltas)"
    )
    plot(runs, args.target, args.plot, title)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
