"""Built-in graphs (forward ops, ``ckpt.planner.Graph``): seeded random layered DAGs, and
VGG16, ResNet-50, a U-Net, a DenseNet-like stack and a transformer block stack at op level,
with FLOPs and bytes from the layer shapes (float32), as in the chain zoo
(``ckpt.planner.zoo``): a k x k convolution to C_out x H x W from C_in channels is
2·B·H·W·C_in·C_out·k² FLOPs and its backward twice that; elementwise ops (ReLU, BatchNorm,
add, pooling, softmax) one FLOP per value each way. What each backward reads: convolutions,
matmuls, BatchNorm, LayerNorm and GELU their inputs; ReLU and softmax their output; adds and
concatenations nothing; max-pooling its int64 indices (``saved_bytes``). Every network ends
in a loss op (4 bytes) that reads the logits.

>>> sorted(NAMES)
['densenet', 'random_layered', 'resnet50', 'transformer', 'unet', 'vgg16']
>>> [len(get(n).training()) for n in ("vgg16", "resnet50")]
[74, 350]
"""
import random

from .graph import Graph, Node

__all__ = ["random_layered", "vgg16", "resnet50", "unet", "densenet", "transformer", "get",
           "NAMES"]

F32 = 4


class _Builder:
    """Appends ops and remembers each one's channels and spatial size."""

    def __init__(self, batch):
        self.B, self.nodes, self.shape, self.params = batch, [], {}, 0

    def op(self, name, inputs, fwd, bwd, out_bytes, reads, saved=0, shape=None):
        self.nodes.append(Node(name, tuple(inputs), float(fwd), float(bwd), int(out_bytes),
                               int(saved), reads))
        self.shape[name] = shape
        return name

    def conv(self, name, x, cout, k=3, stride=1):
        cin, hw = self.shape[x]
        hw = hw // stride
        flops = 2.0 * self.B * hw * hw * cin * cout * k * k
        self.params += (cin * cout * k * k + cout) * F32
        return self.op(name, [x], flops, 2 * flops, self.B * cout * hw * hw * F32,
                       ("inputs",), shape=(cout, hw))

    def eltwise(self, name, inputs, reads, saved_ratio=0, shape=None):
        c, hw = shape or self.shape[inputs[0]]
        vals = self.B * c * hw * hw
        return self.op(name, inputs, vals * len(inputs), vals * len(inputs), vals * F32, reads,
                       saved=int(saved_ratio * vals * F32), shape=(c, hw))

    def relu(self, name, x):
        return self.eltwise(name, [x], ("output",))

    def bn(self, name, x):
        self.params += 2 * self.shape[x][0] * F32
        return self.eltwise(name, [x], ("inputs",))

    def pool(self, name, x):
        c, hw = self.shape[x]
        return self.eltwise(name, [x], (), saved_ratio=2, shape=(c, hw // 2))

    def linear(self, name, x, fin, fout):
        flops = 2.0 * self.B * fin * fout
        self.params += (fin * fout + fout) * F32
        return self.op(name, [x], flops, 2 * flops, self.B * fout * F32, ("inputs",),
                       shape=(fout, 1))

    def loss(self, x):
        return self.op("loss", [x], self.B * self.shape[x][0] * 4, self.B * self.shape[x][0],
                       F32, ("inputs",), shape=(1, 1))

    def graph(self, name, input_bytes):
        return Graph(self.nodes, input_bytes=input_bytes, param_bytes=2 * self.params,
                     name=name, cost_unit="flop")


def random_layered(nodes=100, width=4, skip=2, seed=0, max_inputs=3):
    """A seeded random layered DAG of ``nodes`` // 2 forward ops (so ``nodes`` training
    nodes): layers of 1..2·``width`` - 1 ops (``width`` on average); each op reads one op of
    the previous layer and up to ``max_inputs`` - 1 more from the ``skip`` layers before
    it. Forward costs 1..100, backward 1..2 x forward; outputs 1..100 KiB, a third of the
    ops save as much again; each backward reads its inputs, its output, or both.

    >>> g = random_layered(nodes=40, seed=1)
    >>> len(g), len(g.training())
    (20, 40)
    """
    rng = random.Random(seed)
    nf = max(1, nodes // 2)
    layers, made, out = [], 0, []
    while made < nf:
        w = min(nf - made, rng.randint(1, max(1, 2 * width - 1)))
        layers.append([f"v{made + i}" for i in range(w)])
        made += w
    for li, layer in enumerate(layers):
        for name in layer:
            ins = []
            if li:
                ins.append(rng.choice(layers[li - 1]))
                pool = [v for lay in layers[max(0, li - skip):li] for v in lay if v not in ins]
                ins += rng.sample(pool, min(len(pool), rng.randint(0, max_inputs - 1)))
            fwd = rng.randint(1, 100)
            size = rng.randint(1, 100) * 1024
            out.append(Node(name, tuple(ins), float(fwd), float(fwd * rng.uniform(1, 2)),
                            size, size if rng.random() < 1 / 3 else 0,
                            rng.choice([("inputs",), ("output",), ("inputs", "output")])))
    return Graph(out, input_bytes=1024, name=f"random_layered_n{2 * nf}_w{width}_s{skip}"
                 f"_seed{seed}", cost_unit="unit")


_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"]


def vgg16(batch=32, image=224, classes=1000):
    """VGG16 (configuration D): 13 convolutions each with its ReLU, 5 max-pools, 3 fully
    connected layers (ReLU after the first two), and the loss.

    >>> g = vgg16(batch=1)
    >>> g["conv1_1"].output_bytes, len(g)
    (12845056, 37)
    """
    b = _Builder(batch)
    b.shape["input"] = (3, image)
    x, block, idx = "input", 1, 1
    for v in _VGG16:
        if v == "M":
            x = b.pool(f"pool{block}", x)
            block, idx = block + 1, 1
            continue
        c = b.conv(f"conv{block}_{idx}", x, v)
        if x == "input":
            _first_reads_input(b, c)
        x = b.relu(f"relu{block}_{idx}", c)
        idx += 1
    cin, hw = b.shape[x]
    dims = [cin * hw * hw, 4096, 4096, classes]
    for i, (fi, fo) in enumerate(zip(dims[:-1], dims[1:]), 1):
        x = b.linear(f"fc{i}", x, fi, fo)
        if i < 3:
            x = b.relu(f"relu_fc{i}", x)
    b.loss(x)
    return b.graph("vgg16", batch * 3 * image * image * F32)


def _first_reads_input(b, name):
    """Make op ``name`` read the graph input (the builder's placeholder "input")."""
    k = next(i for i, n in enumerate(b.nodes) if n.name == name)
    n = b.nodes[k]
    b.nodes[k] = Node(n.name, tuple(i for i in n.inputs if i != "input"), n.forward_cost,
                      n.backward_cost, n.output_bytes, n.saved_bytes, n.backward_reads)


def resnet50(batch=32, image=224, classes=1000):
    """ResNet-50 (He et al. 2016) at op level: stem (conv7x7/2, BN, ReLU, max-pool),
    bottleneck blocks (3, 4, 6, 3) of conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1-BN, the skip
    (projected by conv1x1-BN in each group's first block), add, ReLU; global average pool,
    fully connected layer, loss.

    >>> g = resnet50(batch=1)
    >>> len(g), f"{g.param_bytes / 2 / 4 / 1e6:.1f}M parameters"
    (175, '25.6M parameters')
    """
    b = _Builder(batch)
    b.shape["input"] = (3, image)
    x = b.conv("stem.conv", "input", 64, k=7, stride=2)
    _first_reads_input(b, x)
    x = b.pool("stem.pool", b.relu("stem.relu", b.bn("stem.bn", x)))
    width = 64
    for g, n in enumerate((3, 4, 6, 3)):
        for j in range(n):
            p = f"layer{g + 1}.{j}"
            stride = 2 if j == 0 and g > 0 else 1
            h = b.relu(f"{p}.relu1", b.bn(f"{p}.bn1", b.conv(f"{p}.conv1", x, width, k=1)))
            h = b.relu(f"{p}.relu2", b.bn(f"{p}.bn2", b.conv(f"{p}.conv2", h, width,
                                                            stride=stride)))
            h = b.bn(f"{p}.bn3", b.conv(f"{p}.conv3", h, 4 * width, k=1))
            skip = x
            if j == 0:
                skip = b.bn(f"{p}.bnd", b.conv(f"{p}.down", x, 4 * width, k=1, stride=stride))
            x = b.relu(f"{p}.relu", b.eltwise(f"{p}.add", [h, skip], ()))
        width *= 2
    c, hw = b.shape[x]
    x = b.op("avgpool", [x], batch * c * hw * hw, batch * c * hw * hw, batch * c * F32, (),
             shape=(c, 1))
    b.loss(b.linear("fc", x, c, classes))
    return b.graph("resnet50", batch * 3 * image * image * F32)


def unet(depth=4, batch=8, image=128, width=32, in_channels=3, classes=2):
    """A U-Net (Ronneberger et al. 2015, with padding): ``depth`` levels of two
    conv3x3-ReLU and a max-pool, a bottleneck, then per level a 2x2 transposed convolution,
    the concatenation with the level's skip, two conv3x3-ReLU; a 1x1 head and the loss.

    >>> g = unet(depth=2, batch=1, image=16, width=4)
    >>> len(g), sorted(g.graph.predecessors("up1.cat"))
    (28, ['down1.relu2', 'up1.up'])
    """
    b = _Builder(batch)
    b.shape["input"] = (in_channels, image)
    x, skips, c = "input", [], width

    def double(p, x, c):
        for i in (1, 2):
            x = b.relu(f"{p}.relu{i}", b.conv(f"{p}.conv{i}", x, c))
        return x

    for d in range(1, depth + 1):
        x = double(f"down{d}", x, c)
        if d == 1:
            _first_reads_input(b, "down1.conv1")
        skips.append(x)
        x = b.pool(f"down{d}.pool", x)
        c *= 2
    x = double("bottom", x, c)
    for d in range(depth, 0, -1):
        c //= 2
        cin, hw = b.shape[x]
        flops = 2.0 * batch * (2 * hw) ** 2 * cin * c
        b.params += (cin * c * 4 + c) * F32
        up = b.op(f"up{d}.up", [x], flops, 2 * flops, batch * c * (2 * hw) ** 2 * F32,
                  ("inputs",), shape=(c, 2 * hw))
        cat = b.eltwise(f"up{d}.cat", [skips[d - 1], up], (), shape=(2 * c, 2 * hw))
        x = double(f"up{d}", cat, c)
    b.loss(b.conv("head", x, classes, k=1))
    return b.graph(f"unet{depth}", batch * in_channels * image * image * F32)


def densenet(blocks=(4, 4, 4), growth=32, batch=16, image=32, init=64):
    """A DenseNet-like stack (Huang et al. 2017): per dense layer the concatenation of all
    earlier features of its block, then BN-ReLU-conv1x1 (4·growth) and BN-ReLU-conv3x3
    (growth); between blocks a transition conv1x1 (half the channels) and a 2x2 max-pool.

    >>> g = densenet(blocks=(2, 2), batch=1, image=8, growth=4, init=8)
    >>> sorted(g.graph.predecessors("b1.l1.cat"))
    ['b1.l0.conv2', 'stem']
    """
    b = _Builder(batch)
    b.shape["input"] = (3, image)
    x = b.conv("stem", "input", init)
    _first_reads_input(b, x)
    for bi, n in enumerate(blocks, 1):
        feats = [x]
        for li in range(n):
            p = f"b{bi}.l{li}"
            c = sum(b.shape[f][0] for f in feats)
            hw = b.shape[x][1]
            cat = b.eltwise(f"{p}.cat", list(feats), (), shape=(c, hw)) if len(feats) > 1 \
                else feats[0]
            h = b.conv(f"{p}.conv1", b.relu(f"{p}.relu1", b.bn(f"{p}.bn1", cat)), 4 * growth,
                       k=1)
            h = b.conv(f"{p}.conv2", b.relu(f"{p}.relu2", b.bn(f"{p}.bn2", h)), growth)
            feats.append(h)
        c = sum(b.shape[f][0] for f in feats)
        x = b.eltwise(f"b{bi}.out", feats, (), shape=(c, b.shape[x][1]))
        if bi < len(blocks):
            x = b.pool(f"t{bi}.pool", b.conv(f"t{bi}.conv", x, c // 2, k=1))
    c, hw = b.shape[x]
    x = b.op("avgpool", [x], batch * c * hw * hw, batch * c * hw * hw, batch * c * F32, (),
             shape=(c, 1))
    b.loss(b.linear("fc", x, c, 10))
    return b.graph("densenet", batch * 3 * image * image * F32)


def transformer(layers=4, d_model=512, heads=8, seq=256, batch=8):
    """Pre-LayerNorm transformer blocks at op level: LN, QKV projection, attention scores,
    softmax, mix with V, output projection, residual add; LN, fc1 (4·d), GELU, fc2, add;
    then a loss on the last block's output.

    With T = B·seq tokens, a = T·d·4 bytes and p = B·heads·seq²·4 bytes (one attention map).

    >>> g = transformer(layers=2, d_model=8, heads=2, seq=4, batch=1)
    >>> len(g), g["b0.softmax"].output_bytes
    (25, 128)
    """
    T = batch * seq
    a = T * d_model * F32
    p = batch * heads * seq * seq * F32
    mm = 2.0 * T * d_model * d_model
    att = 2.0 * batch * seq * seq * d_model
    nodes, x, params = [], None, 0

    def op(name, ins, fwd, bwd, out, reads):
        nodes.append(Node(name, tuple(i for i in ins if i), fwd, bwd, out, 0, reads))
        return name

    for i in range(layers):
        q = f"b{i}"
        h = op(f"{q}.ln1", [x], 8.0 * T * d_model, 8.0 * T * d_model, a, ("inputs",))
        qkv = op(f"{q}.qkv", [h], 3 * mm, 6 * mm, 3 * a, ("inputs",))
        s = op(f"{q}.scores", [qkv], att, 2 * att, p, ("inputs",))
        sm = op(f"{q}.softmax", [s], 5.0 * p / F32, 3.0 * p / F32, p, ("output",))
        mix = op(f"{q}.mix", [sm, qkv], att, 2 * att, a, ("inputs",))
        o = op(f"{q}.proj", [mix], mm, 2 * mm, a, ("inputs",))
        h1 = op(f"{q}.add1", [x, o], T * d_model, T * d_model, a, ())
        h = op(f"{q}.ln2", [h1], 8.0 * T * d_model, 8.0 * T * d_model, a, ("inputs",))
        f = op(f"{q}.fc1", [h], 4 * mm, 8 * mm, 4 * a, ("inputs",))
        f = op(f"{q}.gelu", [f], 8.0 * 4 * T * d_model, 8.0 * 4 * T * d_model, 4 * a,
               ("inputs",))
        f = op(f"{q}.fc2", [f], 4 * mm, 8 * mm, a, ("inputs",))
        x = op(f"{q}.add2", [h1, f], T * d_model, T * d_model, a, ())
        params += (12 * d_model * d_model + 13 * d_model) * F32
    op("loss", [x], T * d_model, T * d_model, F32, ("inputs",))
    return Graph(nodes, input_bytes=a, param_bytes=2 * params,
                 name=f"transformer{layers}x{d_model}", cost_unit="flop")


NAMES = {"random_layered": random_layered, "vgg16": vgg16, "resnet50": resnet50,
         "unet": unet, "densenet": densenet, "transformer": transformer}


def get(name, **kwargs):
    """A zoo graph by name with keyword overrides.

    >>> get("unet", depth=3).name
    'unet3'
    """
    if name not in NAMES:
        raise ValueError(f"unknown zoo graph {name!r}; choose one of {sorted(NAMES)}")
    return NAMES[name](**kwargs)
