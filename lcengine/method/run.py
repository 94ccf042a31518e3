# SPDX-License-Identifier: Apache-2.0
"""Run folders: a fitted :class:`~lcengine.method.constraints.LatentConstraints` together with
the application that owns the model and the data.

Layout::

    run.json          {"format": "lcengine.run/2",
                       "application": "<module>:<attribute>",  # the Application object
                       "config": {...}}                         # the application's settings
    constraints/      the LatentConstraints checkpoint (lcengine.method.checkpoint)
    .lcengine.lock    flock-ed by the process writing the folder (lcengine.method.store.writer_lock)
    .lcengine.preparing  present while the application prepares a new run (removed when done)
    ...               whatever else the application stores (its model, its evaluators)

The method reads and writes ``run.json`` and ``constraints/``; everything model- or data-
specific goes through the :class:`Application` named in ``run.json``, imported by its path
(the method never imports an application itself). ``lcengine fit``, ``sample`` and
``transform`` (:mod:`lcengine.method.commands`) work on any run folder this way. Naming an
application in ``run.json`` imports that module, so load only run folders you trust.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Union,
    runtime_checkable,
)

import numpy as np

from .checkpoint import has_constraints_checkpoint
from .data import DeviceLike
from .io import atomic_write_json, read_json_file
from .latent_model import LatentModel
from .store import WRITER_LOCK_FILE

if TYPE_CHECKING:  # the inference path (load_run_decoder) imports no training code
    from .constraints import LatentConstraints
    from .zeroshot import Rule

RUN_FILE = "run.json"
RUN_FORMAT = "lcengine.run/2"
CONSTRAINTS_DIR = "constraints"
PREPARING_FILE = ".lcengine.preparing"
Log = Callable[[str], None]


@runtime_checkable
class Application(Protocol):
    """What a run folder needs from the application that created it.

    An application is any object with these methods, reachable by an import path
    ``"package.module:attribute"`` (recorded in ``run.json``).
    """

    def default_config(
        self, *, fast: bool, seed: int, training_overrides: Mapping[str, Any]
    ) -> dict:
        """The settings of a new run (``lcengine fit`` on an empty folder), as JSON."""

    def prepare_run(
        self,
        folder: Path,
        config: Mapping[str, Any],
        *,
        cache_dir: Optional[Path],
        use_cache: bool,
        progress: bool,
        log: Log,
        checkpoint_every: int,
        stop_requested: Optional[Callable[[], bool]] = None,
    ) -> "Run":
        """Creates (or completes) a run folder: the model, the fitted constraints, run.json.

        ``cache_dir`` (None: the application's default) caches pretrained models the
        application would otherwise train; ``use_cache=False`` trains them afresh. The
        constraints are saved every ``checkpoint_every`` realism updates (0: at the end only).

        ``stop_requested`` is optional (:func:`accepts_stop_requested`): an application that
        takes it passes it to :meth:`LatentConstraints.fit`, and when it returns True saves
        what it has and returns early (``lcengine fit`` then finishes the run on its next
        call). The commands pass it only to applications whose ``prepare_run`` takes it.
        """

    def load_model(self, folder: Path, config: Mapping[str, Any]) -> tuple[LatentModel, Any]:
        """The run's model and whatever else the application keeps for the run (its context)."""

    def zero_shot_rules(self) -> Mapping[str, Rule]:
        """Rules of zero-shot constraints by name (rules are code: re-attached on loading)."""

    def measure(
        self, run: "Run", outputs: np.ndarray, names: Sequence[str]
    ) -> Optional[np.ndarray]:
        """Attributes ``names`` measured on decoded outputs independently of the critics
        (``[N, len(names)]`` 0/1), or None when the application cannot measure them."""

    def example_inputs(self, run: "Run", n: int) -> np.ndarray:
        """``n`` held-out inputs to transform when the user gives none. # [n, *data_shape]"""

    def check_inputs(self, x: np.ndarray) -> np.ndarray:
        """User inputs of the model's data shape, checked (and rescaled) by the application."""

    def updated_config(self, config: Mapping[str, Any], lc: LatentConstraints) -> dict:
        """``config`` after ``lcengine fit`` continued training ``lc`` (new step totals)."""

    # Optional hooks (looked up with getattr; not part of the runtime protocol check):
    #
    # training_data(run) -> Mapping[str, Any]
    #     The run's training data as keyword arguments of LatentConstraints.fit (e.g.
    #     {"x": images, "attributes": labels}, or {"x": a LatentSource, a path of latent files
    #     or an iterable of batches}). Checkpoints hold no training rows, so `lcengine fit`
    #     needs this to continue a run (load_training_data).
    #
    # load_decoder(folder, config) -> LatentModel
    #     The run's model for inference alone (the decoder; no data, no evaluators):
    #     load_run_decoder and the ConditionalSampler use it, load_model otherwise.
    #
    # prepare_run(..., device=...)
    #     An application whose prepare_run takes `device` (accepts_keyword) trains the
    #     constraints there; `lcengine fit --device` passes it.


@dataclass
class Run:
    """A loaded run folder.

    Attributes:
        folder: where it lives.
        application: the application object.
        application_path: its import path, as recorded in ``run.json``.
        config: the application's settings from ``run.json``.
        constraints: the fitted latent constraints (zero-shot rules re-attached).
        context: what the application loaded besides the model (data, evaluators ...).
    """

    folder: Path
    application: Application
    application_path: str
    config: dict
    constraints: LatentConstraints
    context: Any = None

    @property
    def model(self) -> LatentModel:
        return self.constraints.model

    def measure(
        self, outputs: np.ndarray, names: Optional[Sequence[str]] = None
    ) -> Optional[np.ndarray]:
        """Measured 0/1 attributes of outputs, columns ``names`` (default: all the run's)."""
        names = tuple(names) if names is not None else self.constraints.attribute_names
        return self.application.measure(self, outputs, names)


def resolve_application(path: str) -> Application:
    """The application object at ``"package.module:attribute"``.

    Raises:
        ValueError: a malformed path, a module that cannot be imported, or an object that
            lacks the :class:`Application` methods.
    """
    module_name, sep, attribute = str(path).partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(
            f"application must be an import path 'package.module:attribute', got {path!r}"
        )
    try:
        obj = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"application {path!r} cannot be imported: {exc}") from exc
    if not isinstance(obj, Application):
        missing = [
            m
            for m in (
                "default_config",
                "prepare_run",
                "load_model",
                "zero_shot_rules",
                "measure",
                "example_inputs",
                "check_inputs",
                "updated_config",
            )
            if not callable(getattr(obj, m, None))
        ]
        raise ValueError(f"application {path!r} lacks the methods {missing}")
    return obj


