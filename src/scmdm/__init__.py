"""scmdm: masked (absorbing-state) discrete diffusion models — train, sample, evaluate.

Importing the package is cheap; the modules are ``schedules``, ``diffusion``, ``backbone``,
``tokenizers``, ``data``, ``training``, ``checkpoint``, ``sampling``, ``evaluation``, ``cli``.
"""

__version__ = "0.1.0"
