"""``tessera train``: federated training over a running network, round by round.

It shows the price and the privacy cost first (and asks, unless ``--yes``), then one
line per round: who was accepted or excluded, the loss and accuracy on the analyst's
validation table, and ε spent so far. With ``--store`` every round's model is kept by
CID and chained in the ledger's model registry (``tessera model list`` shows the chain).

Exit codes as the other analyst commands (:mod:`tessera.cli.network`): 2 bad arguments,
10 a policy refused, 11 a privacy budget is spent, 17 the ledger refused, 18 a peer or
the chain cannot be reached, 19 a state file is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from tessera.cli.errors import fail, handle_errors
from tessera.cli.ledger import JsonOpt, emit_json
from tessera.cli.network import DEFAULT_DIR, DirOpt
from tessera.learning.models import MODEL_KINDS, Array, Model, build_model
from tessera.protocol.contribution import WEIGHT_TOTAL

_out = Console()
_err = Console(stderr=True)


class _Progress:
    """An observer printing each round as it ends."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def start(self, model: Model, params: Array) -> None:
        self.console.print(
            f"[dim]·[/dim] training {type(model).__name__}, {params.size} parameters"
        )

    def round(self, model: Model, params: Array, record: Any) -> None:
        parts = [f"round {record.index + 1}: {len(record.accepted)} accepted"]
        if record.excluded:
            parts.append("excluded " + ", ".join(f"{n} ({why})" for n, why in record.excluded))
        if record.loss is not None:
            parts.append(f"loss {record.loss:.4f}")
        if record.score is not None:
            parts.append(f"score {record.score:.4f}")
        parts.append(f"ε {record.epsilon_spent:.3g}")
        scores = _scores(record.contribution)
        if scores is not None:
            parts.append(
                "paid by score: "
                + ", ".join(f"{n} {s['weight'] / WEIGHT_TOTAL:.1%}" for n, s in scores.items())
            )
        self.console.print("[dim]·[/dim] " + " · ".join(parts))


class _Both:
    def __init__(self, *observers: Any) -> None:
        self.observers = observers

    def start(self, model: Model, params: Array) -> None:
        for o in self.observers:
            o.start(model, params)

    def round(self, model: Model, params: Array, record: Any) -> None:
        for o in self.observers:
            o.round(model, params, record)


