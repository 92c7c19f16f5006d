"""Built-in chains: a uniform chain and four networks at real sizes, with costs in FLOPs and
sizes in bytes computed from the layer shapes (float32, 4 bytes per value).

Conventions shared by all networks (B = batch):

- A matmul of (n x k) by (k x m) is 2·n·k·m FLOPs; a k x k convolution producing
  C_out x H x W maps from C_in channels is 2·B·H·W·C_in·C_out·k². Elementwise work is
  counted as one FLOP per value where it is listed. Backward = 2 x forward for matmuls and
  convolutions (gradient of the input and of the weight), 1 x for elementwise work.
- ω_x̄ (``saved_bytes``) counts the stage's output plus every intermediate its ops save
  for backward (ReLU saves its output; BatchNorm/LayerNorm their input; softmax its output;
  max-pooling int64 argmax indices), excluding the stage's input and the parameters.
- Transients: intermediates freed before the stage ends (pre-activation values, attention
  scores) for the forward; gradients of those intermediates for the backward. The backward
  of the last stage also holds the loss seed δ_L.
- ``param_bytes`` = 2 x (parameter bytes): parameters and their gradients.

>>> sorted(NAMES)
['mlp', 'resnet', 'transformer', 'uniform', 'vgg16']
>>> len(vgg16()), f"{vgg16().param_bytes / 2 / 4 / 1e6:.1f}M parameters"
(21, '138.4M parameters')
"""
from .chain import Chain, Stage
from ..units import parse_size

__all__ = ["uniform", "mlp", "resnet", "transformer", "vgg16", "get", "NAMES"]

F32 = 4


def uniform(length=8, cost=1.0, nbytes="1MiB"):
    """L identical stages: forward ``cost``, backward 2·``cost``, output = saved = input =
    ``nbytes`` (like a chain of tanh: each stage saves only its output).

    >>> c = uniform(3, nbytes=10); c.x.tolist(), c.store_all_compute
    ([10, 10, 10, 10], 9.0)
    """
    n = parse_size(nbytes, what="nbytes")
    return Chain([Stage(f"stage{i}", float(cost), 2.0 * cost, n, n) for i in range(1, length + 1)],
                 input_bytes=n, name="uniform", cost_unit="unit")


def mlp(depth=8, width=1024, batch=64, in_features=784, out_features=10):
    """A ``depth``-layer perceptron: Linear + ReLU stages (the last Linear has no ReLU).

    Stage n_in -> n_out: forward 2·B·n_in·n_out + 2·B·n_out FLOPs (matmul, bias, ReLU),
    backward 4·B·n_in·n_out + B·n_out; output = saved = B·n_out·4 bytes (ReLU keeps its
    output; Linear keeps its input, which belongs to the previous stage); forward transient
    the pre-activation (B·n_out·4), backward transient its gradient.

    >>> c = mlp(depth=3, width=16, batch=2, in_features=8, out_features=4)
    >>> [s.output_bytes for s in c.stages], c.input_bytes
    ([128, 128, 32], 64)
    """
    dims = [in_features] + [width] * (depth - 1) + [out_features]
    stages, params = [], 0
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]), 1):
        last = i == depth
        out = batch * b * F32
        mm = 2.0 * batch * a * b
        stages.append(Stage(f"linear{i}" + ("" if last else "+relu"),
                            forward_cost=mm + (1 if last else 2) * batch * b,
                            backward_cost=2 * mm + batch * b, output_bytes=out,
                            saved_bytes=out, forward_transient=0 if last else out,
                            backward_transient=out))
        params += (a * b + b) * F32
    return Chain(stages, input_bytes=batch * in_features * F32, param_bytes=2 * params,
                 name=f"mlp{depth}x{width}", cost_unit="flop")


def resnet(blocks=(3, 4, 6, 3), batch=32, image=56, width=64):
    """A ResNet-like stack of basic blocks (ResNet-34's layout after the stem by default):
    group g has ``width``·2^g channels at ``image``/2^g pixels; the first block of a group
    downsamples with stride 2 and a 1x1 projection.

    Block (C_in -> C, H x W output, a = B·C·H·W·4 bytes): conv3x3-BN-ReLU-conv3x3-BN,
    + skip (projected if needed), ReLU. Forward 2·B·H·W·C·(9·C_in + 9·C [+ C_in]) + 10·B·C·H·W
    FLOPs; backward twice the convolutions plus the elementwise work. Saved: conv1 output,
    ReLU output, conv2 output [, projection output], block output: 4a (5a downsampling).
    Transients: 2a forward (BN2 output, the sum), 3a backward.

    >>> c = resnet(blocks=(1, 1), batch=1, image=8, width=4)
    >>> [s.name for s in c.stages], [s.saved_bytes for s in c.stages]
    (['block1.1', 'block2.1'], [4096, 2560])
    """
    stages, params = [], 0
    cin, hw = width, image
    for g, n in enumerate(blocks):
        c = width * 2 ** g
        for j in range(n):
            down = j == 0 and g > 0
            if down:
                hw //= 2
            a = batch * c * hw * hw * F32
            vals = batch * c * hw * hw
            conv = 2.0 * batch * hw * hw * c * (9 * cin + 9 * c + (cin if down else 0))
            stages.append(Stage(f"block{g + 1}.{j + 1}", forward_cost=conv + 10 * vals,
                                backward_cost=2 * conv + 10 * vals, output_bytes=a,
                                saved_bytes=(5 if down else 4) * a, forward_transient=2 * a,
                                backward_transient=3 * a))
            params += (9 * cin * c + 9 * c * c + (cin * c if down else 0) + 4 * c) * F32
            cin = c
    return Chain(stages, input_bytes=batch * width * image * image * F32,
                 param_bytes=2 * params, name="resnet", cost_unit="flop")


