# SPDX-License-Identifier: Apache-2.0
"""Training data at scale: latent sources (memory, .npy and .safetensors memory maps, batches
encoded once), the streaming summary, checkpoints without training rows, and the peak RSS of a
fit on a 2,000,000-row latent file."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lcengine.method.checkpoint import FORMAT, STEM, load_constraints
from lcengine.method.constraints import LatentConstraints
from lcengine.method.data import (
    LatentFiles,
    TrainingData,
    encode_batches,
    open_latents,
    summarize,
)
from lcengine.method.latent_model import sigma_bar_from_logvar
from lcengine.method.store import commit_checkpoint, load_checkpoint
from support.method_toys import NAMES, tiny_training, toy_data, toy_model

STEPS = dict(attribute_steps=6)


@pytest.fixture(scope="module")
def toy():
    x, att = toy_data(300)
    mu, lv = toy_model().encode_dataset(x)
    return x, att, mu.numpy(), lv.numpy()


def _fit(data=None, attributes=None, **kw) -> LatentConstraints:
    lc = LatentConstraints(toy_model(), NAMES, training=tiny_training(**STEPS))
    return lc.fit(data, attributes, realism_steps=12, progress=False, **kw)


def _assert_same_training(a: LatentConstraints, b: LatentConstraints) -> None:
    sa, sb = a.trainer.state_tensors(), b.trainer.state_tensors()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert torch.equal(a.sigma_bar, b.sigma_bar)
    np.testing.assert_array_equal(a.baseline.vectors, b.baseline.vectors)


def _write_npy(folder, mu, lv, att):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "mu.npy", mu)
    np.save(folder / "logvar.npy", lv)
    np.save(folder / "attributes.npy", att.astype(np.uint8))
    return folder


def test_every_source_trains_exactly_like_tensors_in_memory(toy, tmp_path):
    x, att, mu, lv = toy
    ref = _fit(x, att)
    assert isinstance(ref.data, TrainingData)

    _assert_same_training(ref, _fit(_write_npy(tmp_path / "npy", mu, lv, att)))

    st = tmp_path / "latents.safetensors"
    save_file(
        {
            "mu": torch.from_numpy(mu),
            "logvar": torch.from_numpy(lv),
            "attributes": torch.from_numpy(att.astype(np.uint8)),
        },
        str(st),
    )
    _assert_same_training(ref, _fit(str(st)))

    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(att)), batch_size=37
    )
    from_loader = _fit(loader)
    _assert_same_training(ref, from_loader)
    folder = from_loader.data._mu.path.parent
    assert folder.is_dir()
    from_loader.data.close()
    assert not folder.exists()  # the temporary encodings are removed

    _assert_same_training(ref, _fit(mu=mu, logvar=lv, attributes=att))


def test_summary_is_one_streaming_pass(toy):
    _, att, mu, lv = toy
    data = TrainingData(torch.from_numpy(mu), torch.from_numpy(lv), torch.from_numpy(att).float())
    whole = summarize(data, progress=False)
    chunked = summarize(data, chunk_rows=7, progress=False)
    torch.testing.assert_close(whole.sigma_bar, sigma_bar_from_logvar(torch.from_numpy(lv)))
    torch.testing.assert_close(chunked.sigma_bar, whole.sigma_bar)
    np.testing.assert_allclose(chunked.sum_pos, whole.sum_pos, rtol=1e-12)
    np.testing.assert_array_equal(chunked.attribute_rows, np.unique(att, axis=0))
    assert whole.attribute_counts.sum() == len(att)
    table = whole.attribute_table()
    np.testing.assert_array_equal(
        np.unique(table, axis=0, return_counts=True)[1],
        np.unique(att, axis=0, return_counts=True)[1],
    )


def test_latent_samples_need_sigma_bar(toy, tmp_path):
    _, att, mu, _ = toy
    np.save(tmp_path / "z.npy", mu)
    np.save(tmp_path / "attributes.npy", att)
    with pytest.raises(ValueError, match="sigma_bar is required"):
        open_latents(tmp_path)
    src = open_latents(tmp_path, sigma_bar=np.full(4, 0.1))
    assert not src.has_logvar
    lc = _fit(src)
    torch.testing.assert_close(lc.sigma_bar, torch.full((4,), 0.1))
    assert lc.sample("a0", 4, method="optimize", steps=3).images.shape == (4, 5)


def test_bad_latent_files_are_refused(toy, tmp_path):
    _, att, mu, lv = toy
    bad = att.copy()
    bad[5, 1] = 2
    src = LatentFiles.from_npy(
        mu=_write_npy(tmp_path / "a", mu, lv, att) / "mu.npy",
        logvar=tmp_path / "a" / "logvar.npy",
        attributes=_write_npy(tmp_path / "b", mu, lv, bad) / "attributes.npy",
    )
    with pytest.raises(ValueError, match="attributes .* only 0 and 1"):
        _fit(src)
    nan = mu.copy()
    nan[250, 0] = np.nan
    with pytest.raises(ValueError, match="rows 0..299"):
        _fit(_write_npy(tmp_path / "c", nan, lv, att))
    np.save(tmp_path / "a" / "attributes.npy", att[:10])
    with pytest.raises(ValueError, match="attributes has 10 rows"):
        open_latents(tmp_path / "a")
    with pytest.raises(ValueError, match="path"):
        open_latents(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="attributes must be None"):
        _fit(tmp_path / "a", att)
    with pytest.raises(ValueError, match="batches must yield"):
        encode_batches(toy_model(), [torch.zeros(2, 5)], num_attributes=3, progress=False)


def test_checkpoint_holds_no_training_rows_and_continuing_needs_the_data(toy, tmp_path):
    x, att, _, _ = toy
    lc = _fit(x, att)
    lc.save(tmp_path / "c")
    tensors = load_checkpoint(tmp_path / "c", STEM, "test", lambda ck: ck.tensors)
    assert not [k for k in tensors if k.startswith("data.")]
    assert "data_summary.attribute_rows" in tensors and "sigma_bar" in tensors
    back = LatentConstraints.load(tmp_path / "c", toy_model())
    assert back.data is None
    np.testing.assert_array_equal(
        back.sample("a0 !a1", 16, method="baseline").images,
        lc.sample("a0 !a1", 16, method="baseline").images,
    )
    np.testing.assert_array_equal(
        back.sample("a0", 16, method="actor").attributes,
        lc.sample("a0", 16, method="actor").attributes,
    )
    back.fit(progress=False)  # nothing left to train: no data needed
    with pytest.raises(ValueError, match="needs the training data again"):
        back.fit(realism_steps=20, progress=False)
    straight = _fit(x, att)
    straight.fit(realism_steps=20, progress=False)
    back.fit(x, att, realism_steps=20, progress=False)
    _assert_same_training(straight, back)


def test_checkpoints_with_training_encodings_still_load(toy, tmp_path):
    x, att, mu, lv = toy
    lc = _fit(x, att)
    lc.save(tmp_path / "new")
    record = json.loads((tmp_path / "new" / "constraints.json").read_text())
    for k in ("weights_file", "weights_sha256"):
        record.pop(k, None)
    tensors = {
        k: v
        for k, v in load_checkpoint(tmp_path / "new", STEM, "t", lambda ck: ck.tensors).items()
        if not k.startswith("data_summary.")
    }
    tensors.update(
        {
            "data.mu": torch.from_numpy(mu),
            "data.logvar": torch.from_numpy(lv),
            "data.attributes": torch.from_numpy(att).float(),
        }
    )
    commit_checkpoint(tmp_path / "old", STEM, tensors, record, metadata={"format": FORMAT})
    old = load_constraints(LatentConstraints, tmp_path / "old", toy_model())
    assert old.data is None
    _assert_same_training(lc, old)
    np.testing.assert_array_equal(old.summary.attribute_counts, lc.summary.attribute_counts)


def test_progress_bars_have_rate_and_eta(toy, capsys):
    from tqdm import tqdm

    from lcengine.method import training

    x, att, _, _ = toy
    seen = []

    class Recording(tqdm):
        def __init__(self, *a, **kw):
            kw["disable"] = False
            super().__init__(*a, **kw)
            seen.append(self)

    old = training.tqdm
    training.tqdm = Recording
    try:
        lc = LatentConstraints(toy_model(), NAMES, training=tiny_training(**STEPS))
        lc.fit(x, att, realism_steps=12, progress=True)
    finally:
        training.tqdm = old
    assert [b.desc for b in seen] == ["attribute critic", "realism critic + actor"]
    assert all(b.total and b.n == b.total for b in seen)
    err = capsys.readouterr().err
    assert "step/s" in err or "s/step" in err
    assert "<" in err  # elapsed<remaining


RSS_SCRIPT = textwrap.dedent(
    """
    import resource, sys, time
    import torch
    from lcengine.method.config import TrainingConfig
    from lcengine.method.constraints import LatentConstraints
    from lcengine.method.latent_model import LatentModel

    torch.set_num_threads(1)
    model = LatentModel.from_callables(
        lambda x: (x, torch.zeros_like(x)), lambda z: z, 64, data_shape=(64,)
    )
    cfg = TrainingConfig(
        hidden=(64, 64), attribute_hidden=(64,), embed_dim=4, batch_size=256,
        attribute_batch_size=256, attribute_steps=20, realism_steps=20, log_every=10,
    )
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    lc = LatentConstraints(model, ["a0", "a1", "a2"], training=cfg)
    lc.fit(sys.argv[1], progress=False)
    lc.save(sys.argv[2])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(base, peak, lc.trainer.realism_step, round(time.perf_counter() - t0, 1))
    """
)


def _write_big_npy(path, rows: int, chunk: np.ndarray) -> None:
    """A [rows, D] float32 .npy written chunk by chunk (the chunk repeated)."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (rows, chunk.shape[1])}
        )
        for start in range(0, rows, chunk.shape[0]):
            f.write(chunk[: min(chunk.shape[0], rows - start)].tobytes())


