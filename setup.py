"""The compiled part of the package (everything else is in pyproject.toml).

The shard's single-query path in C (workers/index/_hotpath.c) is optional: without a C
compiler the install goes on and the shard runs the same steps in Python
(see workers/index/native.py)."""

import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "workers.index._hotpath",
            sources=["workers/index/_hotpath.c"],
            include_dirs=[numpy.get_include()],
            extra_compile_args=["-O3", "-std=c11"],
            optional=True,
        )
    ]
)
