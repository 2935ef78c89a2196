"""Only the C part of the build; everything else is in pyproject.toml.

The TLS probe's record tally (tls_probe/_recordwalk.c) is optional: without a compiler
the install still works and the probe runs its pure-Python path, which costs more per
flush (tls_probe.NATIVE_RECORD_TALLY tells which one runs). setup.py rather than
pyproject's ext-modules table, which setuptools still calls experimental.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tls_probe._recordwalk",
            sources=["tls_probe/_recordwalk.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
