"""mnist-slices: the two slices of the MNIST-100 phase diagram the paper shows, at full length."""
