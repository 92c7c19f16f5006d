"""ckpt.autograd: the define-by-run reverse-mode engine (torch.autograd's names)."""
from .tensor import Tensor
from . import ops
from .engine import backward, grad
from .grad_mode import (enable_grad, inference_mode, is_grad_enabled, is_inference,
                        is_inference_mode_enabled, no_grad, set_grad_enabled)
from . import events, forward_ad, functional, graph
from .function import Function
from .node import RawSavedTensor as SavedTensor  # torch's name (graph.SavedTensor: ckpt's record)
from .variable import Variable
from .gradcheck import gradcheck, gradgradcheck
from . import profiler
from .anomaly import detect_anomaly, set_detect_anomaly
