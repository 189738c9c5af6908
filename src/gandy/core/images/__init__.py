"""Image GANs (issue 6): image data sets, DCGAN-style batched networks and sample-quality metrics.

Convention: images travel through the game loop flat, ``(B, n, C*28*28)``, with pixel values in
[-1, 1] (the generator's tanh range); the metrics take ``(n, C, 28, 28)`` arrays in the same range.
"""
