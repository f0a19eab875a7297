"""Render a run's JSON as the Markdown tables of docs/performance.md.

``python -m benchmarks.report [benchmarks/results/latest.json]`` prints the
machine description and one table per section: every figure, its baseline
from the same run, the ratio and the target.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .__main__ import ROOT, _fmt

__all__ = ["markdown"]


def _ratio(f: dict[str, Any]) -> str:
    r = f.get("ratio")
    if r is None:
        return ""
    return f"{r * 100:.2f}%" if r < 0.1 else f"{r:.2f}x"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"- CPU: {m['cpu']}, {m['cores']} cores, {m.get('memory_gib', '?')} GiB; Linux {m['kernel']}",
        f"- Python {m['python']}, numpy {m['numpy']}, urllib3 {m['urllib3']}, httpx {m['httpx']} "
        f"(httpcore {m['httpcore']}, h11 {m['h11']}); baselines: graphpipe {m['graphpipe']}, "
        f"requests {m['requests']}, flatbuffers {m['flatbuffers']}, orjson {m['orjson']}",
        f"- the run took {results['seconds']:.0f} s; other processes used "
        f"{(m.get('busy_during') or 0):.0%} of the CPU meanwhile"
        + (" (quick run)" if results.get("quick") else ""),
        "",
    ]
    figures = results["figures"]
    for section in dict.fromkeys(f["section"] for f in figures):
        lines += [
            f"**{section}**",
            "",
            "| figure | value | baseline (same run) | baseline value | ratio | target |",
            "| --- | ---: | --- | ---: | ---: | --- |",
        ]
        for f in figures:
            if f["section"] != section:
                continue
            met = {True: " **met**", False: " **missed**", None: ""}[f["met"]]
            note = f" ({f['note']})" if f["note"] else ""
            lines.append(
                f"| {f['name']}{note} | {_fmt(f['value'], f['unit'])} | {f['baseline_name']} | "
                f"{_fmt(f['baseline'], f['unit'])} | {_ratio(f)} | {f['target_text']}{met} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    path = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / "results" / "latest.json"
    )
    print(markdown(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
