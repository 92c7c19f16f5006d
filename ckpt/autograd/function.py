"""User-defined differentiable operations (torch.autograd.Function)."""
from . import grad_mode
from .node import Node, SavedTensor
from .tensor import Tensor, _wrap


class FunctionCtx(Node):
    """The ``ctx`` of a custom Function: it becomes the ``grad_fn`` node of the outputs."""
    _array_rule = False  # user code expects Tensors

    def save_for_backward(self, *tensors):
        self._to_save = tensors

    def mark_non_differentiable(self, *tensors):
        self._non_differentiable = {id(t) for t in tensors}

    def set_materialize_grads(self, value):
        self._materialize = bool(value)

    @property
    def saved_tensors(self):
        unpacked = self.__dict__.get("_unpacked")
        return unpacked if unpacked is not None else Node.saved_tensors.fget(self)

    def vjp(self, grads, *saved):
        grads = grads if isinstance(grads, list) else [grads]
        self._unpacked = saved
        try:
            result = self._function.backward(self, *grads)
        finally:
            self._unpacked = None
        return result if isinstance(result, tuple) else (result,)


_node_classes = {}


def _node_class(function):
    cls = _node_classes.get(function)
    if cls is None:
        cls = type(function.__name__ + "Backward", (FunctionCtx,), {"_function": function})
        _node_classes[function] = cls
    return cls


class Function:
    """Subclass with static ``forward(ctx, *args)`` and ``backward(ctx, *grad_outputs)``;
    call ``YourFunction.apply(*args)``. ``backward`` returns one gradient per argument of
    ``forward`` (None for non-tensors); written with ckpt ops it is itself differentiable.

    >>> import ckpt
    >>> class Cube(ckpt.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         (x,) = ctx.saved_tensors
    ...         return g * 3 * x ** 2
    >>> x = ckpt.tensor([2.0], requires_grad=True)
    >>> y = Cube.apply(x); y.backward()
    >>> y.grad_fn.name(), x.grad.tolist()
    ('CubeBackward', [12.0])
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("a custom Function must implement forward(ctx, ...)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("a custom Function must implement backward(ctx, ...) to be differentiated")

    @classmethod
    def apply(cls, *args, **kwargs):
        node = _node_class(cls).__new__(_node_class(cls))
        node._to_save = ()
        node._non_differentiable = set()
        node._materialize = True
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        node.__dict__["needs_input_grad"] = needs
        with grad_mode.no_grad():
            outputs = cls.forward(node, *args, **kwargs)
        single = not isinstance(outputs, tuple)
        outs = (outputs,) if single else outputs
        outs = tuple(_wrap(o.data) if isinstance(o, Tensor) and any(o is a for a in args) else o
                     for o in outs)
        if not (grad_mode._State.enabled and any(needs)):
            return outs[0] if single else outs
        edges = []
        for a in args:
            if isinstance(a, Tensor) and a.requires_grad:
                fn = a.grad_fn
                edges.append((fn, a._output_nr) if fn is not None else (a._get_accumulator(), 0))
            else:
                edges.append((None, 0))
        node.next_functions = tuple(edges)
        node._meta = [m for a in args for m in ((a.data.shape, a.data.dtype) if isinstance(a, Tensor)
                                                 and a.requires_grad else (None, None))]
        tensor_outs = [o for o in outs if isinstance(o, Tensor)]
        if len(outs) > 1:
            node._out_meta = [(o.data.shape, o.data.dtype) for o in tensor_outs]
            node._plain = False
        for nr, o in enumerate(tensor_outs):
            if id(o) not in node._non_differentiable and o.data.dtype.kind in "fc":
                o.requires_grad, o.grad_fn, o._output_nr = True, node, nr
        node._saved = tuple(SavedTensor(t, any(t is o for o in tensor_outs)) if isinstance(t, Tensor)
                            else t for t in node._to_save)
        node._to_save = ()
        return outs[0] if single else outs

    def __init__(self, *args, **kwargs):
        pass
