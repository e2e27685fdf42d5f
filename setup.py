"""The optional C reader of OTLP trace requests (tracehub/collector/_otlpwire.c); all else is in
pyproject.toml. Without a C compiler the install still succeeds and protobuf reads every body."""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("tracehub.collector._otlpwire", ["tracehub/collector/_otlpwire.c"], optional=True,
              extra_compile_args=["-O2"]),
])
