"""The agent's compiled parts, both optional (where no C compiler is at hand the agent installs
without them): the alloc-sampler's allocation hook (without it memory and alloc runs must ask for
memray: the platform never picks that costly engine silently) and the lock-wrapper's uncontended
path (without it, the same in Python, two Python frames more per `with lock:`)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(f"profiling_agent.collectors.{name}",
                             [f"profiling_agent/collectors/{name}.c"],
                             extra_compile_args=["-O2", "-Wall"], optional=True)
                   for name in ("_allochook", "_lockwrap")])
