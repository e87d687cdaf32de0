"""The metrics log of a run (``metrics.jsonl``, one JSON object a line) and its loss-curve plot.

Rows are appended while training; a row half-written when the process was killed is skipped when read, and on
resume the rows after the checkpoint's step are dropped (``truncate_metrics``), so replayed steps are not logged
twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["read_metrics", "truncate_metrics", "plot_metrics"]


def read_metrics(metrics_file: Path) -> list[dict]:
    """The rows of a metrics.jsonl; lines that are not complete JSON objects (a line half-written when
    the process was killed) are skipped."""
    rows = []
    for line in Path(metrics_file).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def truncate_metrics(metrics_file: Path, step: int) -> None:
    """Keep only complete rows up to ``step`` (the checkpoint resumed from); rewritten atomically."""
    if not metrics_file.exists():
        return
    rows = [r for r in read_metrics(metrics_file) if r["step"] <= step]
    tmp = metrics_file.with_name(metrics_file.name + f".tmp{os.getpid()}")
    with tmp.open("w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, metrics_file)


def plot_metrics(metrics_file: Path, out_png: Path, labels: dict[str, str] | None = None) -> None:
    """Training loss and the validation metrics ``labels`` (name → legend; default: the NELBO) against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or {"val_nelbo_bits": "validation NELBO (EMA weights)"}
    rows = read_metrics(metrics_file)
    train = [(r["step"], r["loss_bits"]) for r in rows if "loss_bits" in r]
    series = {name: [(r["step"], r[name]) for r in rows if name in r] for name in labels}
    fig, ax = plt.subplots(figsize=(6.4, 4))
    if train:
        ax.plot(*zip(*train, strict=True), lw=1, alpha=0.8, label="train loss (NELBO estimate)")
    for (name, points), marker in zip(series.items(), "os^vD<>", strict=False):
        if points:
            ax.plot(*zip(*points, strict=True), f"{marker}-", label=labels[name])
    ax.set_xlabel("step")
    ax.set_ylabel("bits per token")
    ax.set_title(metrics_file.parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    if train:
        lo = min(v for _, v in train + series.get("val_nelbo_bits", []))
        hi = sorted(v for _, v in train)[int(0.95 * (len(train) - 1))]
        ax.set_ylim(lo * 0.95, max(hi, lo * 1.05))
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