@handle_errors
def train(
    table: Annotated[str, typer.Option(help="Table name.")],
    features: Annotated[str, typer.Option(help="Comma-separated feature columns.")],
    label: Annotated[str, typer.Option(help="The label column (class index or target).")],
    model: Annotated[
        str, typer.Option(help=f"One of {', '.join(MODEL_KINDS)}, or torch (with --layers).")
    ] = "logistic",
    layers: Annotated[
        str | None,
        typer.Option(
            help="A torch model's layers (the torch extra), comma-separated kind:arg:...: "
            "linear:IN:OUT, conv2d:IN:OUT:KERNEL:STRIDE:PADDING, maxpool2d:K, avgpool2d:K, "
            "flatten, unflatten:C:H:W, relu, tanh, sigmoid, gelu; the last gives --classes "
            "logits (one value with --regression)."
        ),
    ] = None,
    regression: Annotated[
        bool, typer.Option("--regression", help="A torch model predicting the label's value.")
    ] = False,
    classes: Annotated[int, typer.Option(min=2, help="Classes (softmax, mlp).")] = 2,
    hidden: Annotated[int, typer.Option(min=1, help="Hidden units (mlp).")] = 16,
    l2: Annotated[float, typer.Option(min=0.0, help="L2 penalty of the local loss.")] = 0.0,
    rounds: Annotated[int, typer.Option(min=1, max=10_000)] = 10,
    providers_per_round: Annotated[
        int | None, typer.Option(min=1, help="Providers drawn each round (default: all).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Local epochs per round.")] = 1,
    learning_rate: Annotated[float, typer.Option(min=0.0, help="Local SGD step.")] = 0.1,
    batch_size: Annotated[int, typer.Option(min=1, help="Local mini-batch size.")] = 32,
    unit: Annotated[
        str, typer.Option(help="Privacy unit: provider (DP-FedAvg) or row (DP-FedSGD).")
    ] = "provider",
    clip: Annotated[float, typer.Option(min=0.0, help="L2 clip of an update (or a row).")] = 1.0,
    bits: Annotated[int, typer.Option(min=2, max=32, help="Fixed-point bits per entry.")] = 16,
    epsilon: Annotated[
        float | None, typer.Option(help="The whole training's ε (omit: no noise).")
    ] = None,
    delta: Annotated[float, typer.Option(help="δ of the whole training.")] = 1e-6,
    server_learning_rate: Annotated[float, typer.Option(min=0.0)] = 1.0,
    validation: Annotated[
        Path | None,
        typer.Option(help="A CSV of the analyst's own with the feature and label columns."),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(help="Keep every round's model here by CID and chain it on the registry."),
    ] = None,
    contribution: Annotated[
        str | None,
        typer.Option(
            help="Score every round's providers and pay them by score: loo (leave-one-out) "
            "or shapley (permutation sampling); needs --validation."
        ),
    ] = None,
    permutations: Annotated[
        int, typer.Option(min=1, max=1000, help="Shapley's sampled permutations per round.")
    ] = 8,
    seed: Annotated[int | None, typer.Option(help="Seed of the rounds' draws.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Start without asking.")] = False,
    state_dir: DirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Federated training over the network: every round a training query on the ledger,
    each provider's update clipped, proven and securely aggregated with the nodes' noise."""
    import pandas as pd

    from tessera.learning import LocalConfig, TrainingConfig
    from tessera.node.launcher import open_session

    cols = [c.strip() for c in features.split(",") if c.strip()]
    if not cols:
        fail(ValueError("--features names no column"))
    try:
        config = TrainingConfig(
            rounds=rounds,
            providers_per_round=providers_per_round,
            local=LocalConfig(epochs, learning_rate, batch_size),
            unit=unit,
            clip=clip,
            bits=bits,
            epsilon=epsilon,
            delta=delta,
            server_learning_rate=server_learning_rate,
        )
        built = _model(model, layers, regression, len(cols), classes, hidden, l2)
    except ValueError as exc:
        fail(exc)
    scoring = None
    if contribution is not None:
        from tessera.learning.contribution import ContributionSpec
        from tessera.protocol.contribution import ContributionError

        if validation is None:
            fail(ValueError("--contribution scores by the validation gain: pass --validation"))
        try:
            scoring = ContributionSpec(contribution, permutations)
        except ContributionError as exc:
            fail(ValueError(f"--contribution: {exc}"))
    val = None
    if validation is not None:
        try:
            frame = pd.read_csv(validation)
        except (OSError, ValueError) as exc:
            fail(ValueError(f"--validation {validation}: {exc}"))
        missing = [c for c in [*cols, label] if c not in frame.columns]
        if missing:
            fail(ValueError(f"--validation {validation} has no column(s) {', '.join(missing)}"))
        val = (frame[cols].to_numpy(dtype=np.float64), frame[label].to_numpy(dtype=np.float64))
    analyst, transport = open_session(state_dir)
    try:
        console = _err if as_json else _out
        analyst.on_progress = lambda m: _err.print(f"[dim]·[/dim] {m}")
        training_id = os.urandom(32)
        quote = analyst.training_quote(
            table, built, cols, label, config, contribution=scoring, training_id=training_id
        )
        _show_quote(console, quote)
        if not yes and not typer.confirm("Start the training?", default=False, err=True):
            raise typer.Exit(0)
        observer: Any = _Progress(_err)
        if store is not None:
            from tessera.ledger.model_registry import ModelRegistry
            from tessera.node.model_store import LocalModelStore, ModelLog

            log = ModelLog(
                LocalModelStore(store),
                training_id,
                ModelRegistry(analyst.ledger),
                analyst.committee,
            )
            observer = _Both(observer, log)
        res = analyst.train(
            table,
            built,
            cols,
            label,
            config,
            validation=val,
            observer=observer,
            seed=seed,
            training_id=training_id,
            contribution=scoring,
        )
    finally:
        analyst.close()
        transport.close()
    if as_json:
        emit_json(
            {
                "training_id": "0x" + training_id.hex(),
                "params": [float(v) for v in res.params],
                "rounds": [
                    {
                        "round": r.index + 1,
                        "query_id": r.query_id,
                        "accepted": list(r.accepted),
                        "excluded": [list(e) for e in r.excluded],
                        "loss": r.loss,
                        "score": r.score,
                        "epsilon": r.epsilon_spent,
                        "contribution": _scores(r.contribution),
                    }
                    for r in res.rounds
                ],
                "price": quote.price,
                "epsilon": quote.epsilon,
                "epsilon_total": quote.epsilon_total,
                "scoring_rho": quote.scoring_rho,
            }
        )
        return
    last = res.rounds[-1]
    _out.print(
        f"trained {len(res.rounds)} rounds (training 0x{training_id.hex()}): "
        + (f"score {last.score:.4f}, " if last.score is not None else "")
        + f"ε {last.epsilon_spent:.3g}"
    )


def _model(
    kind: str,
    layers: str | None,
    regression: bool,
    features: int,
    classes: int,
    hidden: int,
    l2: float,
) -> Model:
    """The model ``--model`` names: a built-in one, or a torch one from ``--layers``."""
    if kind != "torch":
        if layers is not None or regression:
            raise ValueError("--layers and --regression are for --model torch")
        return build_model(kind, features, classes=classes, hidden=hidden, l2=l2)
    if layers is None:
        raise ValueError("--model torch needs --layers (e.g. linear:4:8,relu,linear:8:2)")
    try:
        from tessera.learning.torch_model import TorchModel
    except ImportError as exc:
        raise ValueError("--model torch needs PyTorch: pip install 'tessera[torch]'") from exc
    return TorchModel(
        parse_layers(layers),
        features=features,
        task="regression" if regression else "classification",
        classes=None if regression else classes,
        l2=l2,
    )


def parse_layers(text: str) -> list[list[str | int]]:
    """``linear:4:8,relu,linear:8:2`` as ``[["linear", 4, 8], ["relu"], ["linear", 8, 2]]``."""
    out: list[list[str | int]] = []
    for i, item in enumerate(part.strip() for part in text.split(",")):
        kind, *args = item.split(":")
        try:
            out.append([kind, *(int(a) for a in args)])
        except ValueError:
            raise ValueError(
                f"--layers: layer {i} ({item!r}) has an argument that is not an integer"
            ) from None
    return out


def _scores(record: Any) -> dict[str, dict[str, float]] | None:
    """A round's contribution scores by provider: the score and the weight its pay is
    split by (of :data:`WEIGHT_TOTAL`); ``None`` for a round not scored."""
    if record is None:
        return None
    return {
        name: {"score": float(record.score_of(name)), "weight": int(record.weight_of(name))}
        for name in record.providers
    }


def _show_quote(console: Console, quote: Any) -> None:
    t = Table(title="training quote", show_header=False)
    t.add_row("rounds", str(quote.rounds))
    t.add_row("providers", ", ".join(quote.providers))
    t.add_row("price", f"{quote.price} credits ({quote.price_per_round} per round, at most)")
    eps = "none (exact)" if quote.epsilon is None else f"{quote.epsilon:.4g} at δ={quote.delta:g}"
    t.add_row("privacy", eps)
    if quote.scoring_rho and quote.epsilon_total is not None:
        t.add_row(
            "privacy with scoring",
            f"{quote.epsilon_total:.4g} at δ={quote.delta:g} "
            f"(the scores' subset sums add ρ={quote.scoring_rho:.6g} per dataset)",
        )
    for name, left in sorted(quote.budget_left.items()):
        t.add_row(f"budget left: {name}", f"ρ={left:.6g}")
    console.print(t)
