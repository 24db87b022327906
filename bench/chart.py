"""The bench's figures as one SVG: a panel per question, each bar labelled with its value, the pipe in blue."""

from html import escape

WIDTH, LABEL, BAR_HEIGHT, GAP, PANEL_GAP = 840, 350, 18, 6, 34
PIPE, OTHER = "#2f6fbd", "#9aa5b1"


def _panels(results: dict) -> list[tuple[str, str, list[tuple[str, float | None, bool]]]]:
    """(title, unit, [(label, value, is the pipe)]) — only what this run measured."""
    auth = [
        ("gcloud auth login --cred-file + print-access-token", results.get("gcloud_workaround_s"), False),
        ("pipe, in its container (what a step runs)", results.get("auth_pipe_s"), True),
        ("pipe, natively", results.get("auth_native_s"), True),
        ("stdlib STS + IAM calls, in a container (floor)", results.get("auth_floor_s"), False),
    ]
    run = [
        ("pipe: pull + run, 150 MB image", results.get("run_pipe_s"), True),
        ("docker pull + run, pre-minted token", results.get("run_floor_s"), False),
        ("pipe: pull + run, 1 MB image", results.get("run_tiny_pipe_s"), True),
        ("docker pull + run, 1 MB image", results.get("run_tiny_floor_s"), False),
    ]
    size = [
        ("added by the pipe, uncompressed (MiB)", results.get("added_uncompressed_mib"), True),
        ("added by the pipe, compressed (MiB)", results.get("added_compressed_mib"), True),
        ("peak RSS of the pipe process (MB)", results.get("peak_rss_mb"), True),
    ]
    return [
        ("Authenticate: step token to a service account's access token", "s", auth),
        ("Run a script in a private image", "s", run),
        ("Image and memory", "", size),
    ]


def render(results: dict) -> str:
    rows, y = [], 28
    rows.append(f'<text x="10" y="18" class="title">make bench: medians of {results.get("runs", "?")} interleaved runs</text>')
    for title, unit, bars in _panels(results):
        bars = [bar for bar in bars if bar[1] is not None]
        if not bars:
            continue
        y += 14
        rows.append(f'<text x="10" y="{y}" class="panel">{escape(title)}</text>')
        y += 8
        scale = (WIDTH - LABEL - 90) / max(value for _, value, _ in bars)
        for label, value, is_pipe in bars:
            width = max(1.0, value * scale)
            rows.append(f'<text x="{LABEL - 8}" y="{y + 13}" class="label">{escape(label)}</text>')
            rows.append(f'<rect x="{LABEL}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" fill="{PIPE if is_pipe else OTHER}"/>')
            rows.append(f'<text x="{LABEL + width + 6:.1f}" y="{y + 13}" class="value">{value:.2f}{unit}</text>')
            y += BAR_HEIGHT + GAP
        y += PANEL_GAP - GAP
    style = ("<style>text{font-family:sans-serif;font-size:12px;fill:#222}.title{font-size:14px;font-weight:bold}"
             ".panel{font-weight:bold}.label{text-anchor:end}.value{fill:#444}</style>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" viewBox="0 0 {WIDTH} {y}">'
            f'{style}<rect width="100%" height="100%" fill="white"/>{"".join(rows)}</svg>\n')
