"""ckpt's random-number generator: all randomness (init, dropout) draws from it, so a
recomputation can replay a forward exactly by restoring its state."""
import copy

import numpy as np

from .batch import Batch


class Generator:
    """A numpy PCG64 generator with torch's seed/state API.

    >>> g = Generator().manual_seed(0)
    >>> s = g.get_state(); a = g.numpy.random(); g.set_state(s)
    >>> a == g.numpy.random()
    True
    """

    def __init__(self, seed=0):
        self.manual_seed(seed)

    def manual_seed(self, seed):
        self._numpy = np.random.Generator(np.random.PCG64(int(seed)))
        self._seed = int(seed)
        return self

    @property
    def numpy(self):
        """The numpy generator every draw comes from; refused in a vectorized pass, as
        torch's vmap refuses random ops (it could not tell one draw per sample from one in all)."""
        if Batch.dims or Batch.level_size is not None:
            raise RuntimeError("vmap: We do not yet support calling random operations inside of "
                               "vmap. Please perform random operations outside of vmap as a "
                               "workaround")
        return self._numpy

    def initial_seed(self):
        return self._seed

    def get_state(self):
        return copy.deepcopy(self._numpy.bit_generator.state)

    def set_state(self, state):
        if not isinstance(state, dict) or "state" not in state:
            raise TypeError("set_rng_state expects a state returned by get_rng_state()")
        self._numpy.bit_generator.state = copy.deepcopy(state)


default_generator = Generator(0)


def manual_seed(seed):
    """Seed ckpt's default generator.

    >>> import ckpt
    >>> _ = ckpt.manual_seed(0); a = ckpt.randn(2)
    >>> _ = ckpt.manual_seed(0); bool((a == ckpt.randn(2)).all())
    True
    """
    return default_generator.manual_seed(seed)


def get_rng_state():
    """A snapshot of the default generator's state (pass it to ``set_rng_state``).

    >>> import ckpt
    >>> isinstance(ckpt.get_rng_state(), dict)
    True
    """
    return default_generator.get_state()


def set_rng_state(state):
    """Restore a state from ``get_rng_state``.

    >>> import ckpt
    >>> s = ckpt.get_rng_state(); a = ckpt.rand(3); ckpt.set_rng_state(s)
    >>> bool((ckpt.rand(3) == a).all())
    True
    """
    default_generator.set_state(state)
