"""The agent's one compiled part: the alloc-sampler's allocation hook. Optional: where no C
compiler is at hand the agent installs without it, and memory and alloc runs must then ask for
memray (the platform never picks that costly engine silently)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("profiling_agent.collectors._allochook",
                             ["profiling_agent/collectors/_allochook.c"],
                             extra_compile_args=["-O2", "-Wall"], optional=True)])
