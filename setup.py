"""Only the C parts of the build; everything else is in pyproject.toml.

Both extensions are optional: without a compiler the install still works and each package
runs its pure-Python path, which is slower, never different.
- tls_probe/_recordwalk.c: the TLS probe's record tally (tls_probe.NATIVE_RECORD_TALLY).
- strace_parsers/_fastcount.c (+ _fastcount_grammar.c): the strace counting path
  (strace_parsers.NATIVE_COUNTER).
setup.py rather than pyproject's ext-modules table, which setuptools still calls
experimental.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tls_probe._recordwalk",
            sources=["tls_probe/_recordwalk.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "strace_parsers._fastcount",
            sources=["strace_parsers/_fastcount.c", "strace_parsers/_fastcount_grammar.c"],
            depends=["strace_parsers/_fastcount_grammar.h"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)
