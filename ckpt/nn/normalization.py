"""``LayerNorm``, ``BatchNorm1d``, ``BatchNorm2d``, ``InstanceNorm1d/2d/3d``."""
import warnings

import numpy as np

from ..autograd.events import is_recomputing
from ..autograd.ops.shape import bump_version
from ..autograd.tensor import Tensor
from . import functional as F
from . import init
from .linear import _empty_parameter
from .module import Module


class LayerNorm(Module):
    """Normalize over the trailing ``normalized_shape`` dims, then apply the elementwise
    affine ``weight`` (ones) and ``bias`` (zeros).

    >>> import ckpt
    >>> ln = ckpt.nn.LayerNorm(4)
    >>> ln
    LayerNorm((4,), eps=1e-05, elementwise_affine=True, bias=True)
    >>> [round(v, 3) for v in ln(ckpt.tensor([[1.0, 2.0, 3.0, 4.0]]))[0].tolist()]
    [-1.342, -0.447, 0.447, 1.342]
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 dtype=None):
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = _empty_parameter(self.normalized_shape, dtype)
            if bias:
                self.bias = _empty_parameter(self.normalized_shape, dtype)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """Weight to ones, bias to zeros."""
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class _BatchNorm(Module):
    _expected_dims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=None, *, bias=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = _empty_parameter((num_features,), dtype)
            if bias:
                self.bias = _empty_parameter((num_features,), dtype)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            float_dtype = np.float32 if dtype is None else dtype
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, float_dtype)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, float_dtype)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self):
        """Running mean to zeros, running variance to ones, batch count to 0."""
        if self.track_running_stats:
            for buf, value in ((self.running_mean, 0), (self.running_var, 1),
                               (self.num_batches_tracked, 0)):
                buf.data[...] = value
                bump_version(buf)

    def reset_parameters(self):
        """Reset the running statistics; weight to ones, bias to zeros."""
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def _check_input_dim(self, input):
        if input.ndim not in self._expected_dims:
            raise ValueError(f"expected {self._dims_text} input (got {input.ndim}D input)")

    def forward(self, input):
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if (self.training and self.track_running_stats and self.num_batches_tracked is not None
                and not is_recomputing()):  # checkpoint's recomputation counts no new batch
            count = self.num_batches_tracked
            count.data += 1
            bump_version(count)
            factor = 1.0 / float(count.data) if self.momentum is None else self.momentum
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep_stats = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if keep_stats else None,
                            self.running_var if keep_stats else None, self.weight, self.bias,
                            use_batch_stats, factor, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization over ``(N, C)`` or ``(N, C, L)`` inputs: per channel, normalize
    with the batch's statistics in training (updating ``running_mean``/``running_var`` with
    ``momentum``; ``momentum=None`` is a cumulative average) and the running ones in eval,
    then scale by ``weight`` (ones) and shift by ``bias`` (zeros) if ``affine``.

    >>> import ckpt
    >>> bn = ckpt.nn.BatchNorm1d(2)
    >>> y = bn(ckpt.tensor([[1.0, 0.0], [3.0, 0.0]]))
    >>> bn.running_mean.tolist(), int(bn.num_batches_tracked)
    ([0.20000000298023224, 0.0], 1)
    """
    _expected_dims = (2, 3)
    _dims_text = "2D or 3D"


class BatchNorm2d(_BatchNorm):
    """Batch normalization over ``(N, C, H, W)`` inputs, per channel (see ``BatchNorm1d``).

    >>> import ckpt
    >>> bn = ckpt.nn.BatchNorm2d(3)
    >>> bn
    BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
    >>> bn(ckpt.randn(4, 3, 2, 2)).shape
    (4, 3, 2, 2)
    """
    _expected_dims = (4,)
    _dims_text = "4D"


class _InstanceNorm(_BatchNorm):
    """Instance normalization: each channel of each sample normalized over its other dims;
    ``affine`` and ``track_running_stats`` default to False, as in torch."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False,
                 track_running_stats=False, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)

    def forward(self, input):
        self._check_input_dim(input)
        unbatched = input.ndim == self._expected_dims[0]
        channels = input.shape[0 if unbatched else 1]
        if channels != self.num_features:
            if self.affine:
                raise ValueError(f"expected input's size at dim={0 if unbatched else 1} to match "
                                 f"num_features ({self.num_features}), but got: {channels}.")
            warnings.warn(f"input's size at dim={0 if unbatched else 1} does not match num_features. "
                          "You can silence this warning by not passing in num_features, which is "
                          "not used because affine=False")
        out = F.instance_norm(input.unsqueeze(0) if unbatched else input, self.running_mean,
                              self.running_var, self.weight, self.bias,
                              self.training or not self.track_running_stats,
                              0.0 if self.momentum is None else self.momentum, self.eps)
        return out.squeeze(0) if unbatched else out


class InstanceNorm1d(_InstanceNorm):
    """Instance normalization over ``(N, C, L)`` or ``(C, L)`` inputs (see ``InstanceNorm2d``)."""
    _expected_dims = (2, 3)
    _dims_text = "2D or 3D"


class InstanceNorm2d(_InstanceNorm):
    """Instance normalization over ``(N, C, H, W)`` or ``(C, H, W)`` inputs: each channel of
    each sample normalized over ``H, W`` (biased variance); with ``affine``, a per-channel
    ``weight`` and ``bias``; with ``track_running_stats``, running statistics used in eval.

    >>> import ckpt
    >>> norm = ckpt.nn.InstanceNorm2d(2, affine=True)
    >>> norm(ckpt.randn(4, 2, 3, 3)).shape, norm.weight.shape
    ((4, 2, 3, 3), (2,))
    """
    _expected_dims = (3, 4)
    _dims_text = "3D or 4D"


class InstanceNorm3d(_InstanceNorm):
    """Instance normalization over ``(N, C, D, H, W)`` or ``(C, D, H, W)`` inputs."""
    _expected_dims = (4, 5)
    _dims_text = "4D or 5D"
