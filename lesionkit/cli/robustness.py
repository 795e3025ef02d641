from __future__ import annotations

from pathlib import Path

import typer


def robustness(
    run: Path = typer.Argument(None, help="Run directory (uses checkpoints/best.pt, else last.pt) or a checkpoint file."),  # noqa: B008
    list_: bool = typer.Option(False, "--list", help="List the registered corruptions (units, default levels) and exit."),
    noise: str = typer.Option(None, "--noise", help="Shortcut for --corruption impulse:F (fractions or percents, "
                                                    "comma-separated, e.g. 0.05 or 1%,5%,15%)."),
    corruption: list[str] = typer.Option(None, "--corruption", "-c", help="NAME[(key=value)][:LEVELS], repeatable, "  # noqa: B008
                                         "e.g. impulse:0.01,0.05  gaussian_blur:5,7  'motion_blur(angle=30):5,7'. "
                                         "Default (test): impulse 1-5%,15%; gaussian_blur 5,7; motion_blur 5,7."),
    protocol: str = typer.Option("test", "--protocol", help="test (corrupt the test set) | train-corrupt (train with "
                                 "the corruption, test clean) | matched (train and test at the same level)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default RUN/robustness)."),  # noqa: B008
    subset: str = typer.Option("auto", "--subset", help="auto (the split's test ids, else the fold's val) | test | val."),
    manifest: Path = typer.Option(None, "--manifest", help="Manifest to read (default: the run's; e.g. one with "  # noqa: B008
                                                           "skin-tone columns from label-skintone)."),
    splits: Path = typer.Option(None, "--splits", help="splits.json (default: the run's)."),  # noqa: B008
    group_by: str = typer.Option("auto", "--group-by", help="Skin-tone group column(s) for per-group deltas: auto "
                                 "(first of fitzpatrick_est, fitzpatrick, ita_category), a comma list, or none."),
    seed: int = typer.Option(0, "--seed", help="Corruption seed (the same seed gives every model the same images)."),
    n_boot: int = typer.Option(200, "--n-boot", help="Bootstrap replicates for the CIs (0 = none)."),
    min_group_size: int = typer.Option(10, "--min-group-size", help="Skin-tone groups with fewer images are left out."),
    batch_size: int = typer.Option(128, "--batch-size", help="Images per inference batch."),
    workers: int = typer.Option(0, "--workers", help="DataLoader workers for reading the image cache."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    amp: str = typer.Option("auto", "--amp", help="auto (bf16 on CUDA) | bf16 | off."),
    epochs: int = typer.Option(None, "--epochs", help="Protocols train-corrupt / matched: epochs per retraining "
                                                     "(default: the run's)."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Image cache folder (default: the run's)."),  # noqa: B008
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing robustness output."),
) -> None:
    """Corruption robustness of a trained run: test-time sweeps, or retraining with the corruption (Table 5.8 arms).

    Example: lesionkit robustness runs/resnet18 --noise 1%,5%,15% -c gaussian_blur:5,7 -c motion_blur:5,7
    """
    from lesionkit.console import out as console_out
    from lesionkit.errors import UsageError

    if list_:
        from rich.table import Table

        from lesionkit.robustness.corruptions import list_corruptions

        t = Table(title="corruptions (lesionkit robustness -c NAME[(key=value)][:LEVELS])")
        for c in ("name", "kind", "level unit", "default levels", "params", "description"):
            t.add_column(c)
        for r in list_corruptions():
            t.add_row(r["name"], r["kind"], r["unit"], ",".join(f"{v:g}" for v in r["default_levels"]),
                      ",".join(f"{k}={v:g}" for k, v in r["params"].items()) or "-", r["description"])
        console_out.print(t)
        return
    if run is None:
        raise UsageError("missing RUN (a run directory or checkpoint)", hint="lesionkit robustness runs/NAME --noise 5%")
    from lesionkit.robustness.run import RobustnessConfig, run_robustness

    items = list(corruption or [])
    if noise:
        items.insert(0, f"impulse:{noise}")
    cfg = RobustnessConfig(run=str(run), corruptions=items, protocol=protocol, out=str(out) if out else "",
                           subset=subset, manifest=str(manifest) if manifest else "",
                           splits=str(splits) if splits else "", group_by=group_by, seed=seed, n_boot=n_boot, min_group_size=min_group_size,
                           batch_size=batch_size, workers=workers, device=device, amp=amp,
                           cache_dir=str(cache_dir) if cache_dir else "", epochs=epochs, overwrite=overwrite)
    record = run_robustness(cfg)
    from lesionkit.robustness.run import summary_table_text

    console_out.print(summary_table_text(Path(record["out"])))
