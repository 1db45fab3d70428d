"""The model card of installed weights: how they were trained (with the runs they started from) and their scores."""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.probe import cpu_model

__all__ = ["CardFacts", "Scores", "card", "keep_parent_card", "lineage", "hardware"]

# dataset -> (mean PSNR dB, mean SSIM, [(image, PSNR dB, SSIM), ...])
Scores = dict[str, tuple[float, float, list[tuple[str, float, float]]]]


@dataclass(frozen=True)
class CardFacts:
    """What a card states beyond its run's state.json: the installed file, its scores and the network's facts."""

    method: str
    scale: int
    file_name: str
    sha256: str
    step: int  # the training step the installed weights come from
    input_upscaled: bool  # the network takes the bicubic-upscaled LR Y
    init_text: str  # how a fresh net of this run started, in words
    scores: Scores
    note: str = ""


def hardware(device: str, threads: int | None) -> str:
    """The machine a run trained on, in words: the GPU, or the CPU with its thread counts."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    cpu = cpu_model() or platform.machine()
    return f"{cpu}, {os.cpu_count()} logical CPUs, {threads} torch thread(s), torch {torch.__version__}"


def lineage(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The states of the runs this one was initialised from (nearest first), where their folders remain."""
    parents: list[dict[str, Any]] = []
    init = state.get("init_from")
    while init and len(parents) < 8:
        parent_state = Path(init).parent / "state.json"
        if not parent_state.is_file():
            break
        try:
            parent = json.loads(parent_state.read_text())
        except (OSError, ValueError):
            break
        parents.append(parent)
        init = parent.get("init_from")
    return parents


def keep_parent_card(state: dict[str, Any]) -> bool:
    """Runs started from shipped weights (no run folder beside them) keep those weights' model card in
    their state, so the new card still tells the whole training history. True when it was added now."""
    if "init_card" in state:
        return False
    parents = lineage(state)
    if parents and parents[-1].get("init_card"):  # that run kept the card as it was before it
        state["init_card"] = parents[-1]["init_card"]
        return True
    init = (parents[-1] if parents else state).get("init_from")  # where the run folders' history ends
    if not init or (Path(init).parent / "state.json").is_file():
        return False
    card_path = Path(init).with_suffix(".md")
    if not card_path.is_file():
        return False
    state["init_card"] = card_path.read_text()
    return True


def _card_total_minutes(text: str) -> float:
    """Training minutes a model card accounts for: its total including parents, else its own wall time."""
    for pattern in (r"total wall time including[^:]*: ([0-9.]+) min", r"- wall time: ([0-9.]+) min"):
        found = re.search(pattern, text)
        if found:
            return float(found.group(1))
    return 0.0


def _data_text(state: dict[str, Any]) -> str:
    names = [str(d) for d in state["datasets"]]
    text = " + ".join(d.upper() for d in names)
    if sorted(n.lower() for n in names) == ["bsd200", "t91"]:
        text += " (the '291' set)"
    if state.get("balance") and len(names) > 1:
        text += ", the same share of patches from each"
    if state.get("scale_aug"):
        text += ", plus copies downscaled by " + ", ".join(f"{f:g}" for f in state["scale_aug"])
    return text


def _border_text(state: dict[str, Any]) -> str:
    border = int(state.get("loss_border", 0))
    if not border:
        return "loss on the whole patch (padded borders included)"
    return f"loss skips {border} input pixels at each patch edge (outputs that see the zero padding)"


def _mixed_scales(state: dict[str, Any], lead: str) -> str:
    scales = state.get("train_scales", [])
    return f"{lead}x{', x'.join(str(s) for s in scales)}" if len(scales) > 1 else ""


def _commands(state: dict[str, Any]) -> str:
    return " then ".join(f"`{c}`" for c in (state.get("commands") or [state.get("command")]) if c)


