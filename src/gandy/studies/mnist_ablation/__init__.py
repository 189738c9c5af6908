"""The mnist_ablation study (see experiment.py): mnist-ablation: what each of the authors' conventions changes in 784-D."""
