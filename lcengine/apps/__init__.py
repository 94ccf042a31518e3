# SPDX-License-Identifier: Apache-2.0
"""Applications of :mod:`lcengine.method`: a data set, a model and its evaluation, each in its
own package (the method itself never imports them)."""