def _header(state: dict[str, Any], facts: CardFacts) -> list[str]:
    lines = [
        f"# {facts.method} x{facts.scale}: `{facts.file_name}`",
        "",
        f"- sha256: `{facts.sha256}` (also in `manifest.json`, which loading verifies)",
        f"- architecture: {facts.method.upper()} as published, Y channel only (Cb/Cr by MATLAB bicubic); "
        f"{'input = MATLAB-bicubic-upscaled LR Y' if facts.input_upscaled else 'input = LR Y'}",
        f"- training data: {_data_text(state)}, Y of HR modcropped; LR = MATLAB bicubic imresize of the uint8 "
        f"RGB HR (as evaluation); random {state['patch_size']}px input patches, flips and 90-degree rotations; "
        f"{_border_text(state)}{_mixed_scales(state, '; scales mixed: ')}",
        f"- initialised from: {state.get('init_from') or facts.init_text}",
        f"- optimiser: Adam, lr {state['lr']:g}, warm-up then cosine decay to 1%, batch {state['batch_size']}, "
        f"{state['loss'].upper()} loss, seed {state['seed']}",
        "- command: "
        + _commands(state)
        + (
            f" (resumed at step {', '.join(str(k) for k in state['resumed_at'])}; a different --steps there "
            "re-times the cosine schedule from that step on)"
            if state.get("resumed_at")
            else ""
        ),
        f"- steps: {state['step']} of {state['steps']} run; shipped weights from step {facts.step} "
        f"(best {state['val_dataset']} PSNR during training)",
        f"- wall time: {state['wall_s'] / 60:.1f} min of training (validation excluded)",
        f"- hardware: {hardware(state.get('device', 'cpu'), state.get('threads'))}",
    ]
    parents, parent_card = lineage(state), state.get("init_card")
    if parents or parent_card:
        total = state["wall_s"] + sum(float(p["wall_s"]) for p in parents)
        total += 60 * _card_total_minutes(parent_card) if parent_card else 0.0
        lines += [f"- total wall time including the runs it was initialised from: {total / 60:.1f} min"]
    if facts.note:
        lines += [f"- note: {facts.note}"]
    return lines


def _scores_and_curve(state: dict[str, Any], scores: Scores) -> list[str]:
    lines = ["", "## Scores (paper protocol: Y BT.601 studio, shave = scale, SR rounded to uint8)", ""]
    lines += ["| dataset | PSNR dB | SSIM |", "|---|---|---|"]
    lines += [f"| {ds} | {p:.4f} | {s:.5f} |" for ds, (p, s, _) in scores.items()]
    lines += ["", "## Training curve (validation PSNR on " + state["val_dataset"] + ")", ""]
    lines += ["| step | PSNR dB | train loss (EMA) | lr | train wall s |", "|---|---|---|---|---|"]
    lines += [
        f"| {int(r['step'])} | {r['psnr']:.3f} | {r['loss']:.5f} | {r['lr']:.2e} | {r['wall_s']:.0f} |"
        for r in state["history"]
    ]
    return lines


def _parent_section(parent: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"## Initialised from: {parent['method']} x{parent['scale']} run (validation on {parent['val_dataset']})",
        "",
        "- command: " + _commands(parent),
        f"- steps: {parent['step']}; wall time {parent['wall_s'] / 60:.1f} min; batch {parent['batch_size']}, "
        f"data {_data_text(parent)}, patch {parent['patch_size']}, lr {parent['lr']:g}, "
        f"{parent['loss'].upper()} loss, {_border_text(parent)}{_mixed_scales(parent, ', scales mixed ')}",
        "",
        "| step | PSNR dB | train loss (EMA) | train wall s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {int(r['step'])} | {r['psnr']:.3f} | {r['loss']:.5f} | {r['wall_s']:.0f} |"
        for r in parent["history"]
    ]
    return lines


def _kept_card_section(parent_card: str) -> list[str]:
    lines = ["", "## Initialised from: the weights shipped before this run (their card, as it was)", ""]
    for line in parent_card.split("\n## Per image")[0].strip().splitlines():
        lines.append("##" + line if line.startswith("#") else line)  # nest its headings one level down
    return lines


def card(state: dict[str, Any], facts: CardFacts) -> str:
    """The Markdown model card of weights installed from the run whose state.json is `state`."""
    lines = _header(state, facts) + _scores_and_curve(state, facts.scores)
    for parent in lineage(state):
        lines += _parent_section(parent)
    if state.get("init_card"):
        lines += _kept_card_section(state["init_card"])
    lines += ["", "## Per image", "", "| dataset | image | PSNR dB | SSIM |", "|---|---|---|---|"]
    for ds, (_, _, rows) in facts.scores.items():
        lines += [f"| {ds} | {name} | {p:.4f} | {s:.5f} |" for name, p, s in rows]
    return "\n".join(lines) + "\n"
