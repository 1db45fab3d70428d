"""Published super-resolution models with their authors' official weights (the zoo).

One file per architecture; `ZOO_MODELS` maps each method name to its `ZooModel` record, in the
order of `--methods zoo`. torch is imported only when this package is imported.
"""
