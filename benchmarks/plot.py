"""The two charts of the seed's announcement, redrawn from a run: serialisation time per
format, and end-to-end rows/s at 1 and 5 concurrent callers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot"]

_COLORS = {
    "memcpy (np.copyto)": "#9e9e9e",
    "graphpipe-client": "#1b7837",
    "graphpipe 2018 (1.0.4)": "#5aae61",
    "FlatBuffers Builder": "#2166ac",
    "JSON": "#d6604d",
}


def _color(name: str) -> str:
    for key, color in _COLORS.items():
        if name.startswith(key):
            return color
    return "#777777"


def plot(results: dict[str, Any], path: Path) -> None:
    """Draw the codec and throughput charts of ``results`` (the run's JSON) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codec = results["codec"]["seconds"]
    throughput = results.get("throughput", {})
    panels = 1 + len(throughput)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels + 1.5, 4.6), squeeze=False)
    ax = axes[0][0]

    ops = ["encode request", "decode request", "encode response", "decode response"]
    labels = [
        "request\nserialise",
        "request\ndeserialise",
        "response\nserialise",
        "response\ndeserialise",
    ]
    formats = list(codec)
    width = 0.8 / len(formats)
    for i, f in enumerate(formats):
        xs = [j + (i - (len(formats) - 1) / 2) * width for j in range(len(ops))]
        ys = [codec[f][op] for op in ops]
        ax.bar(xs, ys, width, label=f, color=_color(f))
    ax.set_yscale("log")
    ax.set_xticks(range(len(ops)), labels, fontsize=8)
    ax.set_ylabel("seconds (log scale)")
    ax.set_title("Serialisation, 128x224x224x3 -> 128x7x7x512 f32", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(axis="y", which="major", alpha=0.3)

    titles = {
        "seed": "End to end, 128-row requests (77 MB)",
        "row": "End to end, 1-row requests (602 kB)",
    }
    for k, (name, kinds) in enumerate(throughput.items(), start=1):
        ax = axes[0][k]
        names = list(kinds)
        xs = range(len(names))
        one = [kinds[n]["1"] if "1" in kinds[n] else kinds[n][1] for n in names]
        five = [kinds[n]["5"] if "5" in kinds[n] else kinds[n][5] for n in names]
        ax.bar([x - 0.2 for x in xs], one, 0.4, label="1 caller", color="#92c5de")
        ax.bar([x + 0.2 for x in xs], five, 0.4, label="5 callers", color="#2166ac")
        for x, a, b in zip(xs, one, five, strict=True):
            ax.text(x - 0.2, a, f"{a:.0f}", ha="center", va="bottom", fontsize=7)
            ax.text(x + 0.2, b, f"{b:.0f}", ha="center", va="bottom", fontsize=7)
        short = [
            n.replace("graphpipe-client ", "")
            .replace(" (floor)", "\n(floor)")
            .replace(" (requests)", "\n(requests)")
            for n in names
        ]
        ax.set_xticks(list(xs), short, fontsize=8)
        ax.set_ylabel("rows per second")
        ax.set_title(titles.get(name, name), fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)

    info = results.get("machine", {})
    fig.suptitle(
        f"graphpipe-client {info.get('graphpipe-client', '')} on {info.get('cpu', '?')}, "
        f"{info.get('cores', '?')} cores, Python {info.get('python', '?')}, loopback",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