def write_run_file(
    folder: Union[str, Path], application_path: str, config: Mapping[str, Any]
) -> None:
    """Writes ``run.json`` (atomically)."""
    atomic_write_json(
        Path(folder) / RUN_FILE,
        {"format": RUN_FORMAT, "application": str(application_path), "config": dict(config)},
    )


def read_run_file(folder: Union[str, Path]) -> tuple[str, dict]:
    """``(application path, application config)`` of a run folder's ``run.json``.

    Raises:
        ValueError: missing, corrupted, or not a run file of this format.
    """
    path = Path(folder) / RUN_FILE
    meta = read_json_file(path, "run folder")
    if (
        meta.get("format") != RUN_FORMAT
        or not isinstance(meta.get("config"), dict)
        or not isinstance(meta.get("application"), str)
    ):
        raise ValueError(
            f"{path} is not an lcengine run file (format {meta.get('format')!r}, "
            f"expected {RUN_FORMAT!r} with 'application' and 'config')"
        )
    return meta["application"], meta["config"]


def has_checkpoint(folder: Union[str, Path]) -> bool:
    """The run folder holds a saved LatentConstraints checkpoint record (``constraints.json``
    or ``constraints.previous.json``; the loader verifies them)."""
    return has_constraints_checkpoint(Path(folder) / CONSTRAINTS_DIR)


def is_preparing(folder: Union[str, Path]) -> bool:
    """The application's preparation of this run folder started and did not finish."""
    return (Path(folder) / PREPARING_FILE).is_file()


