"""The data wtsim ships: ``scenarios/*.toml`` and the sample ``catalog.csv``.

This folder is the top-level ``data/`` of the repository, where a learner reads
and edits it; the build installs it as the package ``wtsim.data`` (see
``[tool.setuptools.package-dir]`` in pyproject.toml), so an installed wtsim
finds its files with :func:`importlib.resources.files`, wherever it runs from.
``golden/`` holds the tests' reference results and is not installed.
"""