def transformer(layers=12, d_model=768, heads=12, seq=512, batch=8):
    """Pre-LayerNorm transformer blocks (GPT-2 small by default): x + Attn(LN(x)), then
    h + MLP(LN(h)) with a 4·d hidden GELU layer.

    With T = B·seq tokens, a = T·d·4 bytes and p = B·heads·seq²·4 bytes (one attention map):
    forward 24·T·d² + 4·B·seq²·d FLOPs (QKV, scores, mix, projection, MLP), backward twice
    that. Saved: LN1 output, Q, K, V, softmax output (p), attention output, h, LN2 output,
    MLP hidden before and after GELU (4a each), block output: 16a + p. Transients: scores
    before softmax + one a forward, 2p + 4a backward.

    >>> c = transformer(layers=2, d_model=8, heads=2, seq=4, batch=1)
    >>> c.stages[0].saved_bytes, c.stages[0].output_bytes
    (2176, 128)
    """
    T = batch * seq
    a = T * d_model * F32
    p = batch * heads * seq * seq * F32
    fwd = 24.0 * T * d_model ** 2 + 4.0 * batch * seq * seq * d_model
    stages = [Stage(f"block{i}", forward_cost=fwd, backward_cost=2 * fwd, output_bytes=a,
                    saved_bytes=16 * a + p, forward_transient=p + a,
                    backward_transient=2 * p + 4 * a) for i in range(1, layers + 1)]
    params = layers * (12 * d_model ** 2 + 13 * d_model) * F32
    return Chain(stages, input_bytes=a, param_bytes=2 * params,
                 name=f"transformer{layers}x{d_model}", cost_unit="flop")


_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"]


def vgg16(batch=32, image=224, classes=1000):
    """VGG16 (Simonyan & Zisserman 2015, configuration D) at real sizes: 13 conv3x3+ReLU
    stages, 5 max-pool stages and 3 fully connected stages (dropout left out); 138.4M
    parameters at 224x224.

    Conv C_in -> C at H x W: forward 2·B·H·W·C_in·C·9 + B·C·H·W FLOPs, backward twice the
    convolution; saved = output (ReLU); transients: the pre-activation forward, its gradient
    backward. Max-pool 2x2: B·C·H·W FLOPs each way; saved = output + int64 indices (3x the
    output bytes). Fully connected: as in ``mlp``.

    >>> c = vgg16(batch=1)
    >>> c.stages[0].name, c.stages[0].output_bytes, c.stages[-1].output_bytes
    ('conv1_1', 12845056, 4000)
    """
    stages, params = [], 0
    cin, hw, block, idx = 3, image, 1, 1
    for v in _VGG16:
        if v == "M":
            hw //= 2
            out = batch * cin * hw * hw * F32
            stages.append(Stage(f"pool{block}", forward_cost=4.0 * out / F32,
                                backward_cost=4.0 * out / F32, output_bytes=out,
                                saved_bytes=3 * out))
            block, idx = block + 1, 1
            continue
        out = batch * v * hw * hw * F32
        conv = 2.0 * batch * hw * hw * cin * v * 9
        stages.append(Stage(f"conv{block}_{idx}", forward_cost=conv + out / F32,
                            backward_cost=2 * conv + out / F32, output_bytes=out,
                            saved_bytes=out, forward_transient=out, backward_transient=out))
        params += (9 * cin * v + v) * F32
        cin, idx = v, idx + 1
    dims = [cin * hw * hw, 4096, 4096, classes]
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]), 1):
        last = i == 3
        out = batch * b * F32
        mm = 2.0 * batch * a * b
        stages.append(Stage(f"fc{i}", forward_cost=mm + 2 * batch * b,
                            backward_cost=2 * mm + batch * b, output_bytes=out,
                            saved_bytes=out, forward_transient=0 if last else out,
                            backward_transient=out))
        params += (a * b + b) * F32
    return Chain(stages, input_bytes=batch * 3 * image * image * F32, param_bytes=2 * params,
                 name="vgg16", cost_unit="flop")


NAMES = {"uniform": uniform, "mlp": mlp, "resnet": resnet, "transformer": transformer,
         "vgg16": vgg16}


def get(name, **kwargs):
    """A zoo chain by name with keyword overrides.

    >>> get("mlp", depth=4).name
    'mlp4x1024'
    """
    if name not in NAMES:
        raise ValueError(f"unknown zoo chain {name!r}; choose one of {sorted(NAMES)}")
    return NAMES[name](**kwargs)
