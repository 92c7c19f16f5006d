"""No module outside the autograd layer uses a private name of autograd (issue 13, point 5).

Autograd's clients (memory tracking, checkpoint, the planner's edges, nn) learn what autograd
does through its public ways in: the event protocol (``ckpt.autograd.events``), ``Tensor``,
``Node``'s public methods and ``ckpt.autograd.graph``. A private name is one that starts with
a single underscore and that autograd defines: a module-level name, a class attribute or slot,
or an attribute its methods assign on ``self``. A use is an import of such a name from an
autograd module, an attribute read of one on an autograd module (``grad_mode._State``), or an
attribute read of one on any object but ``self``/``cls`` (``node._saved``, ``t._vc``) -- a
module's own private attributes are its business.

The autograd layer is ``ckpt/autograd/`` and ``ckpt/func.py`` (tests/test_layers.py's
``layer``).
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "ckpt"
AUTOGRAD = ROOT / "autograd"

# autograd's internals whose names lack the underscore (the issue names them)
INTERNAL = {"Extensions"}

# torch's own names, with a leading underscore there too: users of torch read them
TORCH_NAMES = {"_version"}

# (module path relative to ckpt/, private name): uses still to be moved onto a public way in
KNOWN = {
    # Module.__setstate__ drops a deep-copied parameter's gradient accumulator; Tensor's
    # __deepcopy__ should not copy it (tensor.py's method block, issue 13 point 6)
    ("nn/module.py", "_acc"),
}


def _is_private(name):
    return name.startswith("_") and not name.startswith("__")


def autograd_files():
    return sorted(AUTOGRAD.rglob("*.py")) + [ROOT / "func.py"]


def client_files():
    inside = set(autograd_files())
    return sorted(p for p in ROOT.rglob("*.py") if p not in inside)


def private_names():
    """Every private name autograd defines (module level, class body, ``self.<name> =``)."""
    names = set()
    for path in autograd_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                names.add(node.attr)
            elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
                for const in ast.walk(node.value):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        names.add(const.value)
    return {n for n in names if _is_private(n)} - TORCH_NAMES


def _autograd_module(module, level, path):
    """Does ``from <level dots><module> import ...`` in ``path`` name an autograd module?"""
    if level == 0:
        return (module or "").startswith("ckpt.autograd")
    base = path.parent
    for _ in range(level - 1):
        base = base.parent
    target = base.joinpath(*(module or "").split(".")) if module else base
    return (target == AUTOGRAD or AUTOGRAD in target.parents
            or target.with_suffix(".py") == ROOT / "func.py")


def uses(path, private):
    """``{(line, name)}``: the private names of autograd that the module at ``path`` uses."""
    tree = ast.parse(path.read_text())
    modules = set()    # local names bound to autograd modules
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _autograd_module(node.module, node.level, path):
            for alias in node.names:
                if _is_private(alias.name) or alias.name in INTERNAL:
                    found.add((node.lineno, alias.name))
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ckpt.autograd"):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (_is_private(node.attr) or node.attr in INTERNAL):
            owner = node.value
            on_module = isinstance(owner, ast.Name) and owner.id in modules
            on_object = not (isinstance(owner, ast.Name) and owner.id in ("self", "cls"))
            if on_module or (on_object and node.attr in private):
                found.add((node.lineno, node.attr))
    return found


def own_names(path):
    """Private names the client's own package (ckpt/<package>/) defines too."""
    package = ROOT / path.relative_to(ROOT).parts[0]
    files = package.rglob("*.py") if package.is_dir() else [path]
    names = set()
    for p in files:
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                names.add(node.attr)
    return names


def all_uses():
    private = private_names()
    out = {}
    for path in client_files():
        for line, name in uses(path, private - own_names(path)):
            out.setdefault((str(path.relative_to(ROOT)), name), []).append(line)
    return out


def test_the_scan_sees_private_names_and_their_uses():
    private = private_names()
    assert {"_State", "_saved", "_vc", "_wrap", "_HookStack"} <= private
    assert "_version" not in private
    sample = ROOT / "memory" / "_probe_for_the_test.py"
    try:
        sample.write_text("from ..autograd.tensor import _wrap\nfrom ..autograd import grad_mode\n"
                          "from ..autograd.node import Extensions\n"
                          "x = grad_mode._State\ny = node._saved\nz = self._saved\n")
        assert {n for _, n in uses(sample, private)} == {"_wrap", "_State", "_saved", "Extensions"}
        assert len(uses(sample, private)) == 4    # self._saved is the module's own
    finally:
        sample.unlink()


def test_no_module_outside_autograd_uses_a_private_name_of_autograd():
    unexpected = {k: v for k, v in all_uses().items() if k not in KNOWN}
    assert not unexpected, (
        "private names of ckpt.autograd used outside it (module, name): lines -- give autograd "
        f"a public way in (ckpt.autograd.events, graph, Tensor, Node): {unexpected}")


@pytest.mark.parametrize("known", sorted(KNOWN))
def test_known_exceptions_are_still_there(known):
    assert known in all_uses(), f"{known} is gone: remove it from KNOWN"
