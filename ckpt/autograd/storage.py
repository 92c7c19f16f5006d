"""A tensor's storage (torch's ``Tensor.storage()``): the numpy array that owns the memory
the tensor views, counted in elements of the tensor's dtype."""
import numpy as np


class TypedStorage:
    """The memory behind a tensor and every view of it.

    >>> import ckpt
    >>> x = ckpt.zeros(5)
    >>> len(x[:4].storage()), x[:4].storage().data_ptr() == x.storage().data_ptr()
    (5, True)
    """

    def __init__(self, array):
        owner = array
        while owner.base is not None:  # numpy's chain of views (as_strided's holds one more link)
            base = owner.base if isinstance(owner.base, np.ndarray) else getattr(owner.base, "base", None)
            if not isinstance(base, np.ndarray):
                break
            owner = base
        self.owner, self.dtype = owner, array.dtype

    def data_ptr(self):
        return self.owner.__array_interface__["data"][0]

    def nbytes(self):
        return self.owner.nbytes

    def size(self):
        return self.owner.nbytes // self.dtype.itemsize

    __len__ = size
