"""The neural-network ops, one module per family: ``softmax`` (softmax, log_softmax),
``loss`` (nll_loss, cross_entropy, mse_loss), ``norm`` (layer_norm, batch_norm),
``dropout``, ``embedding``, ``windows`` (unfold, fold), ``conv`` (conv2d and its two
derivative ops) and ``pool`` (max_pool2d, avg_pool2d); ``_common`` holds what several
families share. Import an op from its family's module (``ckpt.nn.functional`` gathers them).

They keep torch's argument names and error style. Non-differentiable arrays a VJP needs
(class targets, dropout masks, argmax positions, embedding indices) are passed in ``saved``
as Tensors, so the memory layer sees them like any other saved buffer.
"""
