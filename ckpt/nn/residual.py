"""``ResidualBlock``: the basic block of a ResNet (He et al. 2016)."""
from .conv import Conv2d
from .module import Module
from .normalization import BatchNorm2d


class ResidualBlock(Module):
    """``relu(x + bn2(conv2(relu(bn1(conv1(x))))))`` with 3x3 convolutions that keep the
    shape (torchvision's BasicBlock without downsampling).

    >>> import ckpt
    >>> _ = ckpt.manual_seed(0)
    >>> ckpt.nn.ResidualBlock(4)(ckpt.randn(2, 4, 5, 5)).shape
    (2, 4, 5, 5)
    """

    def __init__(self, channels):
        super().__init__()
        self.conv1 = Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = BatchNorm2d(channels)
        self.conv2 = Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(channels)

    def forward(self, x):
        h = self.bn1(self.conv1(x)).relu()
        return (x + self.bn2(self.conv2(h))).relu()
