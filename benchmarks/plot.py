"""The charts of a run, after the seed's two: serialisation time per format, and
end-to-end rows/s at 1 and 5 concurrent callers (plus the time of one call)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot"]

_COLORS = {
    "memcpy (np.copyto)": "#9e9e9e",
    "graphpipe-client": "#1b7837",
    "graphpipe 2018": "#a6dba0",
    "FlatBuffers Builder": "#2166ac",
    "JSON": "#d6604d",
}


def _color(name: str) -> str:
    for key, color in _COLORS.items():
        if name.startswith(key):
            return color
    return "#777777"


def _rows_panel(ax: Any, kinds: dict[str, Any], title: str) -> None:
    names = list(kinds)
    xs = list(range(len(names)))

    def at(n: str, callers: int) -> float:
        by = kinds[n]
        return float(by[str(callers)] if str(callers) in by else by[callers])

    one = [at(n, 1) for n in names]
    five = [at(n, 5) for n in names]
    ax.bar([x - 0.2 for x in xs], one, 0.4, label="1 caller", color="#92c5de")
    ax.bar([x + 0.2 for x in xs], five, 0.4, label="5 callers", color="#2166ac")
    for x, a, b in zip(xs, one, five, strict=True):
        ax.text(x - 0.2, a, f"{a:.0f}", ha="center", va="bottom", fontsize=6)
        ax.text(x + 0.2, b, f"{b:.0f}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(xs, [_short(n) for n in names], fontsize=7)
    ax.set_ylabel("rows per second")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def _short(name: str) -> str:
    return (
        name.replace("graphpipe-client ", "")
        .replace(" (floor)", "\n(floor)")
        .replace(" (requests)", "\n(requests)")
        .replace(" POST", "\nPOST")
        .replace("bare ", "bare\n")
    )


def _latency_panel(ax: Any, large: dict[str, float], small: dict[str, float]) -> None:
    groups = [("77 MB -> 12.8 MB", large), ("1x10 f32", small)]
    labels, values, colors = [], [], []
    for title, table in groups:
        for name, seconds in table.items():
            labels.append(f"{_short(name)}\n[{title}]")
            values.append(seconds * 1e3)
            colors.append(_color(name) if "graphpipe" in name else "#9e9e9e")
    ys = list(range(len(labels)))
    ax.barh(ys, values, color=colors)
    for y, v in zip(ys, values, strict=True):
        ax.text(v, y, f" {v:.3g} ms", va="center", fontsize=6)
    ax.set_yticks(ys, labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms per call (log scale)")
    ax.set_title("One call, median", fontsize=9)
    ax.grid(axis="x", alpha=0.3)


def plot(results: dict[str, Any], path: Path) -> None:
    """Draw the charts of ``results`` (a run's JSON) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    ax = axes[0][0]
    codec = results["codec"]["seconds"]
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
        ax.bar(xs, [codec[f][op] for op in ops], width, label=f, color=_color(f))
    ax.set_yscale("log")
    ax.set_xticks(range(len(ops)), labels, fontsize=8)
    ax.set_ylabel("seconds (log scale)")
    ax.set_title("Serialisation, 128x224x224x3 -> 128x7x7x512 f32", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(axis="y", which="major", alpha=0.3)

    if "large" in results and "small" in results:
        _latency_panel(axes[1][0], results["large"], results["small"])
    else:
        axes[1][0].axis("off")

    throughput = results.get("throughput", {})
    places = {"seed": (0, 1), "row": (0, 2)}
    for key, kinds in throughput.items():
        name, _, model = key.partition("+")
        row, col = places.get(name, (0, 1))
        if model:
            row = 1
        what = "128-row requests (77 MB)" if name == "seed" else "1-row requests (602 kB)"
        server = f"server with a {model} model" if model else "instant server (transport only)"
        _rows_panel(axes[row][col], kinds, f"{what}, {server}")

    info = results.get("machine", {})
    fig.suptitle(
        f"graphpipe-client {info.get('graphpipe-client', '')} on {info.get('cpu', '?')}, "
        f"{info.get('cores', '?')} cores, Python {info.get('python', '?')}, numpy "
        f"{info.get('numpy', '?')}, loopback",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
