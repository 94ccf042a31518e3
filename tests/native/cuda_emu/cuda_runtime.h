// SPDX-License-Identifier: Apache-2.0
#pragma once
// The emulation (tests/native/cuda_emu/common.cuh) defines the runtime API the kernels use.
