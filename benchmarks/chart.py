"""The e2e chart: messages/s and connector CPU per message per pipeline (PNG, matplotlib's Agg backend).

    python -m benchmarks.chart [benchmarks/results/latest.json] [OUT.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ("ssmd", "core", "lat", "a", "b", "c", "cf", "cc")
COLORS = {"ssmd": "#1f77b4", "core": "#6baed6", "lat": "#9ecae1", "a": "#d62728", "b": "#ff7f0e", "c": "#7f7f7f",
          "cf": "#969696", "cc": "#bdbdbd"}


def chart(summary: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [summary["rows"][k] for k in ORDER if k in summary["rows"]]
    labels = [r["label"].replace(" (", "\n(").replace(", ", ",\n", 1) for r in rows]
    colors = [COLORS[r["pipeline"]] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.7 * len(rows) + 2.2))
    y = range(len(rows))
    ax1.barh(y, [r["msgs_per_s"] for r in rows], color=colors)
    ax1.set_yticks(list(y), labels, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("NATS messages per second (wall)")
    ax1.set_xscale("log")
    for i, r in enumerate(rows):
        ax1.text(r["msgs_per_s"], i, f" {r['msgs_per_s']:,.0f}", va="center", fontsize=8)
    ax2.barh(y, [r["cpu_ns_per_msg"] for r in rows], color=colors)
    ax2.set_yticks(list(y), [""] * len(rows))
    ax2.invert_yaxis()
    ax2.set_xlabel("pipeline process CPU per message (ns, log scale)")
    ax2.set_xscale("log")
    for i, r in enumerate(rows):
        ax2.text(r["cpu_ns_per_msg"], i, f" {r['cpu_ns_per_msg']:,.0f} ns", va="center", fontsize=8)
    m = summary.get("machine", {})
    fig.suptitle(f"ssmd-fast end to end, {summary.get('time', '')}: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
                 f"Python {m.get('python', '?')}, nats-server {m.get('nats_server', '?')}; "
                 "1 frame = 2 messages (raw + normalized)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    src = Path(argv[0]) if argv else Path(__file__).parent / "results" / "latest.json"
    out = Path(argv[1]) if len(argv) > 1 else src.with_name("e2e-latest.png")
    print(chart(json.loads(src.read_text()), out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
