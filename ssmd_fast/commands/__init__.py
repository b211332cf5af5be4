"""One module per CLI command: ``add_arguments(parser)`` and ``main(args) -> int``.

Modules import their heavy dependencies inside ``main`` so ``ssmd-fast --help`` stays fast.
"""
