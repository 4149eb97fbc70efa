"""Art room: the procedural painter, art corpora loaders, image arrays, image augmentation and the image encoder."""
