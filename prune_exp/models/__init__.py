"""Plain nn.Modules, built from (input_shape, num_classes) plus their own config."""
