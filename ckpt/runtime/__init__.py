"""ckpt.runtime: trade memory for recomputation while training runs.

``checkpoint`` (non-reentrant, on saved-tensor hooks) and ``checkpoint_sequential``
(balanced segments); both are re-exported as ``ckpt.checkpoint`` and
``ckpt.checkpoint_sequential``. Offloading saved tensors to disk is a saved-tensor hook pair
and lives with the hooks: ``ckpt.autograd.graph.save_on_disk``.

>>> import ckpt
>>> ckpt.runtime.checkpoint is ckpt.checkpoint
True
"""
from .checkpoint import (CheckpointError, checkpoint, set_checkpoint_debug_enabled,
                         set_checkpoint_early_stop)
from .selective import (CheckpointPolicy, SelectiveCheckpointContext,
                        create_selective_checkpoint_contexts)
from .sequential import checkpoint_sequential, segment_sizes

__all__ = ["CheckpointError", "CheckpointPolicy", "SelectiveCheckpointContext", "checkpoint",
           "checkpoint_sequential", "create_selective_checkpoint_contexts", "segment_sizes",
           "set_checkpoint_debug_enabled", "set_checkpoint_early_stop"]
