"""GAN room: the conditional GAN (discriminator, training loop, checkpoints) and its evaluation."""
