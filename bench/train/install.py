"""Installing a run's weights: copy to the weights folder, record the sha256, score them, write the model card."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from bench.data import sha256_file
from bench.errors import UsageError
from bench.train.card import CardFacts, card, keep_parent_card
from bench.train.checkpoint import STATE, load_tensors, read_state, write_json
from bench.train.config import source_checkout, training_defaults
from bench.train.validation import evaluate, method_for

__all__ = ["install", "install_dir"]


def install_dir() -> Path:
    """Where `install` writes by default: methods/weights in a source checkout, else the user's data
    folder (platformdirs), where loading also looks; never into an installed package (site-packages)."""
    from methods import _torchsr

    return _torchsr.WEIGHTS_DIR if source_checkout() else _torchsr.user_weights_dir()


def install(
    run_dir: str | os.PathLike[str],
    *,
    which: str = "best",
    weights_dir: str | os.PathLike[str] | None = None,
    eval_datasets: Sequence[str] = ("set5", "set14"),
    note: str = "",
    scale: int | None = None,
) -> Path:
    """Copy a run's best (or last) weights to <weights_dir>/<method>_x<scale>.safetensors, record
    its sha256 in the manifest beside them, score them on `eval_datasets` (paper protocol) and write
    the model card. `weights_dir` defaults to `install_dir()`; `scale` to the run's (a scale-agnostic
    network may be installed for another). Returns the weights path.

    Raises UsageError when the run folder holds no checkpoint or the scale does not fit the network.
    """
    from methods import _torchsr

    run = Path(run_dir)
    src = run / f"{which}.safetensors"
    if not (run / STATE).is_file() or not src.is_file():
        raise UsageError(f"{run} holds no {which}.safetensors/{STATE}; train first")
    state = read_state(run)
    if keep_parent_card(state):  # a run folder written before cards were kept at the start
        write_json(run / STATE, state)
    method = state["method"]
    defaults = training_defaults(method)
    if scale is None:
        scale = int(state["scale"])
    elif scale != int(state["scale"]) and not defaults.input_upscaled:
        raise UsageError(f"{method} weights are tied to x{state['scale']}; cannot install them as x{scale}")
    dest_dir = Path(weights_dir) if weights_dir is not None else install_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{method}_x{scale}.safetensors"
    tmp = dest.with_suffix(".tmp")
    try:  # the weights are scored before they replace the installed ones; a failure leaves no .tmp
        shutil.copyfile(src, tmp)
        sha = sha256_file(tmp)
        net = defaults.build(scale)
        load_tensors(net, tmp)
        m = method_for(method, defaults, net, scale, "cpu")
        scores = {ds: evaluate(m, ds, scale) for ds in eval_datasets}
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _torchsr.record_sha256(
        dest.name, sha, path=dest_dir / _torchsr.MANIFEST.name, params=_torchsr.count_params(net)
    )
    facts = CardFacts(
        method=method,
        scale=scale,
        file_name=dest.name,
        sha256=sha,
        step=state["best_step"] if which == "best" else state["step"],
        input_upscaled=defaults.input_upscaled,
        init_text=defaults.describe_init(state.get("init", "random")),
        scores=scores,
        note=note,
    )
    dest.with_suffix(".md").write_text(card(state, facts))
    return dest