def accepts_keyword(app: Application, name: str) -> bool:
    """``app.prepare_run`` takes the keyword ``name`` (or ``**kwargs``)."""
    try:
        params = inspect.signature(app.prepare_run).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def accepts_stop_requested(app: Application) -> bool:
    """``app.prepare_run`` takes the keyword ``stop_requested`` (or ``**kwargs``)."""
    return accepts_keyword(app, "stop_requested")


def load_training_data(run: "Run", *, progress: bool = False) -> None:
    """Gives ``run.constraints`` the run's training rows again from the application's optional
    ``training_data(run)`` hook (see :class:`Application`), so that ``fit`` can continue.

    Raises:
        ValueError: the application has no ``training_data`` hook, or its answer is not a
            mapping of ``fit`` keyword arguments.
    """
    hook = getattr(run.application, "training_data", None)
    if not callable(hook):
        raise ValueError(
            f"application {run.application_path!r} has no training_data(run) hook; continuing "
            "training needs the training data again (checkpoints hold no training rows)"
        )
    kwargs = hook(run)
    if not isinstance(kwargs, Mapping) or not set(kwargs) <= {"x", "attributes", "mu", "logvar"}:
        raise ValueError(
            f"application {run.application_path!r}: training_data(run) must return a mapping "
            "with keys among x, attributes, mu, logvar"
        )
    run.constraints.attach_data(**kwargs, progress=progress)


def is_empty_run_folder(folder: Union[str, Path]) -> bool:
    """The folder is missing, empty, or holds only the lock file and files of a new run whose
    preparation was interrupted before it wrote ``run.json``."""
    folder = Path(folder)
    if not folder.is_dir():
        return not folder.exists()
    names = {p.name for p in folder.iterdir()} - {WRITER_LOCK_FILE}
    return not names or (PREPARING_FILE in names and RUN_FILE not in names)


def attach_rules(lc: LatentConstraints, rules: Mapping[str, Rule]) -> None:
    """Re-attaches the rules of ``lc``'s zero-shot constraints found in ``rules``."""
    for c in lc.zero_shot:
        if c.name in rules:
            lc.attach_rule(c.name, rules[c.name])


def load_run_decoder(folder: Union[str, Path]) -> LatentModel:
    """The model of a run folder for inference: the application's ``load_decoder`` when it
    has one, else the model of its ``load_model``.

    Raises:
        ValueError: not a run folder, or an application that cannot be imported.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"run folder {folder} does not exist")
    path, config = read_run_file(folder)
    app = resolve_application(path)
    load_decoder = getattr(app, "load_decoder", None)
    if callable(load_decoder):
        model = load_decoder(folder, config)
    else:
        model = app.load_model(folder, config)[0]
    if not isinstance(model, LatentModel):
        raise ValueError(
            f"application {path} gave {type(model).__name__} for run {folder}, not a LatentModel"
        )
    return model


def load_run(folder: Union[str, Path], *, device: DeviceLike = "cpu") -> Run:
    """Loads a run folder: its application, model and fitted constraints (on ``device``; see
    :class:`~lcengine.method.constraints.LatentConstraints`). The constraints carry no
    training rows (:func:`load_training_data` gives them back).

    Raises:
        ValueError: not a run folder, an application that cannot be imported, or a missing,
            corrupted or mismatched checkpoint (the application's files are read first).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"run folder {folder} does not exist")
    path, config = read_run_file(folder)
    app = resolve_application(path)
    model, context = app.load_model(folder, config)
    from .constraints import LatentConstraints

    lc = LatentConstraints.load(folder / CONSTRAINTS_DIR, model, device=device)
    attach_rules(lc, app.zero_shot_rules())
    return Run(folder, app, path, config, lc, context)


__all__ = [
    "Application",
    "CONSTRAINTS_DIR",
    "PREPARING_FILE",
    "RUN_FILE",
    "RUN_FORMAT",
    "Run",
    "accepts_keyword",
    "accepts_stop_requested",
    "attach_rules",
    "has_checkpoint",
    "is_empty_run_folder",
    "is_preparing",
    "load_run",
    "load_run_decoder",
    "load_training_data",
    "read_run_file",
    "resolve_application",
    "write_run_file",
]