def test_fit_from_a_2m_row_latent_file_stays_under_1gb_rss(tmp_path):
    """2,000,000 rows at D=64: mu + logvar float32 = 1.02 GB on disk; peak RSS of the fitting
    process (imports included) must stay under 1 GiB."""
    rows, d, chunk_rows = 2_000_000, 64, 1 << 16
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((chunk_rows, d), dtype=np.float32)
    lv = np.full((chunk_rows, d), -2.0, dtype=np.float32)
    att = (mu[:, :3] > 0).astype(np.uint8)
    folder = tmp_path / "latents"
    folder.mkdir()
    _write_big_npy(folder / "mu.npy", rows, mu)
    _write_big_npy(folder / "logvar.npy", rows, lv)
    with open(folder / "attributes.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "|u1", "fortran_order": False, "shape": (rows, 3)}
        )
        for start in range(0, rows, chunk_rows):
            f.write(att[: min(chunk_rows, rows - start)].tobytes())
    assert (folder / "mu.npy").stat().st_size + (folder / "logvar.npy").stat().st_size > 1e9
    out = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(folder), str(tmp_path / "ckpt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    base_kb, peak_kb, steps, seconds = out.stdout.split()
    assert int(steps) == 20
    print(f"RSS after imports {int(base_kb) / 1024:.0f} MiB, peak {int(peak_kb) / 1024:.0f} MiB")
    assert int(peak_kb) < 1024 * 1024, f"peak RSS {int(peak_kb) / 1024:.0f} MiB"


def test_continuing_a_run_takes_the_data_from_the_application(toy, tmp_path):
    from lcengine.method.run import Run, load_training_data
    from support.method_toys import TOY_APPLICATION

    x, att, _, _ = toy
    lc = _fit(x, att)
    lc.save(tmp_path / "c")
    back = LatentConstraints.load(tmp_path / "c", toy_model())

    class NoHook:
        pass

    run = Run(tmp_path, NoHook(), "x:NoHook", {}, back)
    with pytest.raises(ValueError, match="has no training_data"):
        load_training_data(run)
    run = Run(tmp_path, TOY_APPLICATION, "t", {"rows": 300, "seed": 0}, back)
    load_training_data(run)
    assert back.data is not None and back.data.num_rows == 300
    back.fit(realism_steps=20, progress=False)
    assert back.trainer.realism_step == 20
