"""Pictures and logs of a trained model: image grids, curves, latent maps and walks, sample quality, TensorBoard."""
